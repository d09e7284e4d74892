//! Frames from a VM: answered (ARP/ND), delivered to another VM of this host, or
//! encapsulated as NVGRE toward the destination VM's host or the LB.
//!
//! The VM's VSID and MAC come from the command line, never from the frame: a frame
//! whose source MAC or source CA is not the VM's is dropped, so a VM cannot speak in
//! another VSID or as another VM. The destination MAC alone picks the peer (a VM of the
//! same VSID, or the subnet's lb_mac): the VM resolved it through `proxy`, from policy.
//! The outer headers are the ones the LB writes (`engine::Path`), with this host's PA
//! and MAC as source, the VM's VSID and a FlowID hashed from the inner 5-tuple. A
//! packet too big for the PA MTU (the policy's provider MTU) once wrapped is answered
//! with frag-needed/packet-too-big (`toobig`) when it may not be fragmented.
//! Must never panic on any input, nor send a partial checksum on.

use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::dataplane::afpacket::Meta;
use crate::engine::packet::IpPacket;
use crate::engine::{Path, Tunnel};
use crate::wire::{ethernet, ip_proto, tcp, udp};

use super::drop::DropReason;
use super::view::{HostView, Peer, Vm};
use super::{Answered, Verdict, csum, proxy, toobig};

/// Seed of the FlowID hash (entropy only: receivers ignore the FlowID).
const FLOW_SEED: u64 = 0x6e76_6c62_686f_7374; // "nvlbhost"

/// Decides about one frame received from VM `vm` (an index into `view.vms()`).
/// `frame` is mutable so that a partial checksum can be completed in place; `ident` is
/// the outer IPv4 identification to use if the frame is encapsulated.
pub fn from_vm(
    view: &HostView,
    vm: usize,
    frame: &mut [u8],
    meta: Meta,
    ident: u16,
    out: &mut [u8],
) -> Verdict {
    let Some(vm) = view.vm(vm) else {
        return Verdict::Drop(DropReason::UnknownVm);
    };
    if meta.vlan_tagged {
        return Verdict::Drop(DropReason::VlanTagged);
    }
    let plan = match plan(view, vm, frame, out) {
        Ok(Plan::Done(v)) => return v,
        Ok(Plan::Forward(p)) => p,
        Err(r) => return Verdict::Drop(r),
    };
    let completed = meta.csum_partial;
    if completed && csum::complete(frame).is_none() {
        return Verdict::Drop(DropReason::UnfinishableChecksum);
    }
    let Some(bytes) = frame.get(..plan.frame_len) else {
        return Verdict::Drop(DropReason::MalformedIp);
    };
    match plan.to {
        To::Direct(gateway) => match super::dsr::write_direct(view, gateway, bytes, out) {
            Some(len) => Verdict::Encapsulate { len, completed },
            None => Verdict::Drop(DropReason::TooBig),
        },
        To::Local(index) => Verdict::Deliver {
            vm: index,
            start: 0,
            len: plan.frame_len,
            local: true,
            completed,
        },
        To::Tunnel(t) => {
            // The PA network is the LB's provider network: its MTU is the policy's.
            let room = Path::Tunnel(t).max_ip_len(view.policy());
            if plan.frame_len.saturating_sub(ethernet::HEADER_LEN) > room {
                if !plan.dont_frag {
                    return Verdict::Drop(DropReason::TooBig);
                }
                return match toobig::answer(bytes, room, ident, out) {
                    Some(len) => Verdict::Answer {
                        len,
                        kind: Answered::TooBig,
                    },
                    None => Verdict::Drop(DropReason::TooBig),
                };
            }
            match encapsulate(&t, bytes, ident, out) {
                Some(len) => Verdict::Encapsulate { len, completed },
                None => Verdict::Drop(DropReason::TooBig),
            }
        }
    }
}

enum Plan {
    /// Answered or dropped without forwarding.
    Done(Verdict),
    Forward(Forward),
}

struct Forward {
    to: To,
    /// The frame without Ethernet padding.
    frame_len: usize,
    /// IPv4 DF (always set for IPv6): whether a too-big packet is answered, not dropped.
    dont_frag: bool,
}

enum To {
    /// Plain IP to this host's gateway: a floating-IP DIP's reply (`dsr`).
    Direct(crate::wire::MacAddr),
    Local(usize),
    Tunnel(Tunnel),
}

