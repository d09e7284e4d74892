//! Where an IP packet leaves the LB, and the headers written in front of it.
//!
//! A [`Path`] is the whole decision about the link and tunnel layers: plain Ethernet
//! out of the external port, or NVGRE (outer Ethernet + IP + GRE + inner Ethernet) to a
//! host's PA. The engine decides the path first, checks the MTU against it, writes
//! the headers and then copies the IP packet after them, so each byte is written once.

use std::net::IpAddr;

use crate::policy::{Host, Snapshot};
use crate::wire::{MacAddr, ethernet, gre, ip_proto, ipv4, ipv6};

use super::Egress;
use super::drop::DropReason;

/// Bytes that NVGRE adds besides the outer IP header: GRE with key (8) + inner Ethernet (14).
pub(super) const NVGRE_INNER_OVERHEAD: usize = gre::NVGRE_HEADER_LEN + ethernet::HEADER_LEN;
/// TTL / hop limit of the outer header.
const OUTER_TTL: u8 = 64;

/// An NVGRE tunnel to one host, for one VSID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// The 24-bit VSID written into the GRE key.
    pub vsid: u32,
    /// NVGRE FlowID written into the GRE key: ECMP entropy from the flow hash.
    pub flow_id: u8,
    /// The LB's own PA: outer IP source.
    pub outer_src: IpAddr,
    /// The host's PA: outer IP destination (same family as `outer_src`).
    pub outer_dst: IpAddr,
    /// The provider port's MAC: outer Ethernet source.
    pub outer_src_mac: MacAddr,
    /// Next hop on the PA network: the host, or the provider gateway (see [`next_hop_mac`]).
    pub outer_dst_mac: MacAddr,
    /// The LB's MAC inside the VSID (the subnet's `lb_mac`): inner Ethernet source.
    pub inner_src_mac: MacAddr,
    /// The destination VM's MAC, from its lookup record: inner Ethernet destination.
    pub inner_dst_mac: MacAddr,
}

/// The EtherType of an IP packet of the given family.
pub(super) fn ip_ethertype(v6: bool) -> u16 {
    if v6 {
        ethernet::ethertype::IPV6
    } else {
        ethernet::ethertype::IPV4
    }
}

/// How an IP packet leaves the LB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Plain Ethernet out of `port` (the external side, or the provider side for
    /// the LB's own PA).
    Plain {
        /// The port the frame leaves on.
        port: Egress,
        /// Ethernet source: the MAC of that port.
        src_mac: MacAddr,
        /// Ethernet destination: the next hop (gateway or neighbour).
        dst_mac: MacAddr,
    },
    /// NVGRE out of the provider port.
    Tunnel(Tunnel),
}

/// The outer (LB PA, host PA) pair: IPv4 when both sides have it, else IPv6.
pub fn outer_addresses(policy: &Snapshot, host: &Host) -> Option<(IpAddr, IpAddr)> {
    let provider = &policy.balancer().provider;
    if let (Some(l), Some(h)) = (provider.address_v4(), host.pa_v4) {
        return Some((IpAddr::V4(l), IpAddr::V4(h)));
    }
    if let (Some(l), Some(h)) = (provider.address_v6(), host.pa_v6) {
        return Some((IpAddr::V6(l), IpAddr::V6(h)));
    }
    None
}

/// The MAC NVGRE to `host` is sent to: the provider port's `gateway_mac` when the PA
/// network is routed (scale-out: a router ECMPs the anycast PA), else the host's own.
pub fn next_hop_mac(policy: &Snapshot, host: &Host) -> MacAddr {
    policy.balancer().provider.gateway_mac.unwrap_or(host.mac)
}

/// A tunnel from the LB to `host` in `vsid`, with the given inner MACs.
pub(super) fn tunnel_to(
    policy: &Snapshot,
    host: &Host,
    vsid: u32,
    flow_id: u8,
    inner_src_mac: MacAddr,
    inner_dst_mac: MacAddr,
) -> Result<Path, DropReason> {
    let (outer_src, outer_dst) = outer_addresses(policy, host).ok_or(DropReason::NoPath)?;
    Ok(Path::Tunnel(Tunnel {
        vsid,
        flow_id,
        outer_src,
        outer_dst,
        outer_src_mac: policy.balancer().provider.mac,
        outer_dst_mac: next_hop_mac(policy, host),
        inner_src_mac,
        inner_dst_mac,
    }))
}

impl Path {
    /// The port a frame on this path leaves on: always the provider port for a tunnel.
    pub fn egress(&self) -> Egress {
        match self {
            Path::Plain { port, .. } => *port,
            Path::Tunnel(_) => Egress::Provider,
        }
    }

    fn outer_ip_len(t: &Tunnel) -> usize {
        if t.outer_dst.is_ipv6() {
            ipv6::HEADER_LEN
        } else {
            ipv4::HEADER_LEN
        }
    }

