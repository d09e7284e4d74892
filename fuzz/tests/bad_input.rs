//! Bad input at the engine's edges that the unit tests (src/engine/tests.rs, src/wire/*)
//! and the golden packets (tests/golden/craft.py) did not already show: IPv6 extension
//! header chains, IPv6 fragments, protocols the LB does not balance, GRE and VSID
//! mistakes without scapy at hand, and ICMP errors quoting garbage or another tenant's
//! flow. Each must give exactly one counted drop of the named reason and change
//! nothing else (flow table, other counters); docs/reliability.md lists them.
//!
//! Run with `cargo test --no-default-features` in fuzz/ (tests/fuzz-smoke.sh does).

use std::net::IpAddr;
use std::sync::Arc;

use nvlb::craft::{self, Outer, Transport};
use nvlb::engine::{DropReason, Engine, Verdict, output_len};
use nvlb::policy::{Snapshot, VipPool};
use nvlb::wire::{MacAddr, ethernet, icmpv4, ip_proto, tcp};
use nvlb_fuzz::check::{self, Emitted};

const SEC: u64 = 1_000_000_000;
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 0x77]);

fn policy() -> Arc<Snapshot> {
    nvlb_fuzz::engine::policy()
}

fn public_pool(p: &Snapshot, v6: bool) -> &VipPool {
    p.pools()
        .iter()
        .find(|x| x.frontend.is_public() && x.address.is_ipv6() == v6)
        .unwrap()
}

fn client(v6: bool) -> IpAddr {
    if v6 {
        "2001:db8:ff::77".parse().unwrap()
    } else {
        "198.51.100.77".parse().unwrap()
    }
}

fn syn_to(pool: &VipPool, sport: u16) -> Vec<u8> {
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: pool.port,
        flags: tcp::flags::SYN,
        seq: 1,
        ack: 0,
    };
    craft::ip_packet(client(pool.address.is_ipv6()), pool.address, 64, t, b"hi")
}

fn on_external(p: &Snapshot, ip: &[u8]) -> Vec<u8> {
    craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, ip)
}

/// An NVGRE frame from `host`'s IPv4 PA carrying `inner` in `vsid`.
fn from_host(p: &Snapshot, host: usize, vsid: u32, inner: &[u8]) -> Vec<u8> {
    let h = &p.hosts()[host];
    let b = p.balancer();
    let outer = Outer {
        src_mac: h.mac,
        dst_mac: b.provider.mac,
        src: IpAddr::V4(h.pa_v4.unwrap()),
        dst: IpAddr::V4(b.provider.address_v4().unwrap()),
        vsid,
        flow_id: 1,
    };
    craft::nvgre(&outer, inner)
}

/// Inserts IPv6 extension headers (each `(type, bytes)`, bytes a multiple of 8 long,
/// next-header byte filled in here) between the fixed header and the upper layer.
fn with_ext(ip6: &[u8], headers: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let upper = ip6[6];
    let mut chain = Vec::new();
    for (i, (_, bytes)) in headers.iter().enumerate() {
        let mut h = bytes.clone();
        h[0] = headers.get(i + 1).map_or(upper, |(t, _)| *t);
        chain.extend_from_slice(&h);
    }
    let mut v = ip6[..40].to_vec();
    v[6] = headers[0].0;
    let plen = u16::from_be_bytes([v[4], v[5]]) + chain.len() as u16;
    v[4..6].copy_from_slice(&plen.to_be_bytes());
    v.extend_from_slice(&chain);
    v.extend_from_slice(&ip6[40..]);
    v
}

fn opts(len8: usize) -> Vec<u8> {
    // Next header (filled later), length in 8-byte units beyond the first, then PadN.
    let mut h = vec![0u8; 8 * (len8 + 1)];
    h[1] = len8 as u8;
    h[2] = 1;
    h[3] = (h.len() - 4) as u8;
    h
}

fn frag(offset: u16, more: bool) -> Vec<u8> {
    let mut h = vec![0u8; 8];
    h[2..4].copy_from_slice(&(offset << 3 | u16::from(more)).to_be_bytes());
    h[4..8].copy_from_slice(&7u32.to_be_bytes());
    h
}

