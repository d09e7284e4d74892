//! Where things are in a frame the generator or the reflector receives: the outer
//! NVGRE layers when there are any, the (inner) Ethernet and IP headers, the TCP/UDP
//! header and the probe. Offsets are absolute in the frame, so that the reflector can
//! rewrite in place.
//!
//! Only reads; never panics on any byte string (every view is checked first).

use std::net::IpAddr;

use crate::engine::packet::IpPacket;
use crate::policy::Vsid;
use crate::wire::{MacAddr, ethernet, gre, ip_proto};

/// The NVGRE part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nvgre {
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Offset of the outer IP header.
    pub ip: usize,
    /// The raw VSID of the key (24 bits; may be reserved).
    pub vsid: u32,
    /// Whether the GRE header is exactly NVGRE's (K bit only, protocol 0x6558).
    pub well_formed: bool,
}

/// A TCP or UDP packet, possibly inside NVGRE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub tunnel: Option<Nvgre>,
    /// Offset of the (inner) Ethernet header.
    pub eth: usize,
    pub dst_mac: MacAddr,
    pub src_mac: MacAddr,
    /// Offset of the (inner) IP header.
    pub ip: usize,
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    pub src_port: u16,
    pub dst_port: u16,
    /// Offset of the L4 payload (where a probe would be).
    pub payload: usize,
    /// End of the IP packet (link-layer padding excluded).
    pub end: usize,
}

impl Layers {
    /// The VSID of a tunnelled frame, when it is a usable one.
    pub fn vsid(&self) -> Option<Vsid> {
        let t = self.tunnel?;
        Vsid::from_key(t.vsid << 8)
    }
}

fn ip_of(frame: &[u8], at: usize) -> Option<(MacAddr, MacAddr, IpPacket<'_>)> {
    let eth = ethernet::Frame::new_checked(frame.get(at..)?).ok()?;
    let v6 = match eth.ethertype() {
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return None,
    };
    let ip = IpPacket::parse(frame.get(at + ethernet::HEADER_LEN..)?, v6).ok()?;
    Some((eth.dst_addr(), eth.src_addr(), ip))
}

/// Finds the layers of a TCP/UDP frame, decapsulating one level of GRE; `None` for
/// anything else (ARP, ICMP, fragments, malformed).
pub fn parse(frame: &[u8]) -> Option<Layers> {
    let (mut dst_mac, mut src_mac, mut ip) = ip_of(frame, 0)?;
    let mut eth = 0;
    let mut tunnel = None;
    if ip.proto == ip_proto::GRE && !ip.fragment {
        let g = gre::Packet::new_checked(ip.l4_bytes()).ok()?;
        let well_formed =
            g.flags_word() == gre::NVGRE_FLAGS && g.protocol_type() == ethernet::ethertype::TEB;
        let key = g.key()?;
        let inner_at = ethernet::HEADER_LEN + ip.l4 + g.header_len();
        tunnel = Some(Nvgre {
            dst_mac,
            src_mac,
            src: ip.src,
            dst: ip.dst,
            ip: ethernet::HEADER_LEN,
            vsid: key >> 8,
            well_formed,
        });
        let end = ethernet::HEADER_LEN + ip.bytes.len();
        (dst_mac, src_mac, ip) = ip_of(frame.get(..end)?, inner_at)?;
        eth = inner_at;
    }
    if ip.fragment {
        return None;
    }
    let ports = ip.ports().ok()?;
    let l4_len = match ip.proto {
        ip_proto::TCP => usize::from(ip.l4_bytes().get(12)? >> 4) * 4,
        _ => 8,
    };
    let ip_at = eth + ethernet::HEADER_LEN;
    let l4 = ip_at + ip.l4;
    let payload = l4 + l4_len;
    let end = ip_at + ip.bytes.len();
    if payload > end {
        return None;
    }
    Some(Layers {
        tunnel,
        eth,
        dst_mac,
        src_mac,
        ip: ip_at,
        v6: ip.v6,
        src: ip.src,
        dst: ip.dst,
        proto: ip.proto,
        l4,
        src_port: ports.src,
        dst_port: ports.dst,
        payload,
        end,
    })
}