/// Everything that reads the frame, before anything may write to it.
fn plan(view: &HostView, vm: &Vm, frame: &[u8], out: &mut [u8]) -> Result<Plan, DropReason> {
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::MalformedEthernet)?;
    if eth.src_addr() != vm.mac {
        return Err(DropReason::SpoofedSource);
    }
    let v6 = match eth.ethertype() {
        // Requests are answered whatever their destination MAC (Linux re-validates
        // entries with unicast requests to the cached MAC).
        ethernet::ethertype::ARP => return Ok(Plan::Done(proxy::vm_arp(view, vm, &eth, out))),
        ethernet::ethertype::IPV4 => false,
        ethernet::ethertype::IPV6 => true,
        _ if eth.dst_addr().is_multicast() => return Err(DropReason::VmMulticast),
        _ => return Err(DropReason::UnsupportedEthertype),
    };
    let ip = IpPacket::parse(eth.payload(), v6).map_err(|_| DropReason::MalformedIp)?;
    if proxy::is_solicitation(&ip) {
        return Ok(Plan::Done(proxy::vm_nd(view, vm, &eth, &ip, out)));
    }
    if eth.dst_addr().is_multicast() {
        return Err(DropReason::VmMulticast);
    }
    if !vm.cas.contains(&ip.src) {
        if let Some(gateway) = super::dsr::direct_next_hop(view, vm, eth.dst_addr(), &ip) {
            return Ok(Plan::Forward(Forward {
                to: To::Direct(gateway),
                frame_len: ethernet::HEADER_LEN + ip.bytes.len(),
                dont_frag: ip.dont_frag,
            }));
        }
        return Err(DropReason::SpoofedCa);
    }
    let frame_len = ethernet::HEADER_LEN + ip.bytes.len();
    let dst_mac = eth.dst_addr();
    let peer = if let Some(index) = view.local_vm(vm.vsid, dst_mac) {
        return Ok(Plan::Forward(Forward {
            to: To::Local(index),
            frame_len,
            dont_frag: ip.dont_frag,
        }));
    } else if let Some(host) = view.remote_host(vm.vsid, dst_mac) {
        Peer::Host(host)
    } else if dst_mac == vm.lb_mac {
        Peer::Lb
    } else {
        return Err(DropReason::UnknownDestination);
    };
    let mut outer = view.outer_to(peer).ok_or(DropReason::NoOuterFamily)?;
    // Scale-out: what a VM sends to one instance's SNAT CA (a full-NAT reply, a probe's
    // answer) must reach that instance, not whichever one ECMP picks for the shared PA.
    if peer == Peer::Lb
        && let Some(pa) = view
            .policy()
            .snat_owner_pa(vm.vsid, ip.dst, outer.dst.is_ipv6())
    {
        outer.dst = pa;
    }
    Ok(Plan::Forward(Forward {
        to: To::Tunnel(Tunnel {
            vsid: vm.vsid.get(),
            flow_id: flow_id(&ip),
            outer_src: outer.src,
            outer_dst: outer.dst,
            outer_src_mac: outer.src_mac,
            outer_dst_mac: outer.dst_mac,
            inner_src_mac: eth.src_addr(),
            inner_dst_mac: dst_mac,
        }),
        frame_len,
        dont_frag: ip.dont_frag,
    }))
}

/// Writes NVGRE around `frame` (a whole inner Ethernet frame) into `out`; its length.
fn encapsulate(t: &Tunnel, frame: &[u8], ident: u16, out: &mut [u8]) -> Option<usize> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let payload = eth.payload();
    let path = Path::Tunnel(*t);
    let at = path
        .write_headers(out, eth.ethertype(), payload.len(), ident)
        .ok()?;
    let end = at.checked_add(payload.len())?;
    out.get_mut(at..end)?.copy_from_slice(payload);
    Some(end)
}