    /// Bytes written in front of the IP packet.
    pub fn header_len(&self) -> usize {
        match self {
            Path::Plain { .. } => ethernet::HEADER_LEN,
            Path::Tunnel(t) => ethernet::HEADER_LEN + Self::outer_ip_len(t) + NVGRE_INNER_OVERHEAD,
        }
    }

    /// The largest IP packet this path carries: the external MTU, or the PA MTU less
    /// the encapsulation (42 bytes over IPv4, 62 over IPv6).
    pub fn max_ip_len(&self, policy: &Snapshot) -> usize {
        let b = policy.balancer();
        match self {
            Path::Plain {
                port: Egress::External,
                ..
            } => usize::from(b.external.mtu),
            Path::Plain {
                port: Egress::Provider,
                ..
            } => usize::from(b.provider.mtu),
            Path::Tunnel(t) => usize::from(b.provider.mtu)
                .saturating_sub(Self::outer_ip_len(t) + NVGRE_INNER_OVERHEAD),
        }
    }

    /// Writes the headers for a payload of `len` bytes of EtherType `inner_type` into
    /// `out`; returns the offset at which the payload must be placed.
    pub fn write_headers(
        &self,
        out: &mut [u8],
        inner_type: u16,
        len: usize,
        ident: u16,
    ) -> Result<usize, DropReason> {
        let total = self.header_len() + len;
        if out.len() < total {
            return Err(DropReason::NoPath);
        }
        let ip_len = len;
        match self {
            Path::Plain {
                src_mac, dst_mac, ..
            } => {
                let repr = ethernet::Repr {
                    src_addr: *src_mac,
                    dst_addr: *dst_mac,
                    ethertype: inner_type,
                };
                repr.emit(&mut ethernet::Frame::new_unchecked(
                    &mut out[..ethernet::HEADER_LEN],
                ));
                Ok(ethernet::HEADER_LEN)
            }
            Path::Tunnel(t) => {
                let mut at = 0;
                let outer_type = if t.outer_dst.is_ipv6() {
                    ethernet::ethertype::IPV6
                } else {
                    ethernet::ethertype::IPV4
                };
                ethernet::Repr {
                    src_addr: t.outer_src_mac,
                    dst_addr: t.outer_dst_mac,
                    ethertype: outer_type,
                }
                .emit(&mut ethernet::Frame::new_unchecked(
                    &mut out[at..at + ethernet::HEADER_LEN],
                ));
                at += ethernet::HEADER_LEN;
                let gre_len = NVGRE_INNER_OVERHEAD + ip_len;
                match (t.outer_src, t.outer_dst) {
                    (IpAddr::V4(src), IpAddr::V4(dst)) => {
                        let repr = ipv4::Repr {
                            src_addr: src,
                            dst_addr: dst,
                            protocol: ip_proto::GRE,
                            payload_len: gre_len,
                            ttl: OUTER_TTL,
                            dont_frag: true,
                            dscp_ecn: 0,
                            ident,
                        };
                        repr.emit(&mut ipv4::Packet::new_unchecked(
                            &mut out[at..at + ipv4::HEADER_LEN],
                        ));
                        at += ipv4::HEADER_LEN;
                    }
                    (IpAddr::V6(src), IpAddr::V6(dst)) => {
                        if gre_len > usize::from(u16::MAX) {
                            return Err(DropReason::NoPath);
                        }
                        let repr = ipv6::Repr {
                            src_addr: src,
                            dst_addr: dst,
                            next_header: ip_proto::GRE,
                            payload_len: gre_len,
                            hop_limit: OUTER_TTL,
                            traffic_class: 0,
                            // Entropy for ECMP in the PA network, as the FlowID gives GRE-aware hashes.
                            flow_label: u32::from(t.flow_id) << 12 | (t.vsid & 0xfff),
                        };
                        repr.emit(&mut ipv6::Packet::new_unchecked(
                            &mut out[at..at + ipv6::HEADER_LEN],
                        ));
                        at += ipv6::HEADER_LEN;
                    }
                    _ => return Err(DropReason::NoPath),
                }
                let g = gre::Repr {
                    protocol: ethernet::ethertype::TEB,
                    key: Some(gre::nvgre_key(t.vsid, t.flow_id)),
                    checksum: false,
                    sequence: None,
                };
                g.emit(&mut gre::Packet::new_unchecked(
                    &mut out[at..at + gre::NVGRE_HEADER_LEN],
                ));
                at += gre::NVGRE_HEADER_LEN;
                ethernet::Repr {
                    src_addr: t.inner_src_mac,
                    dst_addr: t.inner_dst_mac,
                    ethertype: inner_type,
                }
                .emit(&mut ethernet::Frame::new_unchecked(
                    &mut out[at..at + ethernet::HEADER_LEN],
                ));
                at += ethernet::HEADER_LEN;
                Ok(at)
            }
        }
    }
}