/// Runs `frame` on a fresh engine (after `setup` frames) and requires a drop of
/// `reason`, counted once, with the flow table and every other counter unchanged.
fn expect_drop(p: &Arc<Snapshot>, setup: &[Vec<u8>], frame: &[u8], reason: DropReason) {
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; 4096];
    for s in setup {
        let v = e.process(SEC, s, &mut out);
        assert!(matches!(v, Verdict::Forward { .. }), "setup frame: {v:?}");
    }
    let before = e.counters().clone();
    let flows = e.shard().len();
    let v = e.process(SEC, frame, &mut out[..output_len(frame.len())]);
    assert_eq!(
        v,
        Verdict::Drop(reason),
        "{}",
        nvlb_fuzz::engine::hex(frame)
    );
    let c = e.counters();
    assert_eq!(c.dropped(reason), before.dropped(reason) + 1);
    assert_eq!(c.dropped_total(), before.dropped_total() + 1);
    assert_eq!(
        (c.forwarded, c.replied, c.handoffs, c.new_flows),
        (
            before.forwarded,
            before.replied,
            before.handoffs,
            before.new_flows
        )
    );
    assert_eq!(e.shard().len(), flows, "the flow table changed");
}

/// Forwards `frame` on a fresh engine and checks the output with the fuzz invariants.
fn expect_forward(p: &Arc<Snapshot>, frame: &[u8]) {
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; output_len(frame.len())];
    match e.process(SEC, frame, &mut out) {
        Verdict::Forward {
            egress,
            len,
            matched,
        } => check::output(p, frame, &out[..len], Emitted::Forward { egress, matched }).unwrap(),
        v => panic!("expected a forward, got {v:?}"),
    }
}

#[test]
fn ipv6_extension_header_chains() {
    let p = policy();
    let syn = syn_to(public_pool(&p, true), 1000);
    // Hop-by-hop and destination options in front of TCP: balanced like plain TCP, and
    // the output keeps its checksums.
    let ok = with_ext(&syn, &[(0, opts(0)), (60, opts(1))]);
    expect_forward(&p, &on_external(&p, &ok));
    // Hop-by-hop anywhere but first: malformed.
    let late = with_ext(&syn, &[(60, opts(0)), (0, opts(0))]);
    expect_drop(&p, &[], &on_external(&p, &late), DropReason::MalformedIp);
    // Nine headers: more than the walk crosses.
    let long: Vec<(u8, Vec<u8>)> = (0..9).map(|_| (60, opts(0))).collect();
    let long = with_ext(&syn, &long);
    expect_drop(&p, &[], &on_external(&p, &long), DropReason::MalformedIp);
    // A header longer than the payload.
    let mut cut = with_ext(&syn, &[(60, opts(0))]);
    cut[41] = 200;
    expect_drop(&p, &[], &on_external(&p, &cut), DropReason::MalformedIp);
}

#[test]
fn ipv6_and_ipv4_fragments_are_dropped() {
    let p = policy();
    let syn6 = syn_to(public_pool(&p, true), 1001);
    for (offset, more) in [(0, true), (8, false), (8, true)] {
        let f = with_ext(&syn6, &[(44, frag(offset, more))]);
        expect_drop(&p, &[], &on_external(&p, &f), DropReason::Fragment);
    }
    // IPv4 with MF set or an offset, checksum refilled so only the fragment is wrong.
    let syn4 = syn_to(public_pool(&p, false), 1001);
    for flags_off in [0x2000u16, 0x0001, 0x4001] {
        let mut ip = syn4.clone();
        ip[6..8].copy_from_slice(&flags_off.to_be_bytes());
        let mut view = nvlb::wire::ipv4::Packet::new_unchecked(&mut ip[..]);
        view.fill_checksum();
        expect_drop(&p, &[], &on_external(&p, &ip), DropReason::Fragment);
    }
}

#[test]
fn protocols_the_lb_does_not_balance() {
    let p = policy();
    let pool = public_pool(&p, false);
    for proto in [132u8, ip_proto::ESP, 253] {
        let ip = craft::ip_with_payload(client(false), pool.address, 64, proto, &mut [0u8; 16]);
        expect_drop(
            &p,
            &[],
            &on_external(&p, &ip),
            DropReason::UnsupportedProtocol,
        );
    }
    // UDP to a TCP-only VIP: a VIP, but no pool for it.
    let t = Transport::Udp {
        src_port: 1000,
        dst_port: pool.port,
    };
    let ip = craft::ip_packet(client(false), pool.address, 64, t, b"x");
    expect_drop(&p, &[], &on_external(&p, &ip), DropReason::UnknownVip);
}

