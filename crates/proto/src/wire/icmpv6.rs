//! ICMPv6 messages (RFC 4443) and neighbour discovery (RFC 4861).
//!
//! Job: answer echo and neighbour solicitations for the LB's own addresses and VIPs,
//! recognise errors and hand their quoted packet to the engine (parsed with
//! `ipv6::Packet::new_quoted`), build packet-too-big, and emit NS/NA messages.
//! The checksum always covers the IPv6 pseudo header, so verify/fill take the addresses.
//!
//! Must never allocate, loop without bound over NDP options, or panic on any input.
//! The IPv6 header around an NDP message must carry hop limit 255 (RFC 4861 section 7.1);
//! that header is the caller's to build.

use core::net::Ipv6Addr;

use super::bytes::{
    array_at, clamped, clamped_mut, set_bytes, set_u8, set_u16, set_u32, u8_at, u16_at, u32_at,
};
use super::ethernet::MacAddr;
use super::{Error, Result, checksum, ip_proto};

/// Length of the ICMPv6 header (type, code, checksum, 4 message-specific bytes).
pub const HEADER_LEN: usize = 8;

/// Length of an NS or NA with one link-layer address option, as nvlb emits them.
pub const NDP_LEN: usize = 32;

/// Most NDP options `ndp_*_link_addr` will look at before giving up.
pub const MAX_NDP_OPTIONS: usize = 16;

/// Message types nvlb handles.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big: carries the MTU of the next link (IPv6 routers never fragment).
    pub const PKT_TOO_BIG: u8 = 2;
    /// Time exceeded (hop limit reached zero, or reassembly timed out).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem: a field of the quoted packet was rejected.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request ("ping").
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply: the answer nvlb sends to an echo request for one of its addresses.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation (NS): IPv6's "who has" (RFC 4861 section 4.3).
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement (NA): the answer to an NS (RFC 4861 section 4.4).
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// NDP option types.
pub mod ndp_option {
    /// Source link-layer address: the sender's MAC, carried in an NS.
    pub const SOURCE_LINK_ADDR: u8 = 1;
    /// Target link-layer address: the target's MAC, carried in an NA.
    pub const TARGET_LINK_ADDR: u8 = 2;
}

/// Flags of a neighbour advertisement (byte 4).
pub mod na_flags {
    /// R: the sender is a router.
    pub const ROUTER: u8 = 0x80;
    /// S: the advertisement answers a solicitation (clear for unsolicited ones).
    pub const SOLICITED: u8 = 0x40;
    /// O: the advertised MAC replaces any cached entry.
    pub const OVERRIDE: u8 = 0x20;
}

/// Errors are exactly the types below 128 (RFC 4443 section 2.1).
pub fn is_error(t: u8) -> bool {
    t < 128
}

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQNO: usize = 6;
    pub(super) const MTU: usize = 4;
    pub(super) const RESERVED: usize = 4;
    pub(super) const DATA: usize = 8;
    pub(super) const NDP_FLAGS: usize = 4;
    pub(super) const NDP_TARGET: usize = 8;
    pub(super) const NDP_OPTIONS: usize = 24;
}

