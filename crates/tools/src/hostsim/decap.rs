//! Frames from the PA network: NVGRE for this host's VMs, and ARP/ND for its PAs.
//!
//! An NVGRE packet reaches a VM only when every layer agrees with policy: outer
//! destination = this host (MAC and PA), GRE with the K bit only and protocol 0x6558,
//! a declared, unreserved VSID, an outer source that is the LB or a declared host, an
//! untagged inner frame whose destination MAC is this host's VM in that VSID and whose
//! destination address is a CA of that VM there. When the sender is another host, the
//! inner source must be one of that host's VMs (a host cannot speak for another's VMs).
//! The inner frame is delivered byte for byte. Must never deliver anything else, and
//! never panic on any input.

use std::net::IpAddr;

use crate::engine::packet::IpPacket;
use crate::policy::Vsid;
use crate::wire::{MacAddr, ethernet, gre, ip_proto};

use super::Verdict;
use super::drop::DropReason;
use super::proxy;
use super::view::{HostView, Peer};

/// Decides about one frame received on the PA interface. `vlan_tagged` comes from the
/// socket's metadata (the kernel strips the tag from the bytes).
pub fn from_pa(view: &HostView, frame: &[u8], vlan_tagged: bool, out: &mut [u8]) -> Verdict {
    match decide(view, frame, vlan_tagged, out) {
        Ok(v) => v,
        Err(r) => Verdict::Drop(r),
    }
}

fn decide(
    view: &HostView,
    frame: &[u8],
    vlan_tagged: bool,
    out: &mut [u8],
) -> Result<Verdict, DropReason> {
    if vlan_tagged {
        return Err(DropReason::VlanTagged);
    }
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::MalformedEthernet)?;
    let to_us = eth.dst_addr() == view.host().mac;
    if !to_us && !eth.dst_addr().is_multicast() {
        return Err(DropReason::NotOurMac);
    }
    let v6 = match eth.ethertype() {
        ethernet::ethertype::ARP => return Ok(proxy::pa_arp(view, &eth, out)),
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    let outer = IpPacket::parse(eth.payload(), v6).map_err(|_| DropReason::MalformedOuter)?;
    if proxy::is_solicitation(&outer) {
        return Ok(proxy::pa_nd(view, &eth, &outer, out));
    }
    if !to_us {
        return Err(DropReason::NotOurMac);
    }
    if !view.owns_pa(outer.dst) {
        return Err(DropReason::NotOurPa);
    }
    if outer.fragment {
        return Err(DropReason::OuterFragment);
    }
    if outer.proto != ip_proto::GRE {
        return Err(DropReason::NotGre);
    }
    let g = gre::Packet::new_checked(outer.l4_bytes()).map_err(|_| DropReason::MalformedGre)?;
    if g.flags_word() != gre::NVGRE_FLAGS {
        return Err(DropReason::GreFlags);
    }
    if g.protocol_type() != ethernet::ethertype::TEB {
        return Err(DropReason::GreProtocol);
    }
    let key = g.key().ok_or(DropReason::GreFlags)?;
    let vsid = Vsid::from_key(key).ok_or(DropReason::ReservedVsid)?;
    if view.policy().subnet(vsid).is_none() {
        return Err(DropReason::UnknownVsid);
    }
    let sender = view.sender(outer.src).ok_or(DropReason::UnknownPa)?;
    let inner_bytes = g.payload();
    let inner =
        ethernet::Frame::new_checked(inner_bytes).map_err(|_| DropReason::MalformedInner)?;
    let inner_v6 = match inner.ethertype() {
        ethernet::ethertype::VLAN | ethernet::ethertype::QINQ => {
            return Err(DropReason::InnerVlan);
        }
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ => return Err(DropReason::InnerNotIp),
    };
    let vm_index = view.local_vm(vsid, inner.dst_addr()).ok_or_else(|| {
        if view.is_away(vsid, inner.dst_addr()) {
            DropReason::VmAway
        } else {
            DropReason::UnknownVm
        }
    })?;
    let vm = view.vm(vm_index).ok_or(DropReason::UnknownVm)?;
    let ip = IpPacket::parse(inner.payload(), inner_v6).map_err(|_| DropReason::MalformedInner)?;
    if !vm.cas.contains(&ip.dst) && !super::dsr::may_deliver_vip(view, vm, sender, ip.dst) {
        return Err(DropReason::WrongCa);
    }
    if let Peer::Host(id) = sender
        && !speaks_for(view, vsid, ip.src, inner.src_addr(), id)
    {
        return Err(DropReason::SpoofedPa);
    }
    // The GRE payload is exactly the inner frame: the outer IP length bounds it.
    let start = ethernet::HEADER_LEN + outer.l4 + g.header_len();
    Ok(Verdict::Deliver {
        vm: vm_index,
        start,
        len: inner_bytes.len(),
        local: false,
        completed: false,
    })
}

