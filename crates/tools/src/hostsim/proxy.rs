//! ARP and Neighbor Discovery answered by the host itself, as Hyper-V's virtual switch
//! does: a VM never learns a MAC from another VM or from the LB over the wire, only
//! from the lookup records. A VM's gateway (and every other address of its VSID that
//! no VM holds) resolves to the LB's MAC in that VSID, so off-subnet traffic and VIPs
//! go to the LB. On the PA side the host answers for its own PAs.
//!
//! Must never answer for an address outside the VSID's prefixes, never answer a VM
//! with its own MAC (that would fail its duplicate address detection), and never
//! forward a request anywhere.

use std::net::{IpAddr, Ipv6Addr};

use crate::engine::packet::IpPacket;
use crate::wire::{MacAddr, arp, ethernet, icmpv6, ip_proto, ipv6};

use super::drop::DropReason;
use super::view::{HostView, Vm};
use super::{Answered, Verdict};

/// RFC 4861 7.1.1: ND messages carry hop limit 255, so a forged one from afar shows.
const ND_HOP_LIMIT: u8 = 255;
/// An NA with a target link-layer address option, behind its IPv6 header.
const NA_FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmpv6::NDP_LEN;
const ARP_FRAME_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;

/// An ARP request from VM `vm`, for any address of its VSID.
pub fn vm_arp(view: &HostView, vm: &Vm, eth: &ethernet::Frame<&[u8]>, out: &mut [u8]) -> Verdict {
    let req = match arp_request(eth.payload()) {
        Ok(r) => r,
        Err(r) => return Verdict::Drop(r),
    };
    match view.resolve(vm.vsid, IpAddr::V4(req.target_ip())) {
        Some(mac) if mac != vm.mac => answer_arp(&req, mac, eth.src_addr(), out),
        _ => Verdict::Drop(DropReason::ArpNotAnswered),
    }
}

/// An ARP request on the PA network, answered for this host's IPv4 PA only.
pub fn pa_arp(view: &HostView, eth: &ethernet::Frame<&[u8]>, out: &mut [u8]) -> Verdict {
    let req = match arp_request(eth.payload()) {
        Ok(r) => r,
        Err(r) => return Verdict::Drop(r),
    };
    if view.owns_pa(IpAddr::V4(req.target_ip())) {
        answer_arp(&req, view.host().mac, eth.src_addr(), out)
    } else {
        Verdict::Drop(DropReason::ArpNotAnswered)
    }
}

/// A Neighbor Solicitation from VM `vm`, for any address of its VSID.
pub fn vm_nd(
    view: &HostView,
    vm: &Vm,
    eth: &ethernet::Frame<&[u8]>,
    ip: &IpPacket,
    out: &mut [u8],
) -> Verdict {
    let (src, target) = match solicitation(ip) {
        Ok(s) => s,
        Err(r) => return Verdict::Drop(r),
    };
    match view.resolve(vm.vsid, IpAddr::V6(target)) {
        Some(mac) if mac != vm.mac => answer_nd(src, target, mac, eth.src_addr(), out),
        _ => Verdict::Drop(DropReason::NdNotAnswered),
    }
}

/// A Neighbor Solicitation on the PA network, answered for this host's IPv6 PA only.
pub fn pa_nd(
    view: &HostView,
    eth: &ethernet::Frame<&[u8]>,
    ip: &IpPacket,
    out: &mut [u8],
) -> Verdict {
    let (src, target) = match solicitation(ip) {
        Ok(s) => s,
        Err(r) => return Verdict::Drop(r),
    };
    if view.owns_pa(IpAddr::V6(target)) {
        let requester = icmpv6::Packet::new_checked(ip.l4_bytes())
            .ok()
            .and_then(|p| p.ndp_source_link_addr())
            .unwrap_or(eth.src_addr());
        answer_nd(src, target, view.host().mac, requester, out)
    } else {
        Verdict::Drop(DropReason::NdNotAnswered)
    }
}

/// Whether `ip` is an ICMPv6 Neighbor Solicitation (to be answered or dropped here,
/// never forwarded).
pub fn is_solicitation(ip: &IpPacket) -> bool {
    ip.v6
        && ip.proto == ip_proto::ICMPV6
        && ip.icmp_type() == Some(icmpv6::msg_type::NEIGHBOR_SOLICIT)
}

fn arp_request(payload: &[u8]) -> Result<arp::Packet<&[u8]>, DropReason> {
    let req = arp::Packet::new_checked(payload).map_err(|_| DropReason::MalformedArp)?;
    if req.operation() != arp::op::REQUEST {
        return Err(DropReason::MalformedArp);
    }
    Ok(req)
}

fn answer_arp(req: &arp::Packet<&[u8]>, mac: MacAddr, to: MacAddr, out: &mut [u8]) -> Verdict {
    let Some(frame) = out.get_mut(..ARP_FRAME_LEN) else {
        return Verdict::Drop(DropReason::TooBig);
    };
    let (head, body) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr {
        src_addr: mac,
        dst_addr: to,
        ethertype: ethernet::ethertype::ARP,
    }
    .emit(&mut ethernet::Frame::new_unchecked(head));
    arp::Repr {
        operation: arp::op::REPLY,
        sender_hw: mac,
        sender_ip: req.target_ip(),
        target_hw: req.sender_hw(),
        target_ip: req.sender_ip(),
    }
    .emit(&mut arp::Packet::new_unchecked(body));
    Verdict::Answer {
        len: ARP_FRAME_LEN,
        kind: Answered::Arp,
    }
}

