//! GRE (RFC 2784, key and sequence from RFC 2890) and its NVGRE profile (RFC 7637).
//!
//! Job: find the key (VSID and FlowID) and payload of received GRE, and build the 8-byte
//! NVGRE header nvlb sends. Version 1 (PPTP), the RFC 1701 routing field and the
//! RFC 1701 strict-source-route and recursion bits (bits 4-5, which RFC 2784 section 2.3
//! says a receiver MUST discard) are refused as `Unsupported` before any offset is
//! computed from them; bits 6-12 are ignored on receipt as that section asks.
//!
//! Must never allocate or panic on any input (a routing bit is exactly the input that
//! makes other parsers panic).

use super::bytes::{clamped, clamped_mut, set_u16, set_u32, u16_at, u32_at};
use super::{Error, Result, checksum};

/// Length of the fixed part: flags/version word and protocol type.
pub const BASE_LEN: usize = 4;
/// NVGRE: base header plus the key.
pub const NVGRE_HEADER_LEN: usize = 8;
/// NVGRE flags word: K set, C = S = 0, version 0.
pub const NVGRE_FLAGS: u16 = 0x2000;

/// Flag bits of the first word.
pub mod flag {
    /// C: a checksum word (checksum and reserved1) follows the base header.
    pub const CHECKSUM: u16 = 0x8000;
    /// R: the RFC 1701 routing field is present; always refused.
    pub const ROUTING: u16 = 0x4000;
    /// K: a 32-bit key follows (RFC 2890); NVGRE requires it.
    pub const KEY: u16 = 0x2000;
    /// S: a 32-bit sequence number follows (RFC 2890).
    pub const SEQUENCE: u16 = 0x1000;
    /// Bits 4-5 of RFC 2784's Reserved0 (RFC 1701's s bit and the top recursion bit):
    /// a packet with either set is discarded.
    pub const MUST_BE_ZERO: u16 = 0x0C00;
    /// Version bits; only version 0 is accepted.
    pub const VERSION_MASK: u16 = 0x0007;
}

/// The NVGRE key: 24-bit VSID then 8-bit FlowID. VSID bits above 24 are dropped.
pub fn nvgre_key(vsid: u32, flow_id: u8) -> u32 {
    ((vsid & 0x00FF_FFFF) << 8) | u32::from(flow_id)
}

mod field {
    pub(super) const FLAGS: usize = 0;
    pub(super) const PROTOCOL: usize = 2;
    pub(super) const CHECKSUM: usize = 4;
}

