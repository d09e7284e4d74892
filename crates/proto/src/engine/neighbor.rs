//! ARP and IPv6 Neighbor Discovery for the addresses the LB owns.
//!
//! Outside: the LB's external addresses and public VIPs on the Internet side, its PAs
//! on the provider side. Inside a VSID (encapsulated): its source-NAT CAs and the CA
//! VIPs of that VSID, which an NVGRE peer that does not proxy ARP (Open vSwitch)
//! will ask for. The data plane answers these itself: the kernel of the LB's netns
//! holds none of these addresses.

use std::net::{IpAddr, Ipv6Addr};

use crate::policy::Vsid;
use crate::wire::{MacAddr, arp, ethernet, icmpv6, ip_proto, ipv6};

use super::drop::DropReason;
use super::emit::Path;
use super::packet::IpPacket;
use super::{Arrival, Ctx, Egress, Verdict, tri};

const ND_HOP_LIMIT: u8 = 255;

/// The MAC that answers for `addr` and the port it answers on, if the LB owns it.
fn owner(ctx: &Ctx, arrival: &Arrival, addr: IpAddr) -> Option<(MacAddr, Egress)> {
    let policy = ctx.policy;
    let b = policy.balancer();
    match arrival {
        Arrival::Plain { .. } => {
            if b.provider.owns(addr) {
                Some((b.provider.mac, Egress::Provider))
            } else if b.external.owns(addr) || policy.is_vip_address(Vsid::PUBLIC, addr) {
                Some((b.external.mac, Egress::External))
            } else {
                None
            }
        }
        Arrival::Tunnel { vsid, .. } => {
            let ours = policy.is_vip_address(*vsid, addr) || policy.is_snat_address(*vsid, addr);
            ours.then(|| policy.subnet(*vsid).map(|s| (s.lb_mac, Egress::Provider)))
                .flatten()
        }
    }
}

/// An ARP request on the wire (not encapsulated).
pub(super) fn arp(ctx: &mut Ctx, eth: &ethernet::Frame<&[u8]>, out: &mut [u8]) -> Verdict {
    let arrival = Arrival::Plain {
        port: Egress::External,
        peer_mac: eth.src_addr(),
    };
    let req = tri!(arp::Packet::new_checked(eth.payload()).map_err(|_| DropReason::MalformedArp));
    if req.operation() != arp::op::REQUEST {
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    let Some((mac, port)) = owner(ctx, &arrival, IpAddr::V4(req.target_ip())) else {
        return Verdict::Drop(DropReason::ArpNotForUs);
    };
    let path = Path::Plain {
        port,
        src_mac: mac,
        dst_mac: req.sender_hw(),
    };
    answer_arp(ctx, path, mac, &req, out)
}

/// An ARP request inside a VSID, from a host that does not answer it locally.
pub(super) fn inner_arp(
    ctx: &mut Ctx,
    arrival: &Arrival,
    inner: &ethernet::Frame<&[u8]>,
    out: &mut [u8],
) -> Verdict {
    let req = tri!(arp::Packet::new_checked(inner.payload()).map_err(|_| DropReason::MalformedArp));
    if req.operation() != arp::op::REQUEST {
        return Verdict::Drop(DropReason::ArpNotForUs);
    }
    let Some((mac, _)) = owner(ctx, arrival, IpAddr::V4(req.target_ip())) else {
        return Verdict::Drop(DropReason::ArpNotForUs);
    };
    let path = tri!(arrival.path_back(ctx.policy, 0));
    answer_arp(ctx, path, mac, &req, out)
}

fn answer_arp(
    ctx: &mut Ctx,
    path: Path,
    mac: MacAddr,
    req: &arp::Packet<&[u8]>,
    out: &mut [u8],
) -> Verdict {
    let repr = arp::Repr {
        operation: arp::op::REPLY,
        sender_hw: mac,
        sender_ip: req.target_ip(),
        target_hw: req.sender_hw(),
        target_ip: req.sender_ip(),
    };
    let len = repr.buffer_len();
    let ident = ctx.next_ident();
    let off = tri!(path.write_headers(out, ethernet::ethertype::ARP, len, ident));
    repr.emit(&mut arp::Packet::new_unchecked(&mut out[off..off + len]));
    Verdict::Reply {
        egress: path.egress(),
        len: off + len,
    }
}

/// Whether `ip` is a Neighbor Solicitation or Advertisement.
pub(super) fn is_nd(ip: &IpPacket) -> bool {
    matches!(
        ip.icmp_type(),
        Some(icmpv6::msg_type::NEIGHBOR_SOLICIT) | Some(icmpv6::msg_type::NEIGHBOR_ADVERT)
    )
}

/// Answers a Neighbor Solicitation for an address the LB owns.
pub(super) fn nd(ctx: &mut Ctx, arrival: &Arrival, ip: &IpPacket, out: &mut [u8]) -> Verdict {
    let (IpAddr::V6(src), true) = (ip.src, ip.proto == ip_proto::ICMPV6) else {
        return Verdict::Drop(DropReason::MalformedNd);
    };
    if ip.icmp_type() != Some(icmpv6::msg_type::NEIGHBOR_SOLICIT) {
        // Advertisements are for the kernel's cache; the LB resolves from policy.
        return Verdict::Drop(DropReason::NdNotForUs);
    }
    // RFC 4861 7.1.1: a solicitation that crossed a router is forged.
    if ip.ttl != ND_HOP_LIMIT {
        return Verdict::Drop(DropReason::MalformedNd);
    }
    let ns = tri!(icmpv6::Packet::new_checked(ip.l4_bytes()).map_err(|_| DropReason::MalformedNd));
    let target = tri!(ns.ndp_target().map_err(|_| DropReason::MalformedNd));
    let Some((mac, port)) = owner(ctx, arrival, IpAddr::V6(target)) else {
        return Verdict::Drop(DropReason::NdNotForUs);
    };
    let requester_mac = match arrival {
        Arrival::Plain { peer_mac, .. } => ns.ndp_source_link_addr().unwrap_or(*peer_mac),
        Arrival::Tunnel { inner_src_mac, .. } => *inner_src_mac,
    };
    let path = match arrival {
        Arrival::Plain { .. } => Path::Plain {
            port,
            src_mac: mac,
            dst_mac: requester_mac,
        },
        Arrival::Tunnel { .. } => tri!(arrival.path_back(ctx.policy, 0)),
    };
    // A solicitation from the unspecified address (DAD) is answered to all nodes.
    let (dst, solicited) = if src.is_unspecified() {
        (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), false)
    } else {
        (src, true)
    };
    const NA_LEN: usize = 32;
    let len = ipv6::HEADER_LEN + NA_LEN;
    let ident = ctx.next_ident();
    let off = tri!(path.write_headers(out, ethernet::ethertype::IPV6, len, ident));
    let pkt = &mut out[off..off + len];
    ipv6::Repr {
        src_addr: target,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: NA_LEN,
        hop_limit: ND_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(
        &mut pkt[..ipv6::HEADER_LEN],
    ));
    tri!(
        icmpv6::emit_neighbor_advert(
            &mut pkt[ipv6::HEADER_LEN..],
            target,
            mac,
            solicited,
            &target,
            &dst
        )
        .map_err(|_| DropReason::NoPath)
    );
    Verdict::Reply {
        egress: path.egress(),
        len: off + len,
    }
}
