//! Frame builders: whole, valid frames from a few parameters, for tests, benches,
//! fuzz seeds and (later) the traffic generator.
//!
//! Built on the same `wire` emitters the engine uses, so a builder bug and an engine bug
//! cannot cancel out silently: the golden tests check the engine's output with tshark
//! and scapy, never with these builders. Allocates; never used on the packet path.

use std::net::IpAddr;

use crate::wire::{MacAddr, ethernet, gre, ip_proto, ipv4, ipv6, tcp, udp};

/// The transport part of a packet to build.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// A TCP segment with no options and a window of 64240.
    Tcp {
        /// TCP source port.
        src_port: u16,
        /// TCP destination port.
        dst_port: u16,
        /// Flag bits, built from [`tcp::flags`].
        flags: u8,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number; only meaningful when `flags` has ACK.
        ack: u32,
    },
    /// A UDP datagram.
    Udp {
        /// UDP source port.
        src_port: u16,
        /// UDP destination port.
        dst_port: u16,
    },
}

/// An IP packet (no link layer) with valid IP and transport checksums.
pub fn ip_packet(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    transport: Transport,
    payload: &[u8],
) -> Vec<u8> {
    let (proto, mut l4) = match transport {
        Transport::Tcp {
            src_port,
            dst_port,
            flags,
            seq,
            ack,
        } => {
            let repr = tcp::Repr {
                src_port,
                dst_port,
                seq_number: seq,
                ack_number: ack,
                flags,
                window_len: 64240,
                payload_len: payload.len(),
            };
            let mut b = vec![0u8; repr.buffer_len() + payload.len()];
            b[repr.buffer_len()..].copy_from_slice(payload);
            repr.emit(&mut tcp::Packet::new_unchecked(&mut b[..]), src, dst);
            (ip_proto::TCP, b)
        }
        Transport::Udp { src_port, dst_port } => {
            let repr = udp::Repr {
                src_port,
                dst_port,
                payload_len: payload.len(),
            };
            let mut b = vec![0u8; repr.buffer_len() + payload.len()];
            b[repr.buffer_len()..].copy_from_slice(payload);
            repr.emit(&mut udp::Packet::new_unchecked(&mut b[..]), src, dst);
            (ip_proto::UDP, b)
        }
    };
    ip_with_payload(src, dst, ttl, proto, &mut l4)
}

/// An IP header of the right family in front of `payload` (already complete).
pub fn ip_with_payload(
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    proto: u8,
    payload: &mut [u8],
) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let repr = ipv4::Repr {
                src_addr: s,
                dst_addr: d,
                protocol: proto,
                payload_len: payload.len(),
                ttl,
                dont_frag: true,
                dscp_ecn: 0,
                ident: 1,
            };
            let mut b = vec![0u8; ipv4::HEADER_LEN + payload.len()];
            repr.emit(&mut ipv4::Packet::new_unchecked(&mut b[..ipv4::HEADER_LEN]));
            b[ipv4::HEADER_LEN..].copy_from_slice(payload);
            b
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let repr = ipv6::Repr {
                src_addr: s,
                dst_addr: d,
                next_header: proto,
                payload_len: payload.len(),
                hop_limit: ttl,
                traffic_class: 0,
                flow_label: 0,
            };
            let mut b = vec![0u8; ipv6::HEADER_LEN + payload.len()];
            repr.emit(&mut ipv6::Packet::new_unchecked(&mut b[..ipv6::HEADER_LEN]));
            b[ipv6::HEADER_LEN..].copy_from_slice(payload);
            b
        }
        _ => panic!("craft::ip_with_payload: mixed address families"),
    }
}

/// An Ethernet frame around `payload`.
pub fn ethernet(src: MacAddr, dst: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    ethernet::Repr {
        src_addr: src,
        dst_addr: dst,
        ethertype,
    }
    .emit(&mut ethernet::Frame::new_unchecked(
        &mut b[..ethernet::HEADER_LEN],
    ));
    b[ethernet::HEADER_LEN..].copy_from_slice(payload);
    b
}

/// An Ethernet frame carrying an IP packet.
pub fn ip_frame(src: MacAddr, dst: MacAddr, ip: &[u8]) -> Vec<u8> {
    let ethertype = if ip.first().map(|b| b >> 4) == Some(6) {
        ethernet::ethertype::IPV6
    } else {
        ethernet::ethertype::IPV4
    };
    ethernet(src, dst, ethertype, ip)
}

