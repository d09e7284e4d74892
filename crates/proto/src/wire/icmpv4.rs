//! ICMPv4 messages (RFC 792, RFC 1191 for frag-needed).
//!
//! Job: answer echo for the LB's own addresses, recognise errors and hand their quoted
//! packet to the engine (which parses it with `ipv4::Packet::new_quoted`), and build
//! frag-needed with the next-hop MTU. Must never allocate or panic on any input.

use super::bytes::{array_at, clamped, clamped_mut, set_bytes, set_u8, set_u16, u8_at, u16_at};
use super::{Error, Result, checksum};

/// Length of the ICMP header (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Message types nvlb handles.
pub mod msg_type {
    /// Echo reply: the answer nvlb sends to an echo request for one of its addresses.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable; code [`FRAG_NEEDED`](super::FRAG_NEEDED) carries a next-hop MTU.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Redirect: an error that quotes a packet.
    pub const REDIRECT: u8 = 5;
    /// Echo request ("ping").
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded (TTL reached zero in transit, or reassembly timed out).
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem: a header field of the quoted packet was rejected.
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination-unreachable code "fragmentation needed and DF set".
pub const FRAG_NEEDED: u8 = 4;

/// Whether a type is an error that quotes a packet nvlb may have to translate.
///
/// Source quench (4) is excluded: RFC 6633 deprecated it, hosts ignore it, and passing
/// it through a NAT only helps an attacker throttle flows.
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DST_UNREACHABLE
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQNO: usize = 6;
    pub(super) const UNUSED: usize = 4;
    pub(super) const MTU: usize = 6;
    pub(super) const DATA: usize = 8;
}

/// A view of an ICMPv4 message.
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

    /// Wraps a message after [`check`](Self::check) has passed.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Checks that the 8-byte header is present; the type is not judged.
    pub fn check(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated("ICMPv4"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type (see [`msg_type`]).
    pub fn msg_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TYPE)
    }

    /// Message code; its meaning depends on the type.
    pub fn msg_code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CODE)
    }

    /// Checksum as stored; see [`verify_checksum`](Self::verify_checksum).
    pub fn checksum(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (echo request/reply only).
    pub fn echo_ident(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (echo request/reply only).
    pub fn echo_seq_no(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Next-hop MTU of a frag-needed message (RFC 1191); 0 from pre-1191 routers.
    pub fn next_hop_mtu(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::MTU)
    }

    /// Bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), field::UNUSED)
    }

    /// Bytes 8..: echo data, or for errors the quoted IP header and at least 8 bytes of
    /// its payload (possibly cut short).
    pub fn data(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), field::DATA, usize::MAX)
    }

    /// Verifies the checksum over the whole buffer (pass exactly the ICMP bytes).
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.buffer.as_ref())) == 0xFFFF
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the message type (see [`msg_type`]); the checksum is not updated.
    pub fn set_msg_type(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::TYPE, value);
    }

    /// Writes the message code; the checksum is not updated.
    pub fn set_msg_code(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::CODE, value);
    }

    /// Writes the checksum as given; see also [`fill_checksum`](Self::fill_checksum).
    pub fn set_checksum(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Writes the echo identifier (bytes 4..6).
    pub fn set_echo_ident(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, value);
    }

    /// Writes the echo sequence number (bytes 6..8).
    pub fn set_echo_seq_no(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQNO, value);
    }

    /// Sets the frag-needed MTU; bytes 4..6 are the "unused" field and are zeroed.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::UNUSED, 0);
        set_u16(self.buffer.as_mut(), field::MTU, value);
    }

    /// Writes bytes 4..8 as given, whatever the type.
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        set_bytes(self.buffer.as_mut(), field::UNUSED, &value);
    }

    /// Mutable bytes 8.. (echo data or the quoted packet).
    pub fn data_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), field::DATA, usize::MAX)
    }

    /// Computes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use crate::wire::{ip_proto, ipv4, tcp};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    /// Echo request id 0x1234 seq 7 with data "abcdefgh" (from 10.0.0.1 to 10.0.0.2).
    const ECHO: &str = "0800542f123400076162636465666768";

    /// Frag-needed, next-hop MTU 1458, quoting 10.0.0.5:443 -> 203.0.113.9:51000 (TCP),
    /// total_len 1500, of which 28 bytes are quoted.
    const FRAG_NEEDED_MSG: &str = "03042a6e000005b2\
        450005dc424240003f06adcb0a000005cb007109 01bbc738000003e8";

    #[test]
    fn parses_captured_echo_request() {
        let b = hex(ECHO);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x542f);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 7);
        assert_eq!(p.rest_of_header(), [0x12, 0x34, 0x00, 0x07]);
        assert_eq!(p.data(), b"abcdefgh");
        assert!(p.verify_checksum());
        assert!(!is_error(p.msg_type()));
    }

    #[test]
    fn echo_reply_from_request() {
        let mut b = hex(ECHO);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        let c = checksum::update16(p.checksum(), u16::from(msg_type::ECHO_REQUEST) << 8, 0);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.set_checksum(c);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn parses_captured_frag_needed_and_its_quote() {
        let b = hex(FRAG_NEEDED_MSG);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.msg_code()),
            (msg_type::DST_UNREACHABLE, FRAG_NEEDED)
        );
        assert_eq!(p.checksum(), 0x2a6e);
        assert_eq!(p.next_hop_mtu(), 1458);
        assert!(p.verify_checksum());
        assert!(is_error(p.msg_type()));
        let ip = ipv4::Packet::new_quoted(p.data()).unwrap();
        assert_eq!(ip.protocol(), ip_proto::TCP);
        assert_eq!(ip.src_addr(), Ipv4Addr::new(10, 0, 0, 5));
        let t = tcp::Packet::new_quoted(ip.quoted_payload()).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq_number()),
            (443, 51000, 1000)
        );
    }

    #[test]
    fn build_frag_needed() {
        let mut b = hex(FRAG_NEEDED_MSG);
        b[..8].fill(0);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::DST_UNREACHABLE);
        p.set_msg_code(FRAG_NEEDED);
        p.set_next_hop_mtu(1458);
        p.fill_checksum();
        assert_eq!(b, hex(FRAG_NEEDED_MSG));
    }

    #[test]
    fn error_types() {
        let errors: Vec<u8> = (0..=255).filter(|t| is_error(*t)).collect();
        assert_eq!(errors, [3, 5, 11, 12]);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(ECHO);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                Error::Truncated("ICMPv4")
            );
        }
        assert!(
            Packet::new_checked(&b[..HEADER_LEN])
                .unwrap()
                .data()
                .is_empty()
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.msg_type(), p.msg_code(), p.echo_ident(), p.next_hop_mtu(), p.data());
                let _ = p.verify_checksum();
                let _ = ipv4::Packet::new_quoted(p.data()).map(|q| q.quoted_payload().len());
            }
        }

        #[test]
        fn fill_then_verify(mut b in proptest::collection::vec(any::<u8>(), 8..100)) {
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.fill_checksum();
            prop_assert!(p.verify_checksum());
            // Flipping one bit changes the sum by ±1, which no checksum can absorb.
            p.set_echo_seq_no(p.echo_seq_no() ^ 1);
            prop_assert!(!p.verify_checksum());
        }
    }
}