/// A view of an ICMPv6 message.
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
            return Err(Error::Truncated("ICMPv6"));
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

    /// MTU of a packet-too-big message.
    pub fn mtu(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::MTU)
    }

    /// Bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), field::RESERVED)
    }

    /// Bytes 8..: echo data, the quoted packet of an error, or an NDP body after the
    /// first 8 bytes.
    pub fn data(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), field::DATA, usize::MAX)
    }

    fn compute(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> u32 {
        let b = self.buffer.as_ref();
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len) + checksum::sum(b)
    }

    /// Verifies the checksum over the pseudo header and the whole buffer.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        checksum::fold(self.compute(src, dst)) == 0xFFFF
    }

    fn is_ndp(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT
        )
    }

    /// Target address of an NS or NA.
    pub fn ndp_target(&self) -> Result<Ipv6Addr> {
        if !self.is_ndp() {
            return Err(Error::Malformed("ICMPv6 not a neighbor message"));
        }
        if self.buffer.as_ref().len() < field::NDP_OPTIONS {
            return Err(Error::Truncated("ICMPv6 NDP target"));
        }
        Ok(Ipv6Addr::from(array_at::<16>(
            self.buffer.as_ref(),
            field::NDP_TARGET,
        )))
    }

    /// R flag of a neighbour advertisement; false for any other type.
    pub fn ndp_router_flag(&self) -> bool {
        self.na_flag(na_flags::ROUTER)
    }

    /// S flag of a neighbour advertisement; false for any other type.
    pub fn ndp_solicited_flag(&self) -> bool {
        self.na_flag(na_flags::SOLICITED)
    }

    /// O flag of a neighbour advertisement; false for any other type.
    pub fn ndp_override_flag(&self) -> bool {
        self.na_flag(na_flags::OVERRIDE)
    }

    fn na_flag(&self, bit: u8) -> bool {
        self.msg_type() == msg_type::NEIGHBOR_ADVERT
            && u8_at(self.buffer.as_ref(), field::NDP_FLAGS) & bit != 0
    }

    /// Finds a link-layer address option of `kind` in an NS/NA. A zero-length option
    /// makes the whole message invalid (RFC 4861 section 4.6), so the walk answers None.
    fn ndp_link_addr(&self, kind: u8) -> Option<MacAddr> {
        if !self.is_ndp() {
            return None;
        }
        let b = self.buffer.as_ref();
        let mut at = field::NDP_OPTIONS;
        for _ in 0..MAX_NDP_OPTIONS {
            if at + 2 > b.len() {
                return None;
            }
            let len = usize::from(u8_at(b, at + 1)) * 8;
            if len == 0 || at + len > b.len() {
                return None;
            }
            if u8_at(b, at) == kind && len >= 8 {
                return Some(MacAddr(array_at(b, at + 2)));
            }
            at += len;
        }
        None
    }

    /// The sender's MAC from a source link-layer address option (NS, sometimes NA).
    pub fn ndp_source_link_addr(&self) -> Option<MacAddr> {
        self.ndp_link_addr(ndp_option::SOURCE_LINK_ADDR)
    }

    /// The target's MAC from a target link-layer address option (NA).
    pub fn ndp_target_link_addr(&self) -> Option<MacAddr> {
        self.ndp_link_addr(ndp_option::TARGET_LINK_ADDR)
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

    /// Writes bytes 4..8 as the MTU of a packet-too-big message.
    pub fn set_mtu(&mut self, value: u32) {
        set_u32(self.buffer.as_mut(), field::MTU, value);
    }

    /// Writes bytes 4..8 as given, whatever the type.
    pub fn set_rest_of_header(&mut self, value: [u8; 4]) {
        set_bytes(self.buffer.as_mut(), field::RESERVED, &value);
    }

    /// Mutable bytes 8.. (echo data, the quoted packet, or the NDP body after byte 8).
    pub fn data_mut(&mut self) -> &mut [u8] {
        clamped_mut(self.buffer.as_mut(), field::DATA, usize::MAX)
    }

    /// Computes the checksum over the pseudo header and the whole buffer.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let c = checksum::finish(self.compute(src, dst));
        self.set_checksum(c);
    }
}