/// A view of a GRE packet.
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

    /// Wraps a packet after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks version 0, no routing, reserved bits 4-5 clear, and that the optional fields
    /// the flags announce fit in the buffer.
    pub fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < BASE_LEN {
            return Err(Error::Truncated("GRE"));
        }
        if self.version() != 0 {
            return Err(Error::Unsupported("GRE version"));
        }
        if self.routing_present() {
            return Err(Error::Unsupported("GRE routing"));
        }
        if self.flags_word() & flag::MUST_BE_ZERO != 0 {
            return Err(Error::Unsupported("GRE reserved bits 4-5"));
        }
        if self.header_len() > self.buffer.as_ref().len() {
            return Err(Error::Truncated("GRE header"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first 16 bits: flag bits (see [`flag`]), reserved bits and version.
    pub fn flags_word(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::FLAGS)
    }

    /// C bit: a checksum field is present.
    pub fn checksum_present(&self) -> bool {
        self.flags_word() & flag::CHECKSUM != 0
    }

    /// R bit: a routing field is announced (refused by [`check`](Self::check)).
    pub fn routing_present(&self) -> bool {
        self.flags_word() & flag::ROUTING != 0
    }

    /// K bit: a key field is present (the VSID and FlowID in NVGRE).
    pub fn key_present(&self) -> bool {
        self.flags_word() & flag::KEY != 0
    }

    /// S bit: a sequence number field is present.
    pub fn seq_present(&self) -> bool {
        self.flags_word() & flag::SEQUENCE != 0
    }

    /// The 3-bit version field; 0 is GRE, 1 is PPTP's enhanced GRE (refused).
    pub fn version(&self) -> u8 {
        (self.flags_word() & flag::VERSION_MASK) as u8
    }

    /// An EtherType: 0x6558 for NVGRE, 0x0800/0x86DD for plain IP-in-GRE.
    pub fn protocol_type(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// 4 + 4·C + 4·K + 4·S; the routing field is never counted (it is refused).
    pub fn header_len(&self) -> usize {
        BASE_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present())
            + 4 * usize::from(self.seq_present())
    }

    fn key_offset(&self) -> usize {
        BASE_LEN + 4 * usize::from(self.checksum_present())
    }

    fn seq_offset(&self) -> usize {
        self.key_offset() + 4 * usize::from(self.key_present())
    }

    /// The checksum field, when C is set.
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| u16_at(self.buffer.as_ref(), field::CHECKSUM))
    }

    /// The 32-bit key (RFC 2890), when K is set; in NVGRE it holds VSID and FlowID.
    pub fn key(&self) -> Option<u32> {
        self.key_present()
            .then(|| u32_at(self.buffer.as_ref(), self.key_offset()))
    }

    /// The sequence number (RFC 2890), when S is set.
    pub fn sequence(&self) -> Option<u32> {
        self.seq_present()
            .then(|| u32_at(self.buffer.as_ref(), self.seq_offset()))
    }

    /// NVGRE Virtual Subnet ID: the upper 24 bits of the key.
    pub fn vsid(&self) -> Option<u32> {
        self.key().map(|k| k >> 8)
    }

    /// NVGRE FlowID: the low 8 bits of the key (entropy; never part of a match).
    pub fn flow_id(&self) -> Option<u8> {
        self.key().map(|k| (k & 0xFF) as u8)
    }

    /// Bytes after the GRE header: for NVGRE an inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), self.header_len(), usize::MAX)
    }

    /// True when C is clear, or when the checksum over header and payload (the whole
    /// buffer) verifies.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the whole flags/version word; callers keep header_len in mind.
    pub fn set_flags_word(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::FLAGS, value);
    }

    /// Writes the protocol type (an EtherType, e.g. 0x6558 for NVGRE).
    pub fn set_protocol_type(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    /// Rewrites the key in place; does nothing when K is clear (no room for it).
    pub fn set_key(&mut self, value: u32) {
        if self.key_present() {
            let at = self.key_offset();
            set_u32(self.buffer.as_mut(), at, value);
        }
    }

    /// Rewrites the sequence number; does nothing when S is clear.
    pub fn set_sequence(&mut self, value: u32) {
        if self.seq_present() {
            let at = self.seq_offset();
            set_u32(self.buffer.as_mut(), at, value);
        }
    }

    /// Computes the checksum over the whole buffer (header and payload); does nothing
    /// when C is clear.
    pub fn fill_checksum(&mut self) {
        if !self.checksum_present() {
            return;
        }
        set_u32(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::data(self.buffer.as_ref());
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// Mutable bytes after the GRE header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        clamped_mut(self.buffer.as_mut(), hl, usize::MAX)
    }
}

/// A GRE header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Protocol type: the EtherType of the payload.
    pub protocol: u16,
    /// Key field (K bit set when `Some`); for NVGRE see [`nvgre_key`].
    pub key: Option<u32>,
    /// Whether the C bit (and checksum field) is present.
    pub checksum: bool,
    /// Sequence number field (S bit set when `Some`).
    pub sequence: Option<u32>,
}

impl Repr {
    /// The NVGRE header for a VSID and FlowID.
    pub fn nvgre(vsid: u32, flow_id: u8) -> Repr {
        Repr {
            protocol: super::ethernet::ethertype::TEB,
            key: Some(nvgre_key(vsid, flow_id)),
            checksum: false,
            sequence: None,
        }
    }

