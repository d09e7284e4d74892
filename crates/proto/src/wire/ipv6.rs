//! IPv6 headers (RFC 8200) and a bounded walk over extension headers.
//!
//! Job: read and rewrite outer and inner IPv6 headers in place, find the upper-layer
//! protocol behind extension headers, and read the IPv6 header quoted inside an ICMPv6
//! error.
//!
//! `new_checked` promises version 6, 40 bytes, and `40 + payload_len <= buffer length`
//! (a longer buffer is Ethernet padding; `payload()` stops at `payload_len`).
//! `new_quoted` checks only version and the fixed header, for quotes that are cut short.
//! Every accessor, and `upper_layer`, is valid on both views: payloads are clamped to the
//! bytes present.
//!
//! Must never: loop without bound, read past the payload, allocate, or panic on any
//! input. The extension-header walk stops after [`MAX_EXT_HEADERS`] headers.

use core::net::Ipv6Addr;

use super::bytes::{
    array_at, clamped, clamped_mut, set_bytes, set_u8, set_u16, set_u32, u8_at, u16_at, u32_at,
};
use super::{Error, Result, ip_proto};

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Most extension headers `upper_layer` will cross. Real traffic uses one or two;
/// a longer chain is treated as an attack on the parser, not as a packet.
pub const MAX_EXT_HEADERS: usize = 8;

mod field {
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const LENGTH: usize = 4;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC: usize = 8;
    pub(super) const DST: usize = 24;
}

/// Where the upper-layer header starts, behind any extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The protocol found: TCP, UDP, ICMPv6, GRE … or ESP/no-next-header/unknown values
    /// at which the walk stopped.
    pub protocol: u8,
    /// Offset of that header from the start of the IPv6 header.
    pub offset: usize,
    /// The fragment header crossed on the way, if any. With a non-zero offset the walk
    /// stops there: what follows is the middle of some upper-layer payload.
    pub fragment: Option<Fragment>,
}

/// The contents of an IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of this fragment's data in bytes.
    pub offset: u16,
    /// M flag: more fragments of the same packet follow.
    pub more: bool,
    /// Identification shared by all fragments of one original packet.
    pub ident: u32,
}

