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
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u8,
        seq: u32,
        ack: u32,
    },
    Udp {
        src_port: u16,
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
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub vsid: u32,
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