#[test]
fn gre_and_vsid_mistakes() {
    let p = policy();
    let subnet = &p.subnets()[0];
    let rec = p
        .lookups()
        .iter()
        .find(|r| r.vsid == subnet.vsid && r.ca.is_ipv4())
        .unwrap();
    let host = usize::from(rec.host);
    let t = Transport::Tcp {
        src_port: 1000,
        dst_port: 80,
        flags: tcp::flags::SYN,
        seq: 1,
        ack: 0,
    };
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let inner = craft::ip_frame(
        rec.mac,
        subnet.lb_mac,
        &craft::ip_packet(rec.ca, vip, 64, t, b"x"),
    );
    let good = from_host(&p, host, subnet.vsid.get(), &inner);
    // Offset of the GRE header: 14 (Ethernet) + 20 (IPv4).
    let gre = 34;
    let with_flags = |word: u16| {
        let mut f = good.clone();
        f[gre..gre + 2].copy_from_slice(&word.to_be_bytes());
        f
    };
    for (word, why) in [
        (0xA000u16, "C bit (the key then reads as the checksum)"),
        (0x3000, "S bit"),
        (0xB000, "C and S bits together"),
        (0x0000, "no key"),
        (0x2001, "version 1"),
        (0x2800, "RFC 1701 strict source route"),
    ] {
        let f = with_flags(word);
        eprintln!("GRE flags {word:#06x}: {why}");
        expect_drop(&p, &[], &f, DropReason::GreFlags);
    }
    let mut not_teb = good.clone();
    not_teb[gre + 2..gre + 4].copy_from_slice(&ethernet::ethertype::IPV4.to_be_bytes());
    expect_drop(&p, &[], &not_teb, DropReason::GreProtocol);
    for vsid in [0u32, 1, 0xFFF, 0xFF_FFFF] {
        let f = from_host(&p, host, vsid, &inner);
        expect_drop(&p, &[], &f, DropReason::ReservedVsid);
    }
    expect_drop(
        &p,
        &[],
        &from_host(&p, host, 0x77_7777, &inner),
        DropReason::UnknownVsid,
    );
    // Outer source not a declared PA.
    let mut stranger = good.clone();
    stranger[26..30].copy_from_slice(&[192, 168, 6, 99]);
    let mut view = nvlb::wire::ipv4::Packet::new_unchecked(&mut stranger[14..34]);
    view.fill_checksum();
    expect_drop(&p, &[], &stranger, DropReason::UnknownPa);
    // Inner 802.1Q tag.
    let mut tagged = inner[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    tagged.extend_from_slice(&inner[12..]);
    expect_drop(
        &p,
        &[],
        &from_host(&p, host, subnet.vsid.get(), &tagged),
        DropReason::InnerVlan,
    );
    // Outer 802.1Q tag on the provider port.
    let mut outer_tag = good[..12].to_vec();
    outer_tag.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
    outer_tag.extend_from_slice(&good[12..]);
    expect_drop(&p, &[], &outer_tag, DropReason::VlanTagged);
    // The inner frame cut inside its Ethernet header.
    let short = from_host(&p, host, subnet.vsid.get(), &inner[..10]);
    expect_drop(&p, &[], &short, DropReason::MalformedInner);
}

/// An ICMP error (type 3 code 4) from `src` to `dst` quoting `quoted`.
fn frag_needed(src: IpAddr, dst: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; 8 + quoted.len()];
    m[0] = icmpv4::msg_type::DST_UNREACHABLE;
    m[1] = icmpv4::FRAG_NEEDED;
    m[6..8].copy_from_slice(&1400u16.to_be_bytes());
    m[8..].copy_from_slice(quoted);
    icmpv4::Packet::new_unchecked(&mut m[..]).fill_checksum();
    craft::ip_with_payload(src, dst, 64, ip_proto::ICMP, &mut m)
}

