//! TCP headers (RFC 9293).
//!
//! Job: read the 5-tuple half that TCP carries, rewrite ports in place, and verify or
//! fill the checksum over the IPv4/IPv6 pseudo header. nvlb never terminates TCP.
//!
//! Views:
//! - `new_checked` — a full segment: 20 bytes, data offset >= 5, the header fits.
//!   The caller passes exactly the L4 bytes (IP payload), because the checksum covers
//!   the whole slice.
//! - `new_quoted` — the start of a segment quoted in an ICMP error, which guarantees only
//!   8 bytes. Valid there: ports and sequence number, and their setters. Fields beyond
//!   the bytes present read as zero and their setters do nothing; checksums cannot be
//!   verified on a quote. Never panics either way.
//!
//! Must never allocate or panic on any input.

use core::net::IpAddr;

use super::bytes::{clamped, clamped_mut, set_u8, set_u16, set_u32, u8_at, u16_at, u32_at};
use super::{Error, Result, checksum, ip_proto};

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// Bytes of a TCP header an ICMP error is guaranteed to quote.
pub const QUOTED_LEN: usize = 8;

/// Flag bits of byte 13.
pub mod flags {
    /// No more data from the sender: one half of the connection is closing.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers: the first segment of each direction.
    pub const SYN: u8 = 0x02;
    /// Reset: the connection is aborted.
    pub const RST: u8 = 0x04;
    /// Push: deliver buffered data to the application now.
    pub const PSH: u8 = 0x08;
    /// The acknowledgment number field is valid (set on every segment after the first SYN).
    pub const ACK: u8 = 0x10;
    /// The urgent pointer field is valid.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ_NUM: usize = 4;
    pub(super) const ACK_NUM: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
}

/// Reads the ports of a TCP or UDP header from at least its first 4 bytes.
pub fn ports(buf: &[u8]) -> Result<(u16, u16)> {
    if buf.len() < 4 {
        return Err(Error::Truncated("L4 ports"));
    }
    Ok((u16_at(buf, 0), u16_at(buf, 2)))
}

/// Rewrites the ports of a TCP or UDP header in place (checksum not touched).
pub fn set_ports(buf: &mut [u8], src: u16, dst: u16) -> Result<()> {
    if buf.len() < 4 {
        return Err(Error::Truncated("L4 ports"));
    }
    set_u16(buf, 0, src);
    set_u16(buf, 2, dst);
    Ok(())
}

/// A view of a TCP segment.
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

    /// Wraps a full segment after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// For the segment start quoted in an ICMP error; see the module doc for what is
    /// valid on it.
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < QUOTED_LEN {
            return Err(Error::Truncated("quoted TCP"));
        }
        Ok(Self::new_unchecked(buffer))
    }

    /// Checks that the 20-byte fixed header is present, the data offset is at least 5 and
    /// the options it announces fit in the buffer.
    pub fn check(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated("TCP"));
        }
        if self.header_len() < HEADER_LEN {
            return Err(Error::Malformed("TCP data offset"));
        }
        if self.header_len() > len {
            return Err(Error::Truncated("TCP options"));
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

    /// Sequence number (bytes 4..8), in host byte order.
    pub fn seq_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ_NUM)
    }

    /// Acknowledgment number (bytes 8..12); meaningful only when [`ack`](Self::ack) is set.
    pub fn ack_number(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// Header length in bytes (data offset × 4).
    pub fn header_len(&self) -> usize {
        usize::from(u8_at(self.buffer.as_ref(), field::DATA_OFF) >> 4) * 4
    }

    /// The eight flag bits of byte 13 (see [`flags`]).
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// FIN flag: the sender has no more data.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// SYN flag: opens a direction of the connection.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// RST flag: the connection is aborted.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// PSH flag: the sender asks for prompt delivery of the data so far.
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    /// ACK flag: the acknowledgment number is valid.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// URG flag: the urgent pointer is valid.
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    /// Receive window (bytes 14..16), unscaled: the window-scale option is not applied.
    pub fn window_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::WIN_SIZE)
    }

    /// Checksum field as stored, in host byte order; see [`verify_checksum`](Self::verify_checksum).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Urgent pointer (bytes 18..20); meaningful only when [`urg`](Self::urg) is set.
    pub fn urgent_at(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::URGENT)
    }

    /// Never below 20: a short or quoted buffer reads data offset 0.
    fn payload_offset(&self) -> usize {
        self.header_len().max(HEADER_LEN)
    }

    /// Option bytes between the fixed header and the data offset; not parsed here.
    pub fn options(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Bytes after the header; empty on a quoted view (no data offset to trust).
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.payload_offset(), usize::MAX)
    }

    /// Verifies the checksum over the pseudo header and the whole buffer. Mixed address
    /// families never verify.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if src.is_ipv4() != dst.is_ipv4() {
            return false;
        }
        let b = self.buffer.as_ref();
        let Ok(len) = u32::try_from(b.len()) else {
            return false;
        };
        let s = checksum::pseudo_header(src, dst, ip_proto::TCP, len) + checksum::sum(b);
        checksum::fold(s) == 0xFFFF
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

    /// Writes the sequence number (the checksum is not updated).
    pub fn set_seq_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    /// Writes the acknowledgment number (the checksum is not updated).
    pub fn set_ack_number(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4, 20..=60).
    pub fn set_header_len(&mut self, len: usize) {
        let off = ((len / 4) & 0x0F) as u8;
        let keep = u8_at(self.buffer.as_ref(), field::DATA_OFF) & 0x0F;
        set_u8(self.buffer.as_mut(), field::DATA_OFF, (off << 4) | keep);
    }

    /// Writes all eight flag bits of byte 13 (see [`flags`]).
    pub fn set_flags(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Writes the receive window (the checksum is not updated).
    pub fn set_window_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    /// Writes the checksum field as given; see also [`fill_checksum`](Self::fill_checksum).
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Writes the urgent pointer (the checksum is not updated).
    pub fn set_urgent_at(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Computes the checksum over the pseudo header and the whole buffer.
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let s = checksum::pseudo_header(src, dst, ip_proto::TCP, len) + checksum::sum(b);
        self.set_checksum(checksum::finish(s));
    }

    /// Mutable bytes after the header; empty on a quoted view.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.payload_offset();
        clamped_mut(self.buffer.as_mut(), at, usize::MAX)
    }
}