/// 8 bits of entropy from the inner 5-tuple (addresses and protocol for non-TCP/UDP).
pub fn flow_id(ip: &IpPacket) -> u8 {
    let mut key = [0u8; 37];
    let v6 = |a: IpAddr| match a {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    key[..16].copy_from_slice(&v6(ip.src));
    key[16..32].copy_from_slice(&v6(ip.dst));
    key[32] = ip.proto;
    let ports = match ip.proto {
        ip_proto::TCP => tcp::ports(ip.l4_bytes()).ok(),
        ip_proto::UDP => udp::Packet::new_checked(ip.l4_bytes())
            .ok()
            .map(|u| (u.src_port(), u.dst_port())),
        _ => None,
    };
    if let Some((s, d)) = ports {
        key[33..35].copy_from_slice(&s.to_be_bytes());
        key[35..37].copy_from_slice(&d.to_be_bytes());
    }
    (xxh3_64_with_seed(&key, FLOW_SEED) >> 56) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft::{self, Transport};
    use crate::hostsim::view::HostView;
    use crate::hostsim::view::tests::{host1, policy, spec};
    use crate::wire::{MacAddr, gre, ipv4, ipv6};

    const VM: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 1]);
    const LB_MAC: MacAddr = MacAddr([2, 0, 0, 0xb1, 0, 0xfe]);
    const B6: MacAddr = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 2]);

    fn syn_ack(src: &str, dst: &str, src_mac: MacAddr, dst_mac: MacAddr) -> Vec<u8> {
        let ip = craft::ip_packet(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            64,
            Transport::Tcp {
                src_port: 80,
                dst_port: 40000,
                flags: tcp::flags::SYN | tcp::flags::ACK,
                seq: 5,
                ack: 2,
            },
            b"",
        );
        craft::ip_frame(src_mac, dst_mac, &ip)
    }

    fn run(view: &HostView, frame: &mut [u8], meta: Meta) -> (Verdict, Vec<u8>) {
        let mut out = vec![0u8; 2048];
        let v = from_vm(view, 0, frame, meta, 77, &mut out);
        (v, out)
    }

    /// (outer src, outer dst, outer dst MAC, VSID, inner frame) of an NVGRE frame.
    fn open(frame: &[u8]) -> (IpAddr, IpAddr, MacAddr, u32, Vec<u8>) {
        let eth = ethernet::Frame::new_checked(frame).unwrap();
        let ip =
            IpPacket::parse(eth.payload(), eth.ethertype() == ethernet::ethertype::IPV6).unwrap();
        assert_eq!(ip.proto, ip_proto::GRE);
        if !ip.v6 {
            let p = ipv4::Packet::new_checked(eth.payload()).unwrap();
            assert!(p.dont_frag() && p.ttl() == 64 && p.ident() == 77);
        } else {
            assert_eq!(
                ipv6::Packet::new_checked(eth.payload())
                    .unwrap()
                    .hop_limit(),
                64
            );
        }
        let g = gre::Packet::new_checked(ip.l4_bytes()).unwrap();
        assert_eq!(g.flags_word(), gre::NVGRE_FLAGS);
        assert_eq!(g.protocol_type(), ethernet::ethertype::TEB);
        (
            ip.src,
            ip.dst,
            eth.dst_addr(),
            g.vsid().unwrap(),
            g.payload().to_vec(),
        )
    }

    #[test]
    fn to_the_lb_mac_goes_to_the_lb_pa_with_the_vms_vsid() {
        let v = host1();
        for (src, dst) in [
            ("10.0.0.5", "198.51.100.77"),
            ("fd00:0:0:1::5", "2001:db8:ff::77"),
        ] {
            let mut frame = syn_ack(src, dst, VM, LB_MAC);
            let inner = frame.clone();
            let (verdict, out) = run(v, &mut frame, Meta::default());
            let Verdict::Encapsulate {
                len,
                completed: false,
            } = verdict
            else {
                panic!("{verdict:?}");
            };
            let (osrc, odst, omac, vsid, got) = open(&out[..len]);
            assert_eq!(
                osrc.to_string(),
                "192.168.6.11",
                "IPv4 outer: both have one"
            );
            assert_eq!(odst.to_string(), "192.168.6.10");
            assert_eq!(omac.to_string(), "02:00:00:00:06:0a");
            assert_eq!(vsid, 5001);
            assert_eq!(got, inner, "the inner frame is the VM's, unchanged");
        }
    }

    #[test]
    fn to_a_vm_on_another_host_goes_to_its_pa_and_padding_is_not_carried() {
        let v = host1();
        let mut frame = syn_ack("10.0.0.5", "10.0.0.6", VM, B6);
        let inner = frame.clone();
        frame.extend_from_slice(&[0; 6]); // Ethernet padding after the IP packet
        let (verdict, out) = run(v, &mut frame, Meta::default());
        let Verdict::Encapsulate { len, .. } = verdict else {
            panic!("{verdict:?}");
        };
        let (_, odst, omac, _, got) = open(&out[..len]);
        assert_eq!(odst.to_string(), "192.168.6.12");
        assert_eq!(omac.to_string(), "02:00:00:00:06:12");
        assert_eq!(got, inner);
    }

    #[test]
    fn to_a_vm_of_this_host_is_delivered_locally() {
        // host3 runs Blue 10.0.0.7 and 10.0.0.8.
        let v = HostView::new(
            policy(),
            "host3",
            "pa0",
            &[
                spec("5001,00:1d:d8:b7:1c:03,vm-b7"),
                spec("5001,00:1d:d8:b7:1c:04,vm-b8"),
            ],
        )
        .unwrap();
        let b7 = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 3]);
        let b8 = MacAddr([0, 0x1d, 0xd8, 0xb7, 0x1c, 4]);
        let mut frame = syn_ack("10.0.0.7", "10.0.0.8", b7, b8);
        let n = frame.len();
        let (verdict, _) = run(&v, &mut frame, Meta::default());
        assert_eq!(
            verdict,
            Verdict::Deliver {
                vm: 1,
                start: 0,
                len: n,
                local: true,
                completed: false
            }
        );
    }

    #[test]
    fn a_partial_checksum_is_completed_before_it_leaves() {
        let v = host1();
        let mut frame = syn_ack("10.0.0.5", "198.51.100.77", VM, LB_MAC);
        let sum_at = ethernet::HEADER_LEN + ipv4::HEADER_LEN + 16;
        frame[sum_at..sum_at + 2].copy_from_slice(&[0x12, 0x34]);
        let meta = Meta {
            csum_partial: true,
            ..Meta::default()
        };
        let (verdict, out) = run(v, &mut frame, meta);
        let Verdict::Encapsulate {
            len,
            completed: true,
        } = verdict
        else {
            panic!("{verdict:?}");
        };
        let (.., inner) = open(&out[..len]);
        let eth = ethernet::Frame::new_checked(&inner[..]).unwrap();
        let ip = IpPacket::parse(eth.payload(), false).unwrap();
        let t = tcp::Packet::new_checked(ip.l4_bytes()).unwrap();
        assert!(t.verify_checksum(ip.src, ip.dst));
    }

    #[test]
    fn spoofing_multicast_and_unknown_destinations_are_dropped() {
        let v = host1();
        let other = MacAddr([2, 0, 0, 0, 0, 0x99]);
        for (frame, want) in [
            (
                syn_ack("10.0.0.5", "198.51.100.77", B6, LB_MAC),
                DropReason::SpoofedSource,
            ),
            (
                syn_ack("10.0.0.6", "198.51.100.77", VM, LB_MAC),
                DropReason::SpoofedCa,
            ),
            (
                syn_ack("10.0.0.5", "198.51.100.77", VM, other),
                DropReason::UnknownDestination,
            ),
            (
                syn_ack("10.0.0.5", "224.0.0.1", VM, MacAddr([1, 0, 0x5e, 0, 0, 1])),
                DropReason::VmMulticast,
            ),
        ] {
            let mut f = frame;
            assert_eq!(run(v, &mut f, Meta::default()).0, Verdict::Drop(want));
        }
        // Red's lb_mac is not Blue's gateway.
        let mut f = syn_ack(
            "10.0.0.5",
            "198.51.100.77",
            VM,
            MacAddr([2, 0, 0, 0xe1, 0, 0xfe]),
        );
        assert_eq!(
            run(v, &mut f, Meta::default()).0,
            Verdict::Drop(DropReason::UnknownDestination)
        );
    }

    #[test]
    fn every_truncation_is_a_counted_drop_or_an_answer() {
        let v = host1();
        let frame = syn_ack("fd00:0:0:1::5", "2001:db8:ff::77", VM, LB_MAC);
        for cut in 0..frame.len() {
            let mut f = frame[..cut].to_vec();
            let meta = Meta {
                csum_partial: true,
                ..Meta::default()
            };
            assert!(
                matches!(run(v, &mut f, meta).0, Verdict::Drop(_)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn too_big_for_the_pa_mtu_is_answered_to_the_vm_unless_df_is_clear() {
        // PA MTU 1400: an inner IP packet may have 1400 - 20 - 8 - 14 = 1358 bytes
        // under IPv4 outer.
        let text =
            include_str!("../../../../lb-config/example.toml").replace("mtu = 1600", "mtu = 1400");
        let policy = std::sync::Arc::new(crate::policy::Snapshot::from_toml(&text, "x").unwrap());
        let v = HostView::new(
            policy,
            "host1",
            "pa0",
            &[spec("5001,00:1d:d8:b7:1c:01,vm-b5")],
        )
        .unwrap();
        let seg = |src: &str, dst: &str, payload: usize| {
            let ip = craft::ip_packet(
                src.parse().unwrap(),
                dst.parse().unwrap(),
                64,
                Transport::Tcp {
                    src_port: 80,
                    dst_port: 40000,
                    flags: tcp::flags::ACK,
                    seq: 5,
                    ack: 2,
                },
                &vec![7; payload],
            );
            craft::ip_frame(VM, LB_MAC, &ip)
        };
        // 20 + 20 + 1318 = 1358 fits exactly; one byte more does not.
        let mut fits = seg("10.0.0.5", "192.0.2.100", 1318);
        assert!(matches!(
            run(&v, &mut fits, Meta::default()).0,
            Verdict::Encapsulate { .. }
        ));
        for (src, dst, payload, mtu) in [
            ("10.0.0.5", "192.0.2.100", 1319, 1358u32),
            ("fd00:0:0:1::5", "2001:db8:c::100", 1440, 1358),
        ] {
            let mut frame = seg(src, dst, payload);
            let (verdict, out) = run(&v, &mut frame, Meta::default());
            let Verdict::Answer {
                len,
                kind: Answered::TooBig,
            } = verdict
            else {
                panic!("{src}: {verdict:?}");
            };
            let eth = ethernet::Frame::new_checked(&out[..len]).unwrap();
            assert_eq!(eth.dst_addr(), VM);
            let ip = IpPacket::parse(eth.payload(), src.contains(':')).unwrap();
            assert_eq!(ip.dst.to_string(), src);
            let icmp = ip.l4_bytes();
            let got = if ip.v6 {
                u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]])
            } else {
                u32::from(u16::from_be_bytes([icmp[6], icmp[7]]))
            };
            assert_eq!(got, mtu, "{src}");
        }
        // IPv4 without DF may be fragmented by the sender's path: not answered.
        let mut frame = seg("10.0.0.5", "192.0.2.100", 1400);
        frame[ethernet::HEADER_LEN + 6] &= !0x40;
        let at = ethernet::HEADER_LEN;
        let mut p = ipv4::Packet::new_checked(&mut frame[at..]).unwrap();
        p.fill_checksum();
        assert_eq!(
            run(&v, &mut frame, Meta::default()).0,
            Verdict::Drop(DropReason::TooBig)
        );
    }

    #[test]
    fn flow_ids_depend_on_ports() {
        let a = syn_ack("10.0.0.5", "198.51.100.77", VM, LB_MAC);
        let ids: std::collections::HashSet<u8> = (0..64u16)
            .map(|p| {
                let ip = craft::ip_packet(
                    "10.0.0.5".parse().unwrap(),
                    "198.51.100.77".parse().unwrap(),
                    64,
                    Transport::Udp {
                        src_port: 1000 + p,
                        dst_port: 53,
                    },
                    b"",
                );
                flow_id(&IpPacket::parse(&ip, false).unwrap())
            })
            .collect();
        assert!(ids.len() > 16, "64 flows spread: {}", ids.len());
        let ip = IpPacket::parse(&a[ethernet::HEADER_LEN..], false).unwrap();
        assert_eq!(flow_id(&ip), flow_id(&ip));
    }

    #[test]
    fn to_an_instances_snat_ca_goes_to_that_instances_own_pa() {
        let text = format!(
            "{}\n[[balancer.instance]]\nname = \"a\"\nprovider_addresses = [\"192.168.6.31\"]\n\
             snat = [{{ vsid = 5001, ca = \"10.0.0.241\", ports = \"20000-29999\" }}]\n",
            include_str!("../../../../lb-config/example.toml")
        );
        let policy = std::sync::Arc::new(crate::policy::Snapshot::from_toml(&text, "x").unwrap());
        let v = HostView::new(
            policy,
            "host1",
            "pa0",
            &[spec("5001,00:1d:d8:b7:1c:01,vm-b5")],
        )
        .unwrap();
        // The instance's SNAT CA: its own PA. The shared one: the shared (anycast) PA.
        for (dst, pa) in [
            ("10.0.0.241", "192.168.6.31"),
            ("10.0.0.250", "192.168.6.10"),
        ] {
            let mut frame = syn_ack("10.0.0.5", dst, VM, LB_MAC);
            let (verdict, out) = run(&v, &mut frame, Meta::default());
            let Verdict::Encapsulate { len, .. } = verdict else {
                panic!("{verdict:?}");
            };
            let (_, odst, omac, _, _) = open(&out[..len]);
            assert_eq!(odst.to_string(), pa, "to {dst}");
            assert_eq!(omac.to_string(), "02:00:00:00:06:0a");
        }
        // And NVGRE from the instance's PA is the LB's.
        assert_eq!(v.sender("192.168.6.31".parse().unwrap()), Some(Peer::Lb));
    }
}