/// The outer layers of an NVGRE frame.
#[derive(Clone, Copy, Debug)]
pub struct Outer {
    /// Outer source MAC (the sending host's NIC).
    pub src_mac: MacAddr,
    /// Outer destination MAC (the next hop on the provider network).
    pub dst_mac: MacAddr,
    /// Outer source provider address (PA); must be the same family as `dst`.
    pub src: IpAddr,
    /// Outer destination provider address (PA).
    pub dst: IpAddr,
    /// Virtual Subnet ID, 24 bits (higher bits are dropped): the tenant's virtual network.
    pub vsid: u32,
    /// NVGRE FlowID: entropy for ECMP, never used to match a flow.
    pub flow_id: u8,
}

/// An NVGRE frame: outer Ethernet + IP + GRE (key = VSID << 8 | FlowID) + `inner` frame.
pub fn nvgre(outer: &Outer, inner: &[u8]) -> Vec<u8> {
    let g = gre::Repr {
        protocol: ethernet::ethertype::TEB,
        key: Some(gre::nvgre_key(outer.vsid, outer.flow_id)),
        checksum: false,
        sequence: None,
    };
    let mut gre_bytes = vec![0u8; gre::NVGRE_HEADER_LEN + inner.len()];
    g.emit(&mut gre::Packet::new_unchecked(
        &mut gre_bytes[..gre::NVGRE_HEADER_LEN],
    ));
    gre_bytes[gre::NVGRE_HEADER_LEN..].copy_from_slice(inner);
    let ip = ip_with_payload(outer.src, outer.dst, 64, ip_proto::GRE, &mut gre_bytes);
    ip_frame(outer.src_mac, outer.dst_mac, &ip)
}

/// The answer of the VM behind an NVGRE frame the LB sent it: the same VSID from the
/// same host, Ethernet, IP addresses and TCP ports swapped inside and out, with
/// `flags`, `seq` and `ack`. What a DIP sends back to a flow the LB forwarded, built
/// from the LB's own output so that a test needs no knowledge of which DIP it chose.
/// `None` when `sent` is not NVGRE carrying TCP.
pub fn tunnel_reply(sent: &[u8], flags: u8, seq: u32, ack: u32) -> Option<Vec<u8>> {
    let eth = ethernet::Frame::new_checked(sent).ok()?;
    let (osrc, odst, proto, gre_bytes) = ip_parts(eth.payload(), eth.ethertype())?;
    if proto != ip_proto::GRE {
        return None;
    }
    let g = gre::Packet::new_checked(gre_bytes).ok()?;
    let inner_bytes = gre_bytes.get(g.header_len()..)?;
    let inner = ethernet::Frame::new_checked(inner_bytes).ok()?;
    let (src, dst, proto, segment) = ip_parts(inner.payload(), inner.ethertype())?;
    if proto != ip_proto::TCP {
        return None;
    }
    let t = tcp::Packet::new_checked(segment).ok()?;
    let transport = Transport::Tcp {
        src_port: t.dst_port(),
        dst_port: t.src_port(),
        flags,
        seq,
        ack,
    };
    let ip = ip_packet(dst, src, 64, transport, b"");
    let outer = Outer {
        src_mac: eth.dst_addr(),
        dst_mac: eth.src_addr(),
        src: odst,
        dst: osrc,
        vsid: g.vsid()?,
        flow_id: g.flow_id()?,
    };
    Some(nvgre(
        &outer,
        &ip_frame(inner.dst_addr(), inner.src_addr(), &ip),
    ))
}

/// Source, destination, upper-layer protocol and upper-layer bytes of an IP packet.
fn ip_parts(bytes: &[u8], ethertype: u16) -> Option<(IpAddr, IpAddr, u8, &[u8])> {
    if ethertype == ethernet::ethertype::IPV6 {
        let p = ipv6::Packet::new_checked(bytes).ok()?;
        let ul = p.upper_layer().ok()?;
        let end = 40 + usize::from(p.payload_len());
        let (src, dst) = (IpAddr::V6(p.src_addr()), IpAddr::V6(p.dst_addr()));
        Some((src, dst, ul.protocol, bytes.get(ul.offset..end)?))
    } else {
        let p = ipv4::Packet::new_checked(bytes).ok()?;
        let (h, end) = (p.header_len(), usize::from(p.total_len()));
        let (src, dst) = (IpAddr::V4(p.src_addr()), IpAddr::V4(p.dst_addr()));
        Some((src, dst, p.protocol(), bytes.get(h..end)?))
    }
}