/// A TCP header without options, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (zero unless the ACK flag is in `flags`).
    pub ack_number: u32,
    /// The eight flag bits of byte 13 (see [`flags`]).
    pub flags: u8,
    /// Receive window, unscaled.
    pub window_len: u16,
    /// Bytes of data after the header (options excluded); they are not part of the `Repr`.
    pub payload_len: usize,
}

impl Repr {
    /// Reads the fixed fields; options are skipped and `payload_len` excludes them.
    /// The checksum is not judged here (see `verify_checksum`).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            payload_len: packet.payload().len(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes before the payload: always 20, since options are
    /// not emitted.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header and fills the checksum over it and the `payload_len`
    /// bytes that must already follow it in the buffer.
    ///
    /// # Panics
    /// If the buffer is shorter than `20 + payload_len`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
    ) {
        let total = HEADER_LEN.saturating_add(self.payload_len);
        assert!(packet.buffer.as_ref().len() >= total, "TCP emit buffer");
        let mut p = Packet::new_unchecked(&mut packet.buffer.as_mut()[..total]);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        // Data offset 5, reserved bits and NS cleared.
        set_u8(p.buffer, field::DATA_OFF, 0x50);
        p.set_flags(self.flags);
        p.set_window_len(self.window_len);
        p.set_urgent_at(0);
        p.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4;
    use crate::wire::test_util::hex;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34));

    /// TCP part of a SYN 192.168.1.10:51234 -> 93.184.216.34:80 (MSS 1460, SACK-perm,
    /// TS 123456/0, NOP, WS 7), checksum 0x1415 as computed by scapy.
    const SYN: &str = "c82200503a4b5c6d00000000a002faf014150000\
        020405b40402080a0001e2400000000001030307";

    #[test]
    fn parses_captured_syn() {
        let b = hex(SYN);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_port(), 51234);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x3a4b5c6d);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), 0x1415);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options().len(), 20);
        assert_eq!(p.options()[..4], [0x02, 0x04, 0x05, 0xb4]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11))));
        assert!(!p.verify_checksum(SRC, IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(SYN);
        for n in 0..b.len() {
            assert!(Packet::new_checked(&b[..n]).is_err(), "{n}");
        }
        for n in 0..QUOTED_LEN {
            assert!(Packet::new_quoted(&b[..n]).is_err());
        }
    }

    #[test]
    fn data_offset_below_five_is_malformed() {
        let mut b = hex(SYN);
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed("TCP data offset")
        );
    }

    #[test]
    fn nat_rewrite_with_incremental_update_verifies() {
        let mut b = hex(SYN);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        let new_dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));
        let mut c = checksum::update_addr(p.checksum(), DST, new_dst);
        c = checksum::update16(c, p.dst_port(), 8080);
        p.set_dst_port(8080);
        p.set_checksum(c);
        assert!(p.verify_checksum(SRC, new_dst));
        assert!(!p.verify_checksum(SRC, DST));
    }

    #[test]
    fn quoted_segment_allows_first_eight_bytes_only() {
        // Quoted in an ICMP frag-needed: 443 -> 51000, seq 1000, nothing more.
        let mut b = hex("01bbc738000003e8");
        let mut q = Packet::new_quoted(&mut b[..]).unwrap();
        assert_eq!(
            (q.src_port(), q.dst_port(), q.seq_number()),
            (443, 51000, 1000)
        );
        assert_eq!((q.ack_number(), q.checksum(), q.header_len()), (0, 0, 0));
        assert!(q.payload().is_empty() && q.options().is_empty());
        q.set_src_port(80);
        q.set_checksum(0x1234); // absent: no effect, no panic
        q.set_seq_number(7);
        assert_eq!(b, hex("0050c73800000007"));
        assert_eq!(ports(&b).unwrap(), (80, 51000));
        set_ports(&mut b, 1, 2).unwrap();
        assert_eq!(ports(&b).unwrap(), (1, 2));
        assert!(ports(&b[..3]).is_err() && set_ports(&mut b[..3], 0, 0).is_err());
    }

    #[test]
    fn emit_matches_tcp_inside_ipv4_frame() {
        // TCP ACK 49152 -> 80 seq 1 ack 2 win 512 with a 16-byte payload, checksum
        // 0x07d8 by scapy (inner packet of the NVGRE sample).
        let wire = hex("c000005000000001000000025010020007d80000474554202f20485454502f312e310d0a");
        let r = Repr::parse(&Packet::new_checked(&wire[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            Repr {
                src_port: 49152,
                dst_port: 80,
                seq_number: 1,
                ack_number: 2,
                flags: flags::ACK,
                window_len: 512,
                payload_len: 16,
            }
        );
        let mut b = wire.clone();
        b[..20].fill(0);
        let src = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        r.emit(&mut Packet::new_unchecked(&mut b[..]), src, dst);
        assert_eq!(b, wire);
    }

    #[test]
    fn syn_inside_its_ipv4_packet_verifies() {
        // The full IPv4 packet of the SYN above: the L4 slice is the IP payload.
        let b = hex("4500003c1c464000400626e9c0a8010a5db8d822")
            .into_iter()
            .chain(hex(SYN))
            .collect::<Vec<_>>();
        let ip = ipv4::Packet::new_checked(&b[..]).unwrap();
        let t = Packet::new_checked(ip.payload()).unwrap();
        assert!(t.verify_checksum(IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr())));
        // An extra byte of (Ethernet padding) in the slice breaks the checksum: the
        // caller must pass exactly the L4 bytes.
        let mut padded = ip.payload().to_vec();
        padded.push(1);
        assert!(
            !Packet::new_checked(&padded[..])
                .unwrap()
                .verify_checksum(SRC, DST)
        );
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            0usize..100,
        )
            .prop_map(
                |(src_port, dst_port, seq_number, ack_number, flags, window_len, payload_len)| {
                    Repr {
                        src_port,
                        dst_port,
                        seq_number,
                        ack_number,
                        flags,
                        window_len,
                        payload_len,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trip(r in repr_strategy(), v6 in any::<bool>(), a in any::<[u8; 16]>(), fill in any::<u8>()) {
            let (src, dst) = if v6 {
                (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::LOCALHOST))
            } else {
                (IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), IpAddr::V4(Ipv4Addr::LOCALHOST))
            };
            let mut b = vec![fill; r.buffer_len() + r.payload_len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]), src, dst);
            let p = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(p.verify_checksum(src, dst));
            prop_assert_eq!(Repr::parse(&p).unwrap(), r);
        }

        #[test]
        fn incremental_port_and_addr_update_matches_recompute(
            r in repr_strategy(), a in any::<u32>(), new_addr in any::<u32>(), new_port in any::<u16>()
        ) {
            let src = IpAddr::V4(Ipv4Addr::from(a));
            let dst = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let new_dst = IpAddr::V4(Ipv4Addr::from(new_addr));
            let mut b = vec![0x5Au8; r.buffer_len() + r.payload_len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]), src, dst);
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            let c = checksum::update16(checksum::update_addr(p.checksum(), dst, new_dst), p.dst_port(), new_port);
            p.set_dst_port(new_port);
            p.set_checksum(c);
            prop_assert!(p.verify_checksum(src, new_dst));
            p.fill_checksum(src, new_dst);
            let full = p.checksum();
            prop_assert!(c == full || (c == 0 || c == 0xFFFF) && (full == 0 || full == 0xFFFF));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..80)) {
            for p in [Packet::new_checked(&b[..]), Packet::new_quoted(&b[..])].into_iter().flatten() {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
                let _ = (p.header_len(), p.window_len(), p.urgent_at(), p.options(), p.payload());
                let _ = p.verify_checksum(SRC, DST);
            }
            let _ = Packet::new_checked(&b[..]).and_then(|p| Repr::parse(&p));
            let mut c = b.clone();
            let mut u = Packet::new_unchecked(&mut c[..]);
            u.fill_checksum(SRC, DST);
            let _ = u.payload_mut().len();
        }

    }
}