/// The solicitation's source and target, if it is a valid NS (RFC 4861 7.1.1).
fn solicitation(ip: &IpPacket) -> Result<(Ipv6Addr, Ipv6Addr), DropReason> {
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
        return Err(DropReason::MalformedNd);
    };
    if ip.ttl != ND_HOP_LIMIT || ip.fragment {
        return Err(DropReason::MalformedNd);
    }
    let ns = icmpv6::Packet::new_checked(ip.l4_bytes()).map_err(|_| DropReason::MalformedNd)?;
    if ns.msg_code() != 0 || !ns.verify_checksum(&src, &dst) {
        return Err(DropReason::MalformedNd);
    }
    let target = ns.ndp_target().map_err(|_| DropReason::MalformedNd)?;
    if target.is_multicast() {
        return Err(DropReason::MalformedNd);
    }
    Ok((src, target))
}

fn answer_nd(
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
    to: MacAddr,
    out: &mut [u8],
) -> Verdict {
    let Some(frame) = out.get_mut(..NA_FRAME_LEN) else {
        return Verdict::Drop(DropReason::TooBig);
    };
    // A solicitation from the unspecified address (DAD) is answered to all nodes.
    let (dst, solicited) = if src.is_unspecified() {
        (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), false)
    } else {
        (src, true)
    };
    let (head, rest) = frame.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr {
        src_addr: mac,
        dst_addr: if solicited {
            to
        } else {
            MacAddr::ipv6_multicast(dst)
        },
        ethertype: ethernet::ethertype::IPV6,
    }
    .emit(&mut ethernet::Frame::new_unchecked(head));
    let (ip, body) = rest.split_at_mut(ipv6::HEADER_LEN);
    ipv6::Repr {
        src_addr: target,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: icmpv6::NDP_LEN,
        hop_limit: ND_HOP_LIMIT,
        traffic_class: 0,
        flow_label: 0,
    }
    .emit(&mut ipv6::Packet::new_unchecked(ip));
    match icmpv6::emit_neighbor_advert(body, target, mac, solicited, &target, &dst) {
        Ok(_) => Verdict::Answer {
            len: NA_FRAME_LEN,
            kind: Answered::Nd,
        },
        Err(_) => Verdict::Drop(DropReason::TooBig),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft;
    use crate::hostsim::view::tests::host1;

    const VM: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 1]);
    const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0xb1, 0, 0xfe]);

    fn arp_frame(op: u16, sender_ip: &str, target_ip: &str, dst: MacAddr) -> Vec<u8> {
        let mut body = vec![0u8; arp::PACKET_LEN];
        arp::Repr {
            operation: op,
            sender_hw: VM,
            sender_ip: sender_ip.parse().unwrap(),
            target_hw: MacAddr::ZERO,
            target_ip: target_ip.parse().unwrap(),
        }
        .emit(&mut arp::Packet::new_unchecked(&mut body[..]));
        craft::ethernet(VM, dst, ethernet::ethertype::ARP, &body)
    }

    pub(crate) fn ns_frame(src: &str, target: &str, hop_limit: u8) -> Vec<u8> {
        let (src, target): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), target.parse().unwrap());
        let dst = icmpv6::solicited_node(&target);
        let mut body = vec![0u8; icmpv6::NDP_LEN];
        icmpv6::emit_neighbor_solicit(&mut body, target, VM, &src, &dst).unwrap();
        let ip = craft::ip_with_payload(
            IpAddr::V6(src),
            IpAddr::V6(dst),
            hop_limit,
            ip_proto::ICMPV6,
            &mut body,
        );
        craft::ip_frame(VM, MacAddr::ipv6_multicast(dst), &ip)
    }

    fn run_arp(frame: &[u8]) -> (Verdict, Vec<u8>) {
        let v = host1();
        let mut out = vec![0u8; 256];
        let eth = ethernet::Frame::new_checked(frame).unwrap();
        let verdict = vm_arp(v, &v.vms()[0], &eth, &mut out);
        (verdict, out)
    }

    fn run_nd(frame: &[u8]) -> (Verdict, Vec<u8>) {
        let v = host1();
        let mut out = vec![0u8; 256];
        let eth = ethernet::Frame::new_checked(frame).unwrap();
        let ip = IpPacket::parse(eth.payload(), true).unwrap();
        assert!(is_solicitation(&ip));
        let verdict = vm_nd(v, &v.vms()[0], &eth, &ip, &mut out);
        (verdict, out)
    }

    #[test]
    fn the_gateway_resolves_to_the_lb_and_vms_to_their_records() {
        for (target, want) in [
            ("10.0.0.1", LB_MAC),
            ("10.0.0.100", LB_MAC),
            ("10.0.0.7", MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 3])),
        ] {
            let req = arp_frame(arp::op::REQUEST, "10.0.0.5", target, MacAddr::BROADCAST);
            let (v, out) = run_arp(&req);
            assert_eq!(
                v,
                Verdict::Answer {
                    len: ARP_FRAME_LEN,
                    kind: Answered::Arp
                },
                "{target}"
            );
            let eth = ethernet::Frame::new_checked(&out[..ARP_FRAME_LEN]).unwrap();
            assert_eq!((eth.src_addr(), eth.dst_addr()), (want, VM));
            let a = arp::Repr::parse(&arp::Packet::new_checked(eth.payload()).unwrap()).unwrap();
            assert_eq!(a.operation, arp::op::REPLY);
            assert_eq!(a.sender_hw, want);
            assert_eq!(a.sender_ip.to_string(), target);
            assert_eq!(
                (a.target_hw, a.target_ip.to_string()),
                (VM, "10.0.0.5".into())
            );
        }
    }

    #[test]
    fn arp_outside_the_vsid_for_itself_or_not_a_request_is_dropped() {
        for (op, target, want) in [
            (arp::op::REQUEST, "10.0.1.1", DropReason::ArpNotAnswered),
            (arp::op::REQUEST, "10.0.0.5", DropReason::ArpNotAnswered),
            (arp::op::REPLY, "10.0.0.1", DropReason::MalformedArp),
        ] {
            let (v, _) = run_arp(&arp_frame(op, "10.0.0.5", target, MacAddr::BROADCAST));
            assert_eq!(v, Verdict::Drop(want), "{target}");
        }
        let short = arp_frame(arp::op::REQUEST, "10.0.0.5", "10.0.0.1", LB_MAC);
        let (v, _) = run_arp(&short[..30]);
        assert_eq!(v, Verdict::Drop(DropReason::MalformedArp));
    }

    #[test]
    fn neighbor_solicitations_get_solicited_override_adverts() {
        let (v, out) = run_nd(&ns_frame("fd00:0:0:1::5", "fd00:0:0:1::1", 255));
        assert_eq!(
            v,
            Verdict::Answer {
                len: NA_FRAME_LEN,
                kind: Answered::Nd
            }
        );
        let eth = ethernet::Frame::new_checked(&out[..NA_FRAME_LEN]).unwrap();
        assert_eq!((eth.src_addr(), eth.dst_addr()), (LB_MAC, VM));
        let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.hop_limit(), 255);
        assert_eq!(ip.src_addr().to_string(), "fd00:0:0:1::1");
        assert_eq!(ip.dst_addr().to_string(), "fd00:0:0:1::5");
        let na = icmpv6::Packet::new_checked(ip.payload()).unwrap();
        assert!(na.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(na.msg_type(), icmpv6::msg_type::NEIGHBOR_ADVERT);
        assert!(na.ndp_solicited_flag() && na.ndp_override_flag() && !na.ndp_router_flag());
        assert_eq!(na.ndp_target().unwrap().to_string(), "fd00:0:0:1::1");
        assert_eq!(na.ndp_target_link_addr(), Some(LB_MAC));
    }

    #[test]
    fn solicitations_that_are_forged_or_not_ours_are_dropped() {
        for (src, target, hops, want) in [
            (
                "fd00:0:0:1::5",
                "fd00:0:0:1::1",
                64,
                DropReason::MalformedNd,
            ),
            (
                "::",
                "fe80::1d:d8ff:feb7:1c01",
                255,
                DropReason::NdNotAnswered,
            ),
            (
                "fd00:0:0:1::5",
                "fd00:0:0:1::5",
                255,
                DropReason::NdNotAnswered,
            ),
            (
                "fd00:0:0:1::5",
                "fd00:0:0:2::1",
                255,
                DropReason::NdNotAnswered,
            ),
        ] {
            let (v, _) = run_nd(&ns_frame(src, target, hops));
            assert_eq!(v, Verdict::Drop(want), "{src} -> {target}");
        }
    }

    #[test]
    fn the_pa_side_answers_for_the_hosts_own_pa_only() {
        let v = host1();
        let mut out = vec![0u8; 256];
        let host_mac = v.host().mac;
        for (target, answered) in [("192.168.6.11", true), ("192.168.6.12", false)] {
            let req = arp_frame(arp::op::REQUEST, "192.168.6.10", target, MacAddr::BROADCAST);
            let eth = ethernet::Frame::new_checked(&req[..]).unwrap();
            let verdict = pa_arp(v, &eth, &mut out);
            assert_eq!(
                matches!(verdict, Verdict::Answer { .. }),
                answered,
                "{target}"
            );
            if answered {
                assert_eq!(&out[6..12], &host_mac.0);
            }
        }
        let ns = ns_frame("fd00:6::10", "fd00:6::11", 255);
        let eth = ethernet::Frame::new_checked(&ns[..]).unwrap();
        let ip = IpPacket::parse(eth.payload(), true).unwrap();
        assert!(matches!(
            pa_nd(v, &eth, &ip, &mut out),
            Verdict::Answer { .. }
        ));
        assert_eq!(&out[6..12], &host_mac.0);
    }
}
