//! IPv4 headers (RFC 791).
//!
//! Job: read and rewrite outer (PA) and inner (CA) IPv4 headers in place, keep the
//! header checksum right, and read the IPv4 header quoted inside an ICMP error.
//!
//! Two constructors, two promises:
//! - `new_checked` — a received packet: version 4, IHL >= 5, the header fits, and
//!   `header_len <= total_len <= buffer length`. The buffer may be longer than
//!   `total_len` (Ethernet pads short frames); `payload()` stops at `total_len`.
//! - `new_quoted` — the header an ICMP error quotes: version, IHL and the header itself
//!   are checked, `total_len` is not (the quote is cut short on purpose).
//!
//! Every accessor is valid on both; `payload()` is clamped to the bytes present, so on a
//! quoted view it equals `quoted_payload()`. Must never allocate or panic on any input.

use core::net::Ipv4Addr;

use super::bytes::{array_at, clamped, clamped_mut, set_bytes, set_u8, set_u16, u8_at, u16_at};
use super::{Error, Result, checksum};

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

mod field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const DSCP_ECN: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC: usize = 12;
    pub(super) const DST: usize = 16;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1FFF;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without any check; accessors then read zero (and setters do nothing)
    /// for bytes that are absent.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received packet after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// For the header quoted in an ICMP error: `total_len` may exceed the bytes present.
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }

    fn check_header(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated("IPv4"));
        }
        if self.version() != 4 {
            return Err(Error::Malformed("IPv4 version"));
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed("IPv4 header length"));
        }
        if len < self.header_len() {
            return Err(Error::Truncated("IPv4 options"));
        }
        Ok(())
    }

    /// Everything `new_checked` promises.
    pub fn check(&self) -> Result<()> {
        self.check_header()?;
        let total = usize::from(self.total_len());
        if total < self.header_len() {
            return Err(Error::Malformed("IPv4 total length"));
        }
        if total > self.buffer.as_ref().len() {
            return Err(Error::Truncated("IPv4 payload"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble of byte 0; 4 on any view that passed a check.
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0F) * 4
    }

    /// Byte 1: DSCP in the upper six bits, ECN in the lower two (RFC 2474, RFC 3168).
    pub fn dscp_ecn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DSCP_ECN)
    }

    /// Total length field: header plus payload, in bytes.
    pub fn total_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification field, used to reassemble fragments.
    pub fn ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::IDENT)
    }

    /// DF flag: the sender forbids fragmentation (and expects ICMP "frag needed" instead).
    pub fn dont_frag(&self) -> bool {
        u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// MF flag: more fragments of the same datagram follow.
    pub fn more_frags(&self) -> bool {
        u16_at(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in **bytes** (the wire field × 8), so it compares directly with
    /// payload lengths.
    pub fn frag_offset(&self) -> u16 {
        (u16_at(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// True for every fragment, including the first: such packets carry no complete L4.
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    /// Time to live, as received.
    pub fn ttl(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Protocol number of the payload (see [`ip_proto`](super::ip_proto)).
    pub fn protocol(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header checksum as stored; see [`verify_checksum`](Self::verify_checksum).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address (bytes 12..16).
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::SRC))
    }

    /// Destination address (bytes 16..20).
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(array_at::<4>(self.buffer.as_ref(), field::DST))
    }

    /// Option bytes between the fixed header and IHL × 4; not parsed here.
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Bytes from the end of the header to `total_len`, clamped to the buffer; Ethernet
    /// padding beyond `total_len` is never included.
    pub fn payload(&self) -> &[u8] {
        clamped(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }

    /// What a quoted header still carries: at most `total_len`, at most the buffer.
    pub fn quoted_payload(&self) -> &[u8] {
        self.payload()
    }

    /// Verifies the header checksum (the header only, so it works on quoted views too).
    pub fn verify_checksum(&self) -> bool {
        let h = clamped(self.buffer.as_ref(), 0, self.header_len());
        checksum::fold(checksum::sum(h)) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes version 4 and the IHL for a header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0F) as u8;
        set_u8(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl);
    }

    /// Writes byte 1 (DSCP and ECN).
    pub fn set_dscp_ecn(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::DSCP_ECN, value);
    }

    /// Writes the total length field (header plus payload); the checksum is not updated.
    pub fn set_total_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Writes the identification field; the checksum is not updated.
    pub fn set_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets DF; clears MF and the offset, since nvlb only ever emits whole packets.
    pub fn set_dont_frag(&mut self, value: bool) {
        set_u16(
            self.buffer.as_mut(),
            field::FLG_OFF,
            if value { FLAG_DF } else { 0 },
        );
    }

    /// Writes the TTL; the checksum is not updated.
    pub fn set_ttl(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::TTL, value);
    }

    /// Writes the protocol number; the checksum is not updated.
    pub fn set_protocol(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    /// Writes the header checksum as given; see also [`fill_checksum`](Self::fill_checksum).
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Writes the source address; the header and any L4 checksum are not updated.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC, &addr.octets());
    }

    /// Writes the destination address; the header and any L4 checksum are not updated.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        set_bytes(self.buffer.as_mut(), field::DST, &addr.octets());
    }

    /// Recomputes the header checksum over `header_len` bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::data(clamped(self.buffer.as_ref(), 0, hl));
        self.set_checksum(c);
    }

    /// Mutable bytes from the end of the header to `total_len`, clamped to the buffer.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (from, to) = (self.header_len(), usize::from(self.total_len()));
        clamped_mut(self.buffer.as_mut(), from, to)
    }
}

