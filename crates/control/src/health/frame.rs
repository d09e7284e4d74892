//! Probe segments as NVGRE frames, and replies read back out of NVGRE.
//!
//! A probe leaves as data does: outer Ethernet + IP from the LB's PA to the DIP's
//! host PA, GRE keyed with the DIP's VSID, inner Ethernet from the subnet's LB MAC to
//! the DIP's MAC, inner IP + TCP from the LB's SNAT CA. The outer headers are written
//! by the engine's own [`Path::write_headers`], so probes cannot differ from data on
//! the wire. Reading never panics and accepts only well-formed TCP with a good
//! checksum.

use std::net::IpAddr;

use crate::engine::packet::IpPacket;
use crate::engine::{Path, Tunnel};
use crate::wire::{ethernet, gre, ip_proto, ipv4, ipv6, tcp};

use super::conn::{Incoming, Segment};

/// TTL / hop limit of a probe's inner packet.
const TTL: u8 = 64;

/// Where one probe goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub tunnel: Tunnel,
    /// The LB's SNAT CA in the DIP's VSID (same family as `dip`).
    pub src: IpAddr,
    pub dip: IpAddr,
    pub port: u16,
}

/// The fields of a reply that identify its probe, and its TCP part.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// The outer source: the host that sent it.
    pub host_pa: IpAddr,
    pub vsid: u32,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: Incoming<'a>,
}

/// The frame for `seg` from local port `local_port` along `route`; `None` only if the
/// addresses' families disagree (validation prevents it).
pub fn build(route: &Route, local_port: u16, seg: &Segment, ident: u16) -> Option<Vec<u8>> {
    let repr = tcp::Repr {
        src_port: local_port,
        dst_port: route.port,
        seq_number: seg.seq,
        ack_number: seg.ack,
        flags: seg.flags,
        window_len: seg.window,
        payload_len: seg.payload.len(),
    };
    let l4_len = repr.buffer_len() + seg.payload.len();
    let v6 = route.dip.is_ipv6();
    let ip_len = l4_len
        + if v6 {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        };
    let path = Path::Tunnel(route.tunnel);
    let mut out = vec![0u8; path.header_len() + ip_len];
    let inner_type = if v6 {
        ethernet::ethertype::IPV6
    } else {
        ethernet::ethertype::IPV4
    };
    let at = path
        .write_headers(&mut out, inner_type, ip_len, ident)
        .ok()?;
    let ip = out.get_mut(at..)?;
    let l4_at = match (route.src, route.dip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            ipv4::Repr {
                src_addr: s,
                dst_addr: d,
                protocol: ip_proto::TCP,
                payload_len: l4_len,
                ttl: TTL,
                dont_frag: true,
                dscp_ecn: 0,
                ident,
            }
            .emit(&mut ipv4::Packet::new_unchecked(
                ip.get_mut(..ipv4::HEADER_LEN)?,
            ));
            ipv4::HEADER_LEN
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            ipv6::Repr {
                src_addr: s,
                dst_addr: d,
                next_header: ip_proto::TCP,
                payload_len: l4_len,
                hop_limit: TTL,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut ipv6::Packet::new_unchecked(
                ip.get_mut(..ipv6::HEADER_LEN)?,
            ));
            ipv6::HEADER_LEN
        }
        _ => return None,
    };
    let l4 = ip.get_mut(l4_at..)?;
    l4.get_mut(tcp::HEADER_LEN..)?.copy_from_slice(&seg.payload);
    repr.emit(&mut tcp::Packet::new_unchecked(l4), route.src, route.dip);
    Some(out)
}

/// Reads a frame the engine passed on as a probe reply.
pub fn parse(frame: &[u8]) -> Option<Reply<'_>> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let outer_v6 = match eth.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return None,
    };
    let outer = IpPacket::parse(frame.get(ethernet::HEADER_LEN..)?, outer_v6).ok()?;
    if outer.proto != ip_proto::GRE || outer.fragment {
        return None;
    }
    let gre_bytes = outer.l4_bytes();
    let g = gre::Packet::new_checked(gre_bytes).ok()?;
    let vsid = g.vsid()?;
    let inner_bytes = gre_bytes.get(g.header_len()..)?;
    let inner = ethernet::Frame::new_checked(inner_bytes).ok()?;
    let v6 = match inner.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return None,
    };
    let ip = IpPacket::parse(inner_bytes.get(ethernet::HEADER_LEN..)?, v6).ok()?;
    if ip.proto != ip_proto::TCP || ip.fragment {
        return None;
    }
    let t = tcp::Packet::new_checked(ip.l4_bytes()).ok()?;
    if !t.verify_checksum(ip.src, ip.dst) {
        return None;
    }
    Some(Reply {
        host_pa: outer.src,
        vsid,
        src: ip.src,
        dst: ip.dst,
        src_port: t.src_port(),
        dst_port: t.dst_port(),
        tcp: Incoming {
            seq: t.seq_number(),
            ack: t.ack_number(),
            flags: t.flags(),
            payload: tcp_payload(ip.l4_bytes()),
        },
    })
}

/// The payload of a checked TCP segment, borrowed for the reply's lifetime.
fn tcp_payload(l4: &[u8]) -> &[u8] {
    let header = l4
        .get(12)
        .map_or(tcp::HEADER_LEN, |b| usize::from(b >> 4) * 4);
    l4.get(header..).unwrap_or(&[])
}