/// A view of an IPv6 packet.
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

    /// For the header quoted in an ICMPv6 error: `payload_len` may exceed the bytes
    /// present.
    pub fn new_quoted(buffer: T) -> Result<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }

    fn check_header(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated("IPv6"));
        }
        if self.version() != 6 {
            return Err(Error::Malformed("IPv6 version"));
        }
        Ok(())
    }

    /// Everything `new_checked` promises.
    pub fn check(&self) -> Result<()> {
        self.check_header()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated("IPv6 payload"));
        }
        Ok(())
    }

    /// Gives back the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble; 6 on any view that passed a check.
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4
    }

    /// Traffic class: DSCP in the upper six bits, ECN in the lower two.
    pub fn traffic_class(&self) -> u8 {
        ((u16_at(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) & 0xFF) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000F_FFFF
    }

    /// Payload length field: bytes after the 40-byte header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LENGTH)
    }

    /// Next header: the protocol of the first extension header or of the upper layer
    /// (see [`upper_layer`](Self::upper_layer) to skip extension headers).
    pub fn next_header(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Hop limit, as received.
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    /// Source address (bytes 8..24).
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buffer.as_ref(), field::SRC))
    }

    /// Destination address (bytes 24..40).
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(array_at::<16>(self.buffer.as_ref(), field::DST))
    }

    /// End of the payload: `40 + payload_len`, clamped to the buffer.
    fn payload_end(&self) -> usize {
        (HEADER_LEN + usize::from(self.payload_len())).min(self.buffer.as_ref().len())
    }

    /// Bytes 40..40+payload_len (clamped to the buffer), extension headers included.
    pub fn payload(&self) -> &[u8] {
        clamped(self.buffer.as_ref(), HEADER_LEN, self.payload_end())
    }

    /// What a quoted header still carries: at most `payload_len`, at most the buffer.
    pub fn quoted_payload(&self) -> &[u8] {
        self.payload()
    }

    /// Walks the extension headers to the upper-layer protocol.
    ///
    /// Crosses hop-by-hop (first position only), routing, destination options, fragment
    /// and AH headers; stops at anything else (TCP, UDP, ICMPv6, ESP, no-next-header,
    /// unknown). Errors: a header that runs past the payload (`Truncated`), hop-by-hop
    /// after the first position or more than [`MAX_EXT_HEADERS`] headers (`Malformed`).
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let buf = self.buffer.as_ref();
        let end = self.payload_end();
        let mut protocol = self.next_header();
        let mut offset = HEADER_LEN;
        let mut fragment = None;
        for crossed in 0..=MAX_EXT_HEADERS {
            let hdr_len = match protocol {
                ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS | ip_proto::AH => {
                    if protocol == ip_proto::HOPOPT && crossed != 0 {
                        return Err(Error::Malformed("IPv6 hop-by-hop not first"));
                    }
                    let units = usize::from(u8_at(buf, offset + 1));
                    if protocol == ip_proto::AH {
                        (units + 2) * 4
                    } else {
                        (units + 1) * 8
                    }
                }
                ip_proto::IPV6_FRAG => 8,
                _ => {
                    return Ok(UpperLayer {
                        protocol,
                        offset,
                        fragment,
                    });
                }
            };
            if crossed == MAX_EXT_HEADERS {
                break;
            }
            // Both fields read above must lie inside the payload, as must the whole header.
            if offset + 2 > end || offset + hdr_len > end {
                return Err(Error::Truncated("IPv6 extension header"));
            }
            let next = u8_at(buf, offset);
            if protocol == ip_proto::IPV6_FRAG {
                let off_flags = u16_at(buf, offset + 2);
                let frag = Fragment {
                    offset: off_flags & 0xFFF8,
                    more: off_flags & 1 != 0,
                    ident: u32_at(buf, offset + 4),
                };
                fragment = Some(frag);
                if frag.offset != 0 {
                    return Ok(UpperLayer {
                        protocol: next,
                        offset: offset + hdr_len,
                        fragment,
                    });
                }
            }
            protocol = next;
            offset += hdr_len;
        }
        Err(Error::Malformed("IPv6 extension header chain too long"))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes version 6 with the given traffic class and flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000F_FFFF);
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }

    /// Writes the traffic class and keeps the flow label.
    pub fn set_traffic_class(&mut self, value: u8) {
        let flow = self.flow_label();
        let ver = u32::from(self.version() & 0x0F);
        let w = (ver << 28) | (u32::from(value) << 20) | flow;
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }

    /// Writes the low 20 bits of `value` as the flow label; version and traffic class are kept.
    pub fn set_flow_label(&mut self, value: u32) {
        let w = u32_at(self.buffer.as_ref(), field::VER_TC_FLOW) & 0xFFF0_0000;
        set_u32(
            self.buffer.as_mut(),
            field::VER_TC_FLOW,
            w | (value & 0x000F_FFFF),
        );
    }

    /// Writes the payload length field (bytes after the fixed header).
    pub fn set_payload_len(&mut self, value: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Writes the next header field.
    pub fn set_next_header(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::NXT_HDR, value);
    }

    /// Writes the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        set_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    /// Writes the source address; any L4 checksum is not updated.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::SRC, &addr.octets());
    }

    /// Writes the destination address; any L4 checksum is not updated.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        set_bytes(self.buffer.as_mut(), field::DST, &addr.octets());
    }

    /// Mutable bytes 40..40+payload_len, clamped to the buffer.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.payload_end();
        clamped_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// The fixed IPv6 header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header: the protocol that directly follows the fixed header.
    pub next_header: u8,
    /// Bytes after the fixed header, extension headers included.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP and ECN).
    pub traffic_class: u8,
    /// 20 bits; higher bits are dropped on emit.
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header; extension headers stay part of the payload
    /// (`upper_layer` finds what is behind them).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Bytes [`emit`](Self::emit) writes before the payload: always 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header. A `payload_len` above 65535 (jumbograms are not
    /// supported) saturates (a caller bug).
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        assert!(
            packet.buffer.as_ref().len() >= HEADER_LEN,
            "IPv6 emit buffer"
        );
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::hex;
    use proptest::prelude::*;

    /// UDP 2001:db8::1:40000 -> 2001:db8::53:53 "hello", tclass 0x28, flow 0x12345.
    const UDP6: &str = "62812345000d114020010db8000000000000000000000001\
        20010db8000000000000000000000053 9c400035000dc3c668656c6c6f";

    /// 2001:db8::1 -> ::2: hop-by-hop (router alert) + destination options (PadN) +
    /// first fragment (M=1, id 0xdeadbeef) + UDP 1000 -> 2000 with 8 bytes of "x".
    const EXT_CHAIN: &str = "600000000028004020010db8000000000000000000000001\
        20010db8000000000000000000000002 3c00050200000100 2c00010400000000\
        11000001deadbeef 03e807d00010b6bf7878787878787878";

    #[test]
    fn parses_captured_header() {
        let b = hex(UDP6);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x28);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 13);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::53".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 13);
        assert_eq!(
            p.upper_layer().unwrap(),
            UpperLayer {
                protocol: ip_proto::UDP,
                offset: 40,
                fragment: None
            }
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        for s in [UDP6, EXT_CHAIN] {
            let b = hex(s);
            for n in 0..b.len() {
                assert!(Packet::new_checked(&b[..n]).is_err(), "{n}");
            }
        }
    }

    #[test]
    fn padding_beyond_payload_len_is_ignored() {
        let mut b = hex(UDP6);
        b.extend_from_slice(&[0xEE; 7]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 13);
    }

    #[test]
    fn walks_hop_by_hop_dest_opts_fragment() {
        let b = hex(EXT_CHAIN);
        let p = Packet::new_checked(&b[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, ip_proto::UDP);
        assert_eq!(ul.offset, 64);
        assert_eq!(
            ul.fragment,
            Some(Fragment {
                offset: 0,
                more: true,
                ident: 0xdeadbeef
            })
        );
        assert_eq!(&b[ul.offset..ul.offset + 4], &[0x03, 0xe8, 0x07, 0xd0]);
    }

    #[test]
    fn non_first_fragment_stops_the_walk() {
        let mut b = hex(EXT_CHAIN);
        b[58..60].copy_from_slice(&(1480u16 | 1).to_be_bytes());
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!(ul.protocol, ip_proto::UDP);
        assert_eq!(ul.offset, 64);
        assert_eq!(
            ul.fragment,
            Some(Fragment {
                offset: 1480,
                more: true,
                ident: 0xdeadbeef
            })
        );
    }

    #[test]
    fn chain_past_the_end_is_truncated() {
        let mut b = hex(EXT_CHAIN);
        b[49] = 4; // destination options claims 40 bytes; 32 remain
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            Error::Truncated("IPv6 extension header")
        );
        // Same when the buffer holds the bytes but payload_len does not cover them.
        let mut b = hex(EXT_CHAIN);
        b[4..6].copy_from_slice(&20u16.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            Error::Truncated("IPv6 extension header")
        );
    }

    #[test]
    fn hop_by_hop_only_first() {
        let mut b = hex(EXT_CHAIN);
        b[48] = ip_proto::HOPOPT;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            p.upper_layer().unwrap_err(),
            Error::Malformed("IPv6 hop-by-hop not first")
        );
    }

    fn chain_of(n: usize) -> Vec<u8> {
        let mut b = hex(&UDP6[..80]);
        b[6] = ip_proto::IPV6_OPTS;
        for i in 0..n {
            let next = if i + 1 == n {
                ip_proto::TCP
            } else {
                ip_proto::IPV6_OPTS
            };
            b.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
        b.extend_from_slice(&[0u8; 20]);
        let plen = (b.len() - 40) as u16;
        b[4..6].copy_from_slice(&plen.to_be_bytes());
        b
    }

    #[test]
    fn chain_length_is_bounded() {
        let ok = chain_of(MAX_EXT_HEADERS);
        let ul = Packet::new_checked(&ok[..]).unwrap().upper_layer().unwrap();
        assert_eq!(
            (ul.protocol, ul.offset),
            (ip_proto::TCP, 40 + 8 * MAX_EXT_HEADERS)
        );
        for n in [MAX_EXT_HEADERS + 1, 100] {
            let b = chain_of(n);
            assert_eq!(
                Packet::new_checked(&b[..])
                    .unwrap()
                    .upper_layer()
                    .unwrap_err(),
                Error::Malformed("IPv6 extension header chain too long")
            );
        }
    }

    #[test]
    fn ah_length_is_in_four_byte_units() {
        let mut b = hex(&UDP6[..80]);
        b[6] = ip_proto::AH;
        // AH: next = TCP, len 4 -> (4 + 2) * 4 = 24 bytes.
        b.extend_from_slice(&[ip_proto::TCP, 4]);
        b.extend_from_slice(&[0u8; 22 + 20]);
        let plen = (b.len() - 40) as u16;
        b[4..6].copy_from_slice(&plen.to_be_bytes());
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!((ul.protocol, ul.offset), (ip_proto::TCP, 64));
    }

    #[test]
    fn esp_and_no_next_header_stop() {
        for p in [ip_proto::ESP, ip_proto::IPV6_NONXT, 253] {
            let mut b = hex(UDP6);
            b[6] = p;
            let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
            assert_eq!((ul.protocol, ul.offset), (p, 40));
        }
    }

    #[test]
    fn quoted_header() {
        let mut b = hex(UDP6);
        b[4..6].copy_from_slice(&1400u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).is_err());
        let q = Packet::new_quoted(&b[..]).unwrap();
        assert_eq!(q.quoted_payload(), &b[40..]);
        assert_eq!(q.upper_layer().unwrap().protocol, ip_proto::UDP);
        for n in 0..40 {
            assert!(Packet::new_quoted(&b[..n]).is_err());
        }
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut b = hex(UDP6);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_traffic_class(0xB8);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xB8, 0x12345)
        );
        p.set_flow_label(0xFFFFFFFF);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xB8, 0xFFFFF)
        );
        p.set_hop_limit(1);
        p.set_next_header(ip_proto::TCP);
        p.set_payload_len(5);
        assert_eq!(
            (p.hop_limit(), p.next_header(), p.payload().len()),
            (1, 6, 5)
        );
    }

    fn repr_strategy() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0usize..2000,
            any::<u8>(),
            any::<u8>(),
            0u32..0x100000,
        )
            .prop_map(
                |(s, d, next_header, payload_len, hop_limit, traffic_class, flow_label)| Repr {
                    src_addr: Ipv6Addr::from(s),
                    dst_addr: Ipv6Addr::from(d),
                    next_header,
                    payload_len,
                    hop_limit,
                    traffic_class,
                    flow_label,
                },
            )
    }

    proptest! {
        #[test]
        fn repr_round_trip(r in repr_strategy()) {
            let mut b = vec![0u8; r.buffer_len() + r.payload_len];
            r.emit(&mut Packet::new_unchecked(&mut b[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..160)) {
            for p in [Packet::new_checked(&b[..]), Packet::new_quoted(&b[..])].into_iter().flatten() {
                let _ = (p.traffic_class(), p.flow_label(), p.src_addr(), p.dst_addr());
                let _ = (p.payload(), p.quoted_payload(), p.upper_layer());
            }
            let _ = Packet::new_unchecked(&b[..]).upper_layer();
        }

        #[test]
        fn random_chains_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            first in prop_oneof![Just(0u8), Just(43u8), Just(44u8), Just(51u8), Just(60u8)],
            // Bias the body toward extension-header numbers so long chains are explored.
            hdrs in proptest::collection::vec(prop_oneof![Just(0u8), Just(43u8), Just(44u8), Just(51u8), Just(60u8), any::<u8>()], 0..40)
        ) {
            let mut b = hex(&UDP6[..80]);
            b[6] = first;
            for (i, h) in hdrs.iter().enumerate() {
                b.extend_from_slice(&[*h, (i % 3) as u8]);
            }
            b.extend_from_slice(&tail);
            let plen = (b.len() - 40).min(65535) as u16;
            b[4..6].copy_from_slice(&plen.to_be_bytes());
            if let Ok(ul) = Packet::new_checked(&b[..]).unwrap().upper_layer() {
                prop_assert!(ul.offset <= b.len());
            }
        }
    }
}