#[test]
fn icmp_errors_quoting_garbage_or_no_flow() {
    let p = policy();
    let pool = public_pool(&p, false);
    let router: IpAddr = "203.0.113.1".parse().unwrap();
    // Garbage quote: too short, wrong version, random bytes.
    for quote in [vec![0x45u8, 0, 0], vec![0x60; 28], vec![0xAB; 28]] {
        let f = on_external(&p, &frag_needed(router, pool.address, &quote));
        let mut e = Engine::new(p.clone(), 0, 1);
        let mut out = vec![0u8; output_len(f.len())];
        let v = e.process(SEC, &f, &mut out);
        assert_eq!(v, Verdict::Drop(DropReason::MalformedIcmp), "{quote:02x?}");
        assert_eq!(e.shard().len(), 0);
    }
    // A well-formed quote of a packet the LB never sent (no binding).
    let never = {
        let t = Transport::Tcp {
            src_port: pool.port,
            dst_port: 4242,
            flags: tcp::flags::SYN | tcp::flags::ACK,
            seq: 1,
            ack: 2,
        };
        craft::ip_packet(pool.address, client(false), 64, t, b"")
    };
    let f = on_external(&p, &frag_needed(router, pool.address, &never[..28]));
    expect_drop(&p, &[], &f, DropReason::IcmpNoFlow);
}

/// Tenants share CAs: an ICMP error sent by another tenant's VM with the same CA as a
/// blue DIP, quoting exactly the packet the LB sent that DIP, must not reach blue's
/// client.
#[test]
fn an_icmp_error_quoting_another_tenants_flow_is_not_translated() {
    let p = policy();
    let pool = public_pool(&p, false);
    // Find a client port whose flow Maglev gives to a DIP whose CA the other tenant
    // also uses (the example gives red two of blue's CAs).
    let mut out = vec![0u8; 4096];
    let (mut e, sent, matched, other) = (5555u16..5755)
        .find_map(|sport| {
            let syn = on_external(&p, &syn_to(pool, sport));
            let mut e = Engine::new(p.clone(), 0, 1);
            let Verdict::Forward { len, matched, .. } = e.process(SEC, &syn, &mut out) else {
                panic!("the SYN must be forwarded");
            };
            let sent = out[..len].to_vec();
            let fr = nvlb_fuzz::decode::frame(&sent, nvlb_fuzz::decode::Strict::Exact).ok()?;
            let dip_ca = fr.ip?.dst;
            let other = *p.lookups().iter().find(|r| {
                r.ca == dip_ca && p.subnet(r.vsid).is_some_and(|s| s.tenant != matched.tenant)
            })?;
            Some((e, sent, matched, other))
        })
        .expect("some flow lands on a CA both tenants use");
    let fr = nvlb_fuzz::decode::frame(&sent, nvlb_fuzz::decode::Strict::Exact).unwrap();
    let t = fr.tunnel.unwrap();
    // What the DIP received: the inner IP packet; an error quotes its first 28 bytes.
    let inner_ip_at = sent.len() - fr.ip.unwrap().len;
    let quoted = &sent[inner_ip_at..inner_ip_at + 28];
    let dip_ca = fr.ip.unwrap().dst;
    let _ = matched;
    let subnet = p.subnet(other.vsid).unwrap();
    let err = frag_needed(dip_ca, client(false), quoted);
    let inner = craft::ip_frame(other.mac, subnet.lb_mac, &err);
    let frame = from_host(&p, usize::from(other.host), other.vsid.get(), &inner);
    let before = e.counters().clone();
    let flows = e.shard().len();
    let v = e.process(SEC, &frame, &mut out);
    assert_eq!(
        v,
        Verdict::Drop(DropReason::IcmpNoFlow),
        "another tenant's ICMP error"
    );
    assert_eq!(e.shard().len(), flows);
    assert_eq!(e.counters().forwarded, before.forwarded);
    // The same error from the blue DIP's own VSID and host is translated to the client.
    let blue = p
        .lookup(nvlb::policy::Vsid::new(t.vsid).unwrap(), dip_ca)
        .unwrap();
    let inner = craft::ip_frame(blue.mac, p.subnet(blue.vsid).unwrap().lb_mac, &err);
    let frame = from_host(&p, usize::from(blue.host), t.vsid, &inner);
    let v = e.process(SEC, &frame, &mut out);
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
}

