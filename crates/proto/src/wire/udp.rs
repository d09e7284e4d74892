//! UDP headers (RFC 768; IPv6 rules from RFC 8200 section 8.1).
//!
//! Job: read and rewrite ports, verify or fill the checksum over the pseudo header, and
//! patch it incrementally without breaking the IPv4 "checksum 0 = none" rule.
//!
//! Views:
//! - `new_checked` — 8 bytes and `8 <= length field <= buffer`; `payload()` stops at the
//!   length field, so trailing padding is never payload.
//! - `new_quoted` — the 8-byte header quoted in an ICMP error: every field is valid
//!   (they are all in the first 8 bytes), the payload is whatever is present up to the
//!   length field, and checksums cannot be verified (the payload is cut short).
//!
//! Must never allocate or panic on any input.

use core::net::IpAddr;

use super::bytes::{clamped, clamped_mut, set_u16, u16_at};
use super::{Error, Result, checksum, ip_proto};

pub use super::tcp::{ports, set_ports};

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// Incremental checksum patch that respects UDP's special values: over IPv4 a zero
/// checksum means "none" and stays zero; a patched result of zero is sent as 0xFFFF
/// (RFC 768), which is the same ones'-complement number.
pub fn update_checksum(cksum: u16, patch: impl FnOnce(u16) -> u16) -> u16 {
    if cksum == 0 {
        return 0;
    }
    match patch(cksum) {
        0 => 0xFFFF,
        c => c,
    }
}

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without any length check; accessors then read zero (and setters do
    /// nothing) for bytes that are absent.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a datagram after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// For the header quoted in an ICMP error; see the module doc.
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated("quoted UDP"));
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Checks that the 8-byte header is present and that the length field is at least 8
    /// and does not run past the buffer.
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated("UDP"));
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed("UDP length"));
        }
        if field_len > len {
            return Err(Error::Truncated("UDP payload"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port, in host byte order.
    pub fn src_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port, in host byte order.
    pub fn dst_port(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field: header plus payload.
    pub fn len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// True when the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field as stored; zero over IPv4 means the sender computed none.
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Bytes 8..length, clamped to the buffer.
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    fn datagram(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    fn compute(&self, src: IpAddr, dst: IpAddr) -> u32 {
        let d = self.datagram();
        // datagram() is at most 65535 bytes long, so the cast is exact.
        checksum::pseudo_header(src, dst, ip_proto::UDP, d.len() as u32) + checksum::sum(d)
    }

    /// Verifies the checksum over the pseudo header and `length` bytes. Over IPv4 a zero
    /// checksum means "not computed" and is accepted; over IPv6 it is mandatory, so zero
    /// is rejected. Mixed families never verify.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if src.is_ipv4() != dst.is_ipv4() {
            return false;
        }
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        checksum::fold(self.compute(src, dst)) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the source port (the checksum is not updated).
    pub fn set_src_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Writes the destination port (the checksum is not updated).
    pub fn set_dst_port(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Writes the length field (header plus payload, in bytes).
    pub fn set_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Writes the checksum field as given; see also [`fill_checksum`](Self::fill_checksum)
    /// and [`update_checksum`].
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes the checksum; a computed zero is sent as 0xFFFF, since zero would mean
    /// "no checksum".
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let c = match checksum::finish(self.compute(src, dst)) {
            0 => 0xFFFF,
            c => c,
        };
        self.set_checksum(c);
    }

    /// Mutable bytes 8..length, clamped to the buffer.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// A UDP header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload bytes after the 8-byte header, as bounded by the length field.
    pub payload_len: usize,
}

impl Repr {
    /// Reads the ports and the payload length of a datagram that passes
    /// [`Packet::check`]; the checksum is not judged here.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.payload().len(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes before the payload: always 8.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header and fills the checksum over it and the `payload_len` bytes that
    /// must already follow it.
    ///
    /// # Panics
    /// If the buffer is shorter than `8 + payload_len`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let total = HEADER_LEN.saturating_add(self.payload_len);
        assert!(packet.buffer.as_ref().len() >= total, "UDP emit buffer");
        debug_assert!(total <= usize::from(u16::MAX));
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(u16::try_from(total).unwrap_or(u16::MAX));
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    const V4_SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    const V4_DST: IpAddr = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));

    /// DNS query for example.com A from 10.1.2.3:40000 to 8.8.8.8:53 (scapy checksum).
    const DNS: &str = "9c40003500256579123401000001000000000000076578616d706c6503636f6d0000010001";

    /// "hello" from [2001:db8::1]:40000 to [2001:db8::53]:53.
    const V6: &str = "9c400035000dc3c668656c6c6f";

    fn v6_addrs() -> (IpAddr, IpAddr) {
        (
            IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
            IpAddr::V6("2001:db8::53".parse::<Ipv6Addr>().unwrap()),
        )
    }

    #[test]
    fn parses_captured_dns_query() {
        let b = hex(DNS);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 37);
        assert_eq!(p.checksum(), 0x6579);
        assert_eq!(p.payload().len(), 29);
        assert_eq!(p.payload()[..2], [0x12, 0x34]);
        assert!(p.verify_checksum(V4_SRC, V4_DST));
        assert!(!p.verify_checksum(V4_DST, IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4))));
    }

    #[test]
    fn parses_captured_ipv6_datagram() {
        let b = hex(V6);
        let (s, d) = v6_addrs();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (40000, 53, 13, 0xc3c6)
        );
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum(s, d));
        assert!(!p.verify_checksum(V4_SRC, d));
    }

    #[test]
    fn zero_checksum_rules() {
        let mut b = hex(DNS);
        b[6] = 0;
        b[7] = 0;
        assert!(
            Packet::new_checked(&b[..])
                .unwrap()
                .verify_checksum(V4_SRC, V4_DST)
        );
        let mut b = hex(V6);
        b[6] = 0;
        b[7] = 0;
        let (s, d) = v6_addrs();
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum(s, d));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose a 2-byte payload that makes the checksum come out as zero.
        let mut b = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x0a, 0, 0, 0, 0];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(V4_SRC, V4_DST);
        let c = p.checksum();
        // Adding the checksum value to the payload word drives the sum to 0xFFFF.
        p.payload_mut().copy_from_slice(&c.to_be_bytes());
        p.fill_checksum(V4_SRC, V4_DST);
        assert_eq!(p.checksum(), 0xFFFF);
        assert!(p.verify_checksum(V4_SRC, V4_DST));
    }

    #[test]
    fn every_truncation_and_bad_length_is_an_error() {
        let b = hex(DNS);
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "{n}");
        }
        let mut b = hex(DNS);
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed("UDP length")
        );
    }

    #[test]
    fn quoted_header_and_incremental_update() {
        let b = hex(DNS);
        let mut q = b[..8].to_vec();
        let mut p = Packet::new_quoted(&mut q[..]).unwrap();
        assert_eq!((p.src_port(), p.len(), p.checksum()), (40000, 37, 0x6579));
        assert!(p.payload().is_empty());
        p.set_src_port(1);
        assert_eq!(p.src_port(), 1);
        assert!(Packet::new_quoted(&b[..7]).is_err());
        assert_eq!(update_checksum(0, |c| c.wrapping_add(1)), 0);
        assert_eq!(update_checksum(5, |_| 0), 0xFFFF);
        assert_eq!(update_checksum(5, |c| c + 1), 6);
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(), payload_len in 0usize..200,
            v6 in any::<bool>(), fill in any::<u8>()
        ) {
            let r = Repr { src_port, dst_port, payload_len };
            let (s, d) = if v6 { v6_addrs() } else { (V4_SRC, V4_DST) };
            let mut b = vec![fill; r.buffer_len() + payload_len + 3];
            r.emit(&mut Packet::new_unchecked(&mut b[..]), s, d);
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.checksum() != 0);
            prop_assert!(p.verify_checksum(s, d));
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn incremental_addr_update_matches_recompute(
            payload in proptest::collection::vec(any::<u8>(), 0..64), new in any::<u32>()
        ) {
            let r = Repr { src_port: 1234, dst_port: 53, payload_len: payload.len() };
            let mut b = vec![0u8; 8];
            b.extend_from_slice(&payload);
            r.emit(&mut Packet::new_unchecked(&mut b[..]), V4_SRC, V4_DST);
            let new_dst = IpAddr::V4(Ipv4Addr::from(new));
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            let c = update_checksum(p.checksum(), |c| checksum::update_addr(c, V4_DST, new_dst));
            p.set_checksum(c);
            prop_assert!(c != 0);
            prop_assert!(p.verify_checksum(V4_SRC, new_dst));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            for p in [Packet::new_checked(&b[..]), Packet::new_quoted(&b[..])].into_iter().flatten() {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let _ = p.verify_checksum(V4_SRC, V4_DST);
            }
            let _ = Packet::new_checked(&b[..]).and_then(|p| Repr::parse(&p));
        }
    }
}