/// An IPv4 header without options, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Protocol number of the payload (see [`ip_proto`](super::ip_proto)).
    pub protocol: u8,
    /// Payload bytes after the header (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DF flag; MF and the fragment offset are never emitted.
    pub dont_frag: bool,
    /// Byte 1: DSCP and ECN together.
    pub dscp_ecn: u8,
    /// Identification field.
    pub ident: u16,
}

impl Repr {
    /// Reads the fixed fields; options are skipped (their length is excluded from
    /// `payload_len`), fragmentation beyond DF and the checksum are not judged here —
    /// the view has `is_fragment` and `verify_checksum` for that.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()).saturating_sub(packet.header_len()),
            ttl: packet.ttl(),
            dont_frag: packet.dont_frag(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes before the payload: always 20, since options are
    /// not emitted.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a correct checksum. A `payload_len` above
    /// 65535 − 20 cannot be expressed and saturates `total_len` (a caller bug).
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        assert!(
            packet.buffer.as_ref().len() >= HEADER_LEN,
            "IPv4 emit buffer"
        );
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        let total = u16::try_from(self.payload_len.saturating_add(HEADER_LEN)).unwrap_or(u16::MAX);
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len(total);
        packet.set_ident(self.ident);
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;
    use crate::wire::test_util::hex;
    use proptest::prelude::*;

    /// TCP SYN 192.168.1.10:51234 -> 93.184.216.34:80, DF, TTL 64, id 0x1c46, with MSS,
    /// SACK-permitted, timestamps and window-scale options (checksums by scapy).
    pub(crate) const SYN: &str = "4500003c1c464000400626e9c0a8010a5db8d822\
        c82200503a4b5c6d00000000a002faf014150000020405b40402080a0001e2400000000001030307";

    /// ICMP frag-needed (MTU 1458) from 192.0.2.1, quoting 28 bytes of a 1500-byte packet.
    pub(crate) const FRAG_NEEDED: &str = "4500003800000000ff01efbec00002010a000005\
        03042a6e000005b2 450005dc424240003f06adcb0a000005cb007109 01bbc738000003e8";

    #[test]
    fn parses_captured_header() {
        let b = hex(SYN);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::TCP);
        assert_eq!(p.checksum(), 0x26e9);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(93, 184, 216, 34));
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 40);
        assert_eq!(p.payload()[..2], [0xc8, 0x22]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(SYN);
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "{n}");
        }
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut b = hex(FRAG_NEEDED)[..20].to_vec();
        b[2..4].copy_from_slice(&20u16.to_be_bytes());
        b.extend_from_slice(&[0u8; 26]); // padded to the 46-byte Ethernet minimum
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.payload().is_empty());
    }

    #[test]
    fn rejects_bad_version_ihl_and_lengths() {
        let base = hex(SYN);
        let mut b = base.clone();
        b[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed("IPv4 version")
        );
        let mut b = base.clone();
        b[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed("IPv4 header length")
        );
        let mut b = base.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed("IPv4 total length")
        );
        let mut b = base.clone();
        b[0] = 0x4F; // 60-byte header == total_len == buffer: legal, no payload
        assert!(Packet::new_checked(&b[..]).is_ok());
        b[2..4].copy_from_slice(&61u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Truncated("IPv4 payload")
        );
    }

    #[test]
    fn quoted_header_in_frag_needed() {
        let b = hex(FRAG_NEEDED);
        let outer = Packet::new_checked(&b[..]).unwrap();
        assert!(outer.verify_checksum());
        let quoted = &outer.payload()[8..];
        assert!(Packet::new_checked(quoted).is_err());
        let q = Packet::new_quoted(quoted).unwrap();
        assert_eq!(q.total_len(), 1500);
        assert_eq!(q.ident(), 0x4242);
        assert_eq!(q.protocol(), ip_proto::TCP);
        assert_eq!(q.src_addr(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(q.dst_addr(), Ipv4Addr::new(203, 0, 113, 9));
        assert!(q.verify_checksum());
        assert_eq!(q.quoted_payload(), &hex("01bbc738000003e8")[..]);
        assert_eq!(q.payload(), q.quoted_payload());
        for n in 0..20 {
            assert!(Packet::new_quoted(&quoted[..n]).is_err());
        }
    }

    #[test]
    fn fragments_report_offset_in_bytes() {
        let mut b = hex(SYN);
        b[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.more_frags() && p.is_fragment() && !p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn rewrite_with_incremental_checksum_matches_fill() {
        let mut b = hex(SYN);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        let old = p.dst_addr();
        let new = Ipv4Addr::new(10, 1, 2, 3);
        p.set_dst_addr(new);
        let c = checksum::update32(p.checksum(), old.to_bits(), new.to_bits());
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
        p.set_ttl(1);
        assert!(!p.verify_checksum());
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            0usize..=65515,
            any::<u8>(),
            any::<bool>(),
            any::<u8>(),
            any::<u16>(),
        )
            .prop_map(
                |(s, d, protocol, payload_len, ttl, dont_frag, dscp_ecn, ident)| Repr {
                    src_addr: Ipv4Addr::from(s),
                    dst_addr: Ipv4Addr::from(d),
                    protocol,
                    payload_len,
                    ttl,
                    dont_frag,
                    dscp_ecn,
                    ident,
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trip(r in repr_strategy()) {
            let mut b = vec![0u8; r.buffer_len() + r.payload_len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            for p in [Packet::new_checked(&b[..]), Packet::new_quoted(&b[..])].into_iter().flatten() {
                let _ = (p.version(), p.header_len(), p.total_len(), p.frag_offset(), p.is_fragment());
                let _ = (p.src_addr(), p.dst_addr(), p.options(), p.payload(), p.quoted_payload());
                let _ = p.verify_checksum();
            }
            let _ = Packet::new_checked(&b[..]).and_then(|p| Repr::parse(&p));
            let mut c = b.clone();
            let mut u = Packet::new_unchecked(&mut c[..]);
            u.fill_checksum();
            u.set_dst_addr(Ipv4Addr::LOCALHOST);
            let _ = u.payload_mut().len();
        }
    }
}