/// A new flow's first packet that does not fit the PA network (MTU less NVGRE's 42
/// bytes): with DF clear it is dropped (the LB does not fragment), with DF set it is
/// answered with frag-needed; either way no binding is left behind for a packet that
/// was never forwarded.
#[test]
fn too_big_for_the_pa_network() {
    let p = policy();
    let pool = public_pool(&p, false);
    let room = usize::from(p.balancer().provider.mtu) - 42;
    let t = Transport::Tcp {
        src_port: 7000,
        dst_port: pool.port,
        flags: tcp::flags::SYN,
        seq: 1,
        ack: 0,
    };
    let payload = vec![0x5Au8; room + 1 - 40];
    let mut ip = craft::ip_packet(client(false), pool.address, 64, t, &payload);
    assert_eq!(ip.len(), room + 1);
    // DF clear.
    ip[6] &= !0x40;
    nvlb::wire::ipv4::Packet::new_unchecked(&mut ip[..]).fill_checksum();
    expect_drop(&p, &[], &on_external(&p, &ip), DropReason::TooBigNoDf);
    // DF set: answered, still no binding.
    ip[6] |= 0x40;
    nvlb::wire::ipv4::Packet::new_unchecked(&mut ip[..]).fill_checksum();
    let frame = on_external(&p, &ip);
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; output_len(frame.len())];
    let v = e.process(SEC, &frame, &mut out);
    let Verdict::Reply { egress, len } = v else {
        panic!("expected frag-needed, got {v:?}");
    };
    check::output(&p, &frame, &out[..len], Emitted::Reply { egress }).unwrap();
    assert_eq!(e.shard().len(), 0, "a binding for a packet never forwarded");
}

/// Spoofed PAs: a declared host sending for a CA that policy places on another host,
/// both as a new flow to a CA VIP (a VM of another host as client) and as a DIP's reply
/// to an established public-VIP flow (from a host that is not the DIP's).
#[test]
fn spoofed_pas_for_new_flows_and_replies() {
    let p = policy();
    let subnet = &p.subnets()[0];
    let rec = p
        .lookups()
        .iter()
        .find(|r| r.vsid == subnet.vsid && r.ca.is_ipv4())
        .unwrap();
    let other_host = (0..p.hosts().len())
        .find(|&h| h != usize::from(rec.host) && p.hosts()[h].pa_v4.is_some())
        .unwrap();
    let t = Transport::Tcp {
        src_port: 1000,
        dst_port: 8080,
        flags: tcp::flags::SYN,
        seq: 1,
        ack: 0,
    };
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let inner = craft::ip_frame(
        rec.mac,
        subnet.lb_mac,
        &craft::ip_packet(rec.ca, vip, 64, t, b"x"),
    );
    // From its own host the flow is forwarded; from another declared host it is not.
    expect_forward(
        &p,
        &from_host(&p, usize::from(rec.host), subnet.vsid.get(), &inner),
    );
    let spoofed = from_host(&p, other_host, subnet.vsid.get(), &inner);
    expect_drop(&p, &[], &spoofed, DropReason::SpoofedPa);

    // A public-VIP flow to some DIP; its SYN-ACK from a host that is not the DIP's.
    let pool = public_pool(&p, false);
    let syn = on_external(&p, &syn_to(pool, 4242));
    let mut e = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; 4096];
    let Verdict::Forward { len, .. } = e.process(SEC, &syn, &mut out) else {
        panic!("the SYN must be forwarded");
    };
    let sent = out[..len].to_vec();
    let fr = nvlb_fuzz::decode::frame(&sent, nvlb_fuzz::decode::Strict::Exact).unwrap();
    let tun = fr.tunnel.unwrap();
    let dip_ca = fr.ip.unwrap().dst;
    let dip = p
        .lookup(nvlb::policy::Vsid::new(tun.vsid).unwrap(), dip_ca)
        .unwrap();
    let reply = craft::ip_packet(
        dip_ca,
        client(false),
        64,
        Transport::Tcp {
            src_port: pool.dips.iter().find(|d| d.ca == dip_ca).unwrap().port,
            dst_port: 4242,
            flags: tcp::flags::SYN | tcp::flags::ACK,
            seq: 9,
            ack: 2,
        },
        b"",
    );
    let inner = craft::ip_frame(dip.mac, p.subnet(dip.vsid).unwrap().lb_mac, &reply);
    let wrong = (0..p.hosts().len())
        .find(|&h| h != usize::from(dip.host) && p.hosts()[h].pa_v4.is_some())
        .unwrap();
    expect_drop(
        &p,
        std::slice::from_ref(&syn),
        &from_host(&p, wrong, tun.vsid, &inner),
        DropReason::SpoofedPa,
    );
    // The same reply from the DIP's own host is translated back to the client.
    let v = e.process(
        SEC,
        &from_host(&p, usize::from(dip.host), tun.vsid, &inner),
        &mut out,
    );
    assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
}