    /// Reads the header; the checksum is not judged here (see `verify_checksum`).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            protocol: packet.protocol_type(),
            key: packet.key(),
            checksum: packet.checksum_present(),
            sequence: packet.sequence(),
        })
    }

    /// Bytes the header takes: 4, plus 4 for each of checksum, key and sequence.
    pub fn buffer_len(&self) -> usize {
        BASE_LEN
            + 4 * usize::from(self.checksum)
            + 4 * usize::from(self.key.is_some())
            + 4 * usize::from(self.sequence.is_some())
    }

    /// Writes the header. With `checksum`, the checksum covers the whole buffer of the
    /// view, so the payload must already be in place and the buffer must end where the
    /// payload ends.
    ///
    /// # Panics
    /// If the buffer is shorter than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        assert!(
            packet.buffer.as_ref().len() >= self.buffer_len(),
            "GRE emit buffer"
        );
        let mut word = 0u16;
        if self.checksum {
            word |= flag::CHECKSUM;
        }
        if self.key.is_some() {
            word |= flag::KEY;
        }
        if self.sequence.is_some() {
            word |= flag::SEQUENCE;
        }
        packet.set_flags_word(word);
        packet.set_protocol_type(self.protocol);
        if let Some(k) = self.key {
            packet.set_key(k);
        }
        if let Some(s) = self.sequence {
            packet.set_sequence(s);
        }
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{self, ethertype};
    use crate::wire::test_util::hex;
    use crate::wire::{ip_proto, ipv4, tcp};
    use core::net::{IpAddr, Ipv4Addr};
    use proptest::prelude::*;

    /// A full NVGRE frame: outer 00:15:5d:00:00:01 -> :02, 192.168.100.1 -> .2, GRE
    /// K=1 proto 0x6558 key 0x0013892a (VSID 5001, FlowID 42); inner
    /// 00:1d:d8:b7:1c:00 -> :01, 10.0.0.1:49152 -> 10.0.0.2:80 TCP ACK "GET / HTTP/1.1".
    pub(crate) const NVGRE_FRAME: &str = "00155d00000200155d0000010800\
        4500006201014000402ff017c0a86401c0a86402 200065580013892a\
        001dd8b71c01001dd8b71c000800 4500003800070000400666b70a0000010a000002\
        c000005000000001000000025010020007d80000474554202f20485454502f312e310d0a";

    /// C, K and S set: checksum 0x4643 (scapy), key 0x11223344, seq 5, IPv4 payload.
    const WITH_CKSUM: &str = "b00008004643000011223344000000057061796c6f616421";

    #[test]
    fn parses_captured_nvgre_frame() {
        let b = hex(NVGRE_FRAME);
        let outer = ethernet::Frame::new_checked(&b[..]).unwrap();
        assert_eq!(outer.ethertype(), ethertype::IPV4);
        let ip = ipv4::Packet::new_checked(outer.payload()).unwrap();
        assert_eq!(ip.protocol(), ip_proto::GRE);
        assert!(ip.verify_checksum());
        let g = Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(g.flags_word(), NVGRE_FLAGS);
        assert!(
            g.key_present() && !g.checksum_present() && !g.seq_present() && !g.routing_present()
        );
        assert_eq!(g.version(), 0);
        assert_eq!(g.protocol_type(), ethertype::TEB);
        assert_eq!(g.header_len(), NVGRE_HEADER_LEN);
        assert_eq!(g.key(), Some((0x1389 << 8) | 0x2a));
        assert_eq!(g.vsid(), Some(5001));
        assert_eq!(g.flow_id(), Some(42));
        assert_eq!((g.checksum(), g.sequence()), (None, None));
        assert!(g.verify_checksum());
        let inner = ethernet::Frame::new_checked(g.payload()).unwrap();
        assert_eq!(inner.src_addr().to_string(), "00:1d:d8:b7:1c:00");
        let iip = ipv4::Packet::new_checked(inner.payload()).unwrap();
        assert_eq!(iip.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        let t = tcp::Packet::new_checked(iip.payload()).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (49152, 80));
        assert!(t.verify_checksum(IpAddr::V4(iip.src_addr()), IpAddr::V4(iip.dst_addr())));
        assert_eq!(Repr::parse(&g).unwrap(), Repr::nvgre(5001, 42));
    }

    #[test]
    fn emits_the_captured_nvgre_header() {
        let mut out = [0u8; NVGRE_HEADER_LEN];
        let r = Repr::nvgre(5001, 42);
        assert_eq!(r.buffer_len(), NVGRE_HEADER_LEN);
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..], hex("200065580013892a")[..]);
        assert_eq!(nvgre_key(0x0100_1389, 42), 0x0013892a);
    }

    #[test]
    fn checksum_and_sequence_fields() {
        let b = hex(WITH_CKSUM);
        let g = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(g.header_len(), 16);
        assert_eq!(g.checksum(), Some(0x4643));
        assert_eq!(g.key(), Some(0x11223344));
        assert_eq!(g.sequence(), Some(5));
        assert_eq!(g.protocol_type(), ethertype::IPV4);
        assert_eq!(g.payload(), b"payload!");
        assert!(g.verify_checksum());
        let r = Repr::parse(&g).unwrap();
        assert_eq!(
            r,
            Repr {
                protocol: 0x0800,
                key: Some(0x11223344),
                checksum: true,
                sequence: Some(5)
            }
        );
        let mut out = b.clone();
        out[..16].fill(0);
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        let mut bad = b.clone();
        bad[20] ^= 1;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }

    #[test]
    fn refuses_routing_and_other_versions() {
        let mut b = hex("600065580013892a");
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Unsupported("GRE routing")
        );
        b[0] = 0xF0; // every flag, routing included
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Unsupported("GRE routing")
        );
        b[0] = 0x20;
        b[1] = 0x01; // PPTP's enhanced GRE
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::Unsupported("GRE version")
        );
    }

    /// Found by the engine fuzz target: K plus RFC 1701's strict-source-route bit (and
    /// a recursion bit) was taken as NVGRE; RFC 2784 section 2.3 says discard.
    #[test]
    fn refuses_reserved_bits_4_and_5_and_ignores_6_to_12() {
        for word in [0x2800u16, 0x2400, 0x2900, 0x2C00] {
            let mut b = hex("200065580013892a");
            b[..2].copy_from_slice(&word.to_be_bytes());
            assert_eq!(
                Packet::new_checked(&b[..]).unwrap_err(),
                Error::Unsupported("GRE reserved bits 4-5"),
                "{word:#06x}"
            );
        }
        for word in [0x2200u16, 0x2100, 0x20F8] {
            let mut b = hex("200065580013892a");
            b[..2].copy_from_slice(&word.to_be_bytes());
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_eq!(p.vsid(), Some(0x1389), "{word:#06x}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for s in ["200065580013892a", WITH_CKSUM] {
            let b = hex(s);
            let hl = Packet::new_unchecked(&b[..]).header_len();
            for n in 0..hl {
                assert!(Packet::new_checked(&b[..n]).is_err(), "{n}");
            }
            assert!(Packet::new_checked(&b[..hl]).unwrap().payload().is_empty());
        }
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<u16>(),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(protocol, key, checksum, sequence)| Repr {
                protocol,
                key,
                checksum,
                sequence,
            })
    }

    proptest! {
        #[test]
        fn repr_round_trip(r in repr_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut b = vec![0u8; r.buffer_len()];
            b.extend_from_slice(&payload);
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            let g = Packet::new_checked(&b[..]).unwrap();
            prop_assert!(g.verify_checksum());
            prop_assert_eq!(g.payload(), &payload[..]);
            prop_assert_eq!(Repr::parse(&g).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(g) = Packet::new_checked(&b[..]) {
                let _ = (g.key(), g.sequence(), g.checksum(), g.vsid(), g.flow_id(), g.payload());
                let _ = g.verify_checksum();
                prop_assert!(g.header_len() <= b.len());
            }
            let u = Packet::new_unchecked(&b[..]);
            let _ = (u.key(), u.sequence(), u.payload(), Repr::parse(&u));
        }
    }
}