/// Writes an NS/NA body with one link-layer option and fills the checksum.
fn emit_ndp(
    buf: &mut [u8],
    kind: u8,
    flags: u8,
    target: Ipv6Addr,
    mac: MacAddr,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<usize> {
    let Some(msg) = buf.get_mut(..NDP_LEN) else {
        return Err(Error::Truncated("ICMPv6 NDP buffer"));
    };
    // NS carries the sender's MAC, NA the target's.
    let option = if kind == msg_type::NEIGHBOR_SOLICIT {
        ndp_option::SOURCE_LINK_ADDR
    } else {
        ndp_option::TARGET_LINK_ADDR
    };
    msg.fill(0);
    let mut p = Packet::new_unchecked(msg);
    p.set_msg_type(kind);
    p.set_rest_of_header([flags, 0, 0, 0]);
    set_bytes(p.buffer, field::NDP_TARGET, &target.octets());
    set_u8(p.buffer, field::NDP_OPTIONS, option);
    set_u8(p.buffer, field::NDP_OPTIONS + 1, 1);
    set_bytes(p.buffer, field::NDP_OPTIONS + 2, &mac.0);
    p.fill_checksum(src, dst);
    Ok(NDP_LEN)
}

/// Writes a neighbour advertisement for `target` owned by `mac` into `buf[..32]`:
/// override set (nvlb is authoritative for its addresses), router clear, solicited as
/// given (set when answering an NS, clear for unsolicited announcements), with a
/// target link-layer address option. Returns the length written.
pub fn emit_neighbor_advert(
    buf: &mut [u8],
    target: Ipv6Addr,
    mac: MacAddr,
    solicited: bool,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<usize> {
    let flags = na_flags::OVERRIDE | if solicited { na_flags::SOLICITED } else { 0 };
    emit_ndp(buf, msg_type::NEIGHBOR_ADVERT, flags, target, mac, src, dst)
}

/// Writes a neighbour solicitation for `target` from `mac` into `buf[..32]`, with a
/// source link-layer address option (so `src` must not be the unspecified address,
/// RFC 4861 section 4.3). `dst` is usually the target's solicited-node group.
pub fn emit_neighbor_solicit(
    buf: &mut [u8],
    target: Ipv6Addr,
    mac: MacAddr,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
) -> Result<usize> {
    emit_ndp(buf, msg_type::NEIGHBOR_SOLICIT, 0, target, mac, src, dst)
}

/// The solicited-node multicast group of an address (RFC 4291 section 2.7.1).
pub fn solicited_node(addr: &Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use crate::wire::{ipv6, tcp};
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// NS from fe80::5054:ff:fe12:3456 (MAC 52:54:00:12:34:56) to ff02::1:ff00:2 for
    /// target 2001:db8::2, with a source link-layer option; checksum 0x42e8 by scapy.
    const NS: &str = "870042e800000000 20010db8000000000000000000000002 0101525400123456";

    /// Solicited NA (S=1, O=1) for 2001:db8::2 owned by 02:00:00:00:00:02, sent from
    /// 2001:db8::2 to fe80::5054:ff:fe12:3456, checksum 0x35ee by scapy.
    const NA: &str = "880035ee60000000 20010db8000000000000000000000002 0201020000000002";

    /// Packet-too-big (MTU 1280) from 2001:db8::fe to 2001:db8::1, quoting 48 bytes of
    /// a TCP segment 2001:db8::1:5555 -> 2001:db8::99:443 with payload_len 1400.
    const PTB: &str = "0200bc8600000500 600000000578064020010db8000000000000000000000001\
        20010db8000000000000000000000099 15b301bb00000063";

    #[test]
    fn parses_captured_neighbor_solicit() {
        let b = hex(NS);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x42e8);
        assert!(p.verify_checksum(&a("fe80::5054:ff:fe12:3456"), &a("ff02::1:ff00:2")));
        assert!(!p.verify_checksum(&a("fe80::5054:ff:fe12:3457"), &a("ff02::1:ff00:2")));
        assert_eq!(p.ndp_target().unwrap(), a("2001:db8::2"));
        assert_eq!(
            p.ndp_source_link_addr(),
            Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
        );
        assert_eq!(p.ndp_target_link_addr(), None);
        assert!(!p.ndp_solicited_flag() && !is_error(p.msg_type()));
        assert_eq!(solicited_node(&a("2001:db8::2")), a("ff02::1:ff00:2"));
    }

    #[test]
    fn parses_captured_neighbor_advert_and_emits_it_identically() {
        let b = hex(NA);
        let (src, dst) = (a("2001:db8::2"), a("fe80::5054:ff:fe12:3456"));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_ADVERT);
        assert!(p.verify_checksum(&src, &dst));
        assert!(p.ndp_solicited_flag() && p.ndp_override_flag() && !p.ndp_router_flag());
        assert_eq!(p.ndp_target().unwrap(), a("2001:db8::2"));
        let mac = MacAddr([2, 0, 0, 0, 0, 2]);
        assert_eq!(p.ndp_target_link_addr(), Some(mac));
        assert_eq!(p.ndp_source_link_addr(), None);

        let mut out = [0xAAu8; 40];
        assert_eq!(
            emit_neighbor_advert(&mut out, a("2001:db8::2"), mac, true, &src, &dst),
            Ok(32)
        );
        assert_eq!(&out[..32], &b[..]);
        assert_eq!(out[32], 0xAA);
        assert!(
            emit_neighbor_advert(&mut out[..31], a("2001:db8::2"), mac, true, &src, &dst).is_err()
        );
    }

    #[test]
    fn emits_captured_neighbor_solicit() {
        let mut out = [0u8; 32];
        let n = emit_neighbor_solicit(
            &mut out,
            a("2001:db8::2"),
            MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            &a("fe80::5054:ff:fe12:3456"),
            &a("ff02::1:ff00:2"),
        )
        .unwrap();
        assert_eq!(&out[..n], &hex(NS)[..]);
    }

    #[test]
    fn ndp_option_walk_is_safe() {
        let mut b = hex(NS);
        b[25] = 0; // zero-length option: invalid message
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().ndp_source_link_addr(),
            None
        );
        let mut b = hex(NS);
        b[25] = 2; // claims 16 bytes, 8 present
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().ndp_source_link_addr(),
            None
        );
        // A nonce option (type 14, 8 bytes) before the source link-layer option.
        let mut b = hex(NS)[..24].to_vec();
        b.extend_from_slice(&hex("0e01010203040506 0101525400123456"));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.ndp_source_link_addr(),
            Some(MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]))
        );
        // Truncated target and non-NDP types.
        let b = hex(NS);
        assert_eq!(
            Packet::new_checked(&b[..20]).unwrap().ndp_target(),
            Err(Error::Truncated("ICMPv6 NDP target"))
        );
        let mut b = hex(NS);
        b[0] = msg_type::ECHO_REQUEST;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.ndp_target().is_err());
        assert_eq!(p.ndp_source_link_addr(), None);
    }

    #[test]
    fn parses_captured_packet_too_big_and_its_quote() {
        let b = hex(PTB);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (msg_type::PKT_TOO_BIG, 0));
        assert_eq!(p.checksum(), 0xbc86);
        assert_eq!(p.mtu(), 1280);
        assert!(is_error(p.msg_type()));
        assert!(p.verify_checksum(&a("2001:db8::fe"), &a("2001:db8::1")));
        let ip = ipv6::Packet::new_quoted(p.data()).unwrap();
        assert!(ipv6::Packet::new_checked(p.data()).is_err());
        assert_eq!(ip.payload_len(), 1400);
        assert_eq!(ip.dst_addr(), a("2001:db8::99"));
        let ul = ip.upper_layer().unwrap();
        assert_eq!(ul.protocol, ip_proto::TCP);
        let t = tcp::Packet::new_quoted(&p.data()[ul.offset..]).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.seq_number()),
            (5555, 443, 99)
        );
    }

    #[test]
    fn build_packet_too_big() {
        let mut b = hex(PTB);
        b[..8].fill(0);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::PKT_TOO_BIG);
        p.set_mtu(1280);
        p.fill_checksum(&a("2001:db8::fe"), &a("2001:db8::1"));
        assert_eq!(b, hex(PTB));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = hex(NS);
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&b[..n]).unwrap_err(),
                Error::Truncated("ICMPv6")
            );
        }
        for n in HEADER_LEN..b.len() {
            let p = Packet::new_checked(&b[..n]).unwrap();
            assert_eq!(p.ndp_target().is_ok(), n >= 24);
            assert_eq!(p.ndp_source_link_addr(), None);
        }
    }

    #[test]
    fn error_types() {
        assert!(is_error(msg_type::DST_UNREACHABLE) && is_error(msg_type::PARAM_PROBLEM));
        assert!(!is_error(msg_type::ECHO_REQUEST) && !is_error(msg_type::NEIGHBOR_ADVERT));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..120), ndp in any::<bool>()) {
            if ndp && !b.is_empty() {
                b[0] = msg_type::NEIGHBOR_SOLICIT;
            }
            if let Ok(p) = Packet::new_checked(&b[..]) {
                let _ = (p.mtu(), p.data(), p.ndp_target(), p.ndp_source_link_addr(), p.ndp_target_link_addr());
                let _ = p.verify_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
                let _ = ipv6::Packet::new_quoted(p.data()).map(|q| q.upper_layer());
            }
        }

        #[test]
        fn ndp_emit_round_trip(
            t in any::<[u8; 16]>(), m in any::<[u8; 6]>(), s in any::<[u8; 16]>(), solicited in any::<bool>(), na in any::<bool>()
        ) {
            let (target, mac, src, dst) = (Ipv6Addr::from(t), MacAddr(m), Ipv6Addr::from(s), solicited_node(&Ipv6Addr::from(t)));
            let mut buf = [0u8; 32];
            if na {
                emit_neighbor_advert(&mut buf, target, mac, solicited, &src, &dst).unwrap();
            } else {
                emit_neighbor_solicit(&mut buf, target, mac, &src, &dst).unwrap();
            }
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(&src, &dst));
            prop_assert_eq!(p.ndp_target().unwrap(), target);
            if na {
                prop_assert_eq!(p.ndp_target_link_addr(), Some(mac));
                prop_assert_eq!(p.ndp_solicited_flag(), solicited);
            } else {
                prop_assert_eq!(p.ndp_source_link_addr(), Some(mac));
            }
        }
    }
}