/// Whether host `id` may send a frame from (`src`, `mac`) in `vsid`: policy places
/// that CA with that MAC on it.
fn speaks_for(view: &HostView, vsid: Vsid, src: IpAddr, mac: MacAddr, id: u16) -> bool {
    view.policy()
        .lookup(vsid, src)
        .is_some_and(|r| r.host == id && r.mac == mac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft::{self, Outer, Transport};
    use crate::hostsim::view::tests::host1;
    use crate::wire::tcp;

    const HOST1_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0x11]);
    const LB_PA_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 0x0a]);
    const VM: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 1]);
    const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0xb1, 0, 0xfe]);

    fn inner(src: &str, dst: &str, src_mac: MacAddr, dst_mac: MacAddr) -> Vec<u8> {
        let ip = craft::ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            64,
            Transport::Tcp {
                src_port: 40000,
                dst_port: 80,
                flags: tcp::flags::SYN,
                seq: 1,
                ack: 0,
            },
            &[],
        );
        craft::ip_frame(src_mac, dst_mac, &ip)
    }

    fn outer(src: &str, dst: &str, vsid: u32) -> Outer {
        Outer {
            src_mac: LB_PA_MAC,
            dst_mac: HOST1_MAC,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            vsid,
            flow_id: 9,
        }
    }

    fn decide(frame: &[u8]) -> Verdict {
        from_pa(host1(), frame, false, &mut [0u8; 256])
    }

    #[test]
    fn delivers_the_inner_frame_unchanged_over_both_outer_families() {
        for (client, ca) in [
            ("198.51.100.77", "10.0.0.5"),
            ("2001:db8:ff::77", "fd00:0:0:1::5"),
        ] {
            let inner = inner(client, ca, LB_MAC, VM);
            for (src, dst) in [
                ("192.168.6.10", "192.168.6.11"),
                ("fd00:6::10", "fd00:6::11"),
            ] {
                let frame = craft::nvgre(&outer(src, dst, 5001), &inner);
                let Verdict::Deliver {
                    vm: 0,
                    start,
                    len,
                    local: false,
                    completed: false,
                } = decide(&frame)
                else {
                    panic!("{client} over {src}: {:?}", decide(&frame));
                };
                assert_eq!(&frame[start..start + len], &inner[..]);
            }
        }
    }

    #[test]
    fn a_vm_moved_away_is_not_delivered_to_and_is_counted_apart() {
        use crate::hostsim::view::{HostView, tests};
        let moved = HostView::reload(
            tests::b5_moved_to_host2(),
            "host1",
            "pa0",
            &[tests::spec("5001,00:1d:d8:b7:1c:01,vm-b5")],
        )
        .unwrap();
        let frame = craft::nvgre(
            &outer("192.168.6.10", "192.168.6.11", 5001),
            &inner("198.51.100.77", "10.0.0.5", LB_MAC, VM),
        );
        assert!(matches!(decide(&frame), Verdict::Deliver { .. }));
        assert_eq!(
            from_pa(&moved, &frame, false, &mut [0u8; 256]),
            Verdict::Drop(DropReason::VmAway),
            "a stale PA delivers nothing"
        );
        let other = craft::nvgre(
            &outer("192.168.6.10", "192.168.6.11", 5001),
            &inner(
                "198.51.100.77",
                "10.0.0.6",
                LB_MAC,
                MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 2]),
            ),
        );
        assert_eq!(
            from_pa(&moved, &other, false, &mut [0u8; 256]),
            Verdict::Drop(DropReason::UnknownVm)
        );
    }

    #[test]
    fn refuses_each_layer_that_disagrees_with_policy() {
        let good_inner = inner("198.51.100.77", "10.0.0.5", LB_MAC, VM);
        let from_host2 = inner(
            "10.0.0.6",
            "10.0.0.5",
            MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 2]),
            VM,
        );
        let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
            (
                "wrong VSID for the MAC",
                craft::nvgre(&outer("192.168.6.10", "192.168.6.11", 6001), &good_inner),
                DropReason::UnknownVm,
            ),
            (
                "undeclared VSID",
                craft::nvgre(&outer("192.168.6.10", "192.168.6.11", 7777), &good_inner),
                DropReason::UnknownVsid,
            ),
            (
                "reserved VSID",
                craft::nvgre(&outer("192.168.6.10", "192.168.6.11", 0xfff), &good_inner),
                DropReason::ReservedVsid,
            ),
            (
                "unknown outer source",
                craft::nvgre(&outer("192.168.6.99", "192.168.6.11", 5001), &good_inner),
                DropReason::UnknownPa,
            ),
            (
                "another host's PA",
                craft::nvgre(&outer("192.168.6.10", "192.168.6.12", 5001), &good_inner),
                DropReason::NotOurPa,
            ),
            (
                "a CA the VM does not hold",
                craft::nvgre(
                    &outer("192.168.6.10", "192.168.6.11", 5001),
                    &inner("198.51.100.77", "10.0.0.6", LB_MAC, VM),
                ),
                DropReason::WrongCa,
            ),
            (
                "host3 speaking for host2's VM",
                craft::nvgre(&outer("192.168.6.13", "192.168.6.11", 5001), &from_host2),
                DropReason::SpoofedPa,
            ),
        ];
        for (what, frame, want) in cases {
            assert_eq!(decide(&frame), Verdict::Drop(want), "{what}");
        }
        // The same inner frame from host2, where policy places 10.0.0.6, is delivered.
        let own = craft::nvgre(&outer("192.168.6.12", "192.168.6.11", 5001), &from_host2);
        assert!(matches!(decide(&own), Verdict::Deliver { vm: 0, .. }));
    }

    #[test]
    fn gre_shapes_other_than_nvgre_are_refused() {
        let frame = craft::nvgre(
            &outer("192.168.6.10", "192.168.6.11", 5001),
            &inner("198.51.100.77", "10.0.0.5", LB_MAC, VM),
        );
        let gre_at = ethernet::HEADER_LEN + 20;
        let mut seq = frame.clone();
        seq[gre_at] |= 0x10; // S bit
        assert_eq!(decide(&seq), Verdict::Drop(DropReason::GreFlags));
        let mut proto = frame.clone();
        proto[gre_at + 2..gre_at + 4].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(decide(&proto), Verdict::Drop(DropReason::GreProtocol));
        let mut mac = frame.clone();
        mac[..6].copy_from_slice(&[2, 0, 0, 0, 6, 0x12]);
        assert_eq!(decide(&mac), Verdict::Drop(DropReason::NotOurMac));
        assert_eq!(
            from_pa(host1(), &frame, true, &mut [0u8; 64]),
            Verdict::Drop(DropReason::VlanTagged)
        );
        let mut tagged_inner = inner("198.51.100.77", "10.0.0.5", LB_MAC, VM);
        tagged_inner[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        let f = craft::nvgre(&outer("192.168.6.10", "192.168.6.11", 5001), &tagged_inner);
        assert_eq!(decide(&f), Verdict::Drop(DropReason::InnerVlan));
    }

    #[test]
    fn every_truncation_is_a_counted_drop() {
        let frame = craft::nvgre(
            &outer("fd00:6::10", "fd00:6::11", 5001),
            &inner("2001:db8:ff::77", "fd00:0:0:1::5", LB_MAC, VM),
        );
        for cut in 0..frame.len() {
            assert!(
                matches!(decide(&frame[..cut]), Verdict::Drop(_)),
                "cut {cut}"
            );
        }
    }
}
