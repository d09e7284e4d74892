//! Outbound source NAT and floating-IP (direct server return) on the engine: the
//! example policy with an outbound rule for Red's web VMs and a floating-IP VIP.

use super::*;

const INTERNET: &str = "192.0.2.100";
const OUT_ADDR: &str = "203.0.113.40";

/// The example with host2 given a PA-side gateway, a floating-IP VIP on Red's
/// 10.0.0.5 and an outbound rule for red-web's DIPs (blocks of 4 ports).
pub(super) fn outbound_text() -> String {
    let mut t = example_text().replace(
        "mac = \"02:00:00:00:06:12\"\n",
        "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
    );
    t.push_str(include_str!("outbound.toml"));
    t
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Red's VM `ca` (VSID 6001) opens a connection from `sport` to the Internet, as its
/// host `host` sends it.
fn vm_to_internet(p: &Snapshot, host: &str, ca: &str, sport: u16, flags: u8) -> Vec<u8> {
    vm_to(p, host, ca, sport, 8000, flags)
}

fn vm_to(p: &Snapshot, host: &str, ca: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let rec = record(p, 6001, ca);
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: dport,
        flags,
        seq: 1,
        ack: 0,
    };
    let pkt = craft::ip_packet(rec.ca, ip(INTERNET), 64, t, b"GET");
    from_host(p, host, 6001, rec.mac, &pkt)
}

/// The Internet server's answer to (`dst`, `dport`), as the gateway hands it to the LB.
fn internet_reply(p: &Snapshot, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    internet_reply_from(p, 8000, dst, dport, flags)
}

fn internet_reply_from(p: &Snapshot, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> Vec<u8> {
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: dport,
        flags,
        seq: 5,
        ack: 2,
    };
    craft::ip_frame(
        p.balancer().external.gateway_mac.unwrap(),
        p.balancer().external.mac,
        &craft::ip_packet(ip(INTERNET), dst, 64, t, b"200 OK"),
    )
}

#[test]
fn outbound_translation_both_ways() {
    let p = policy_from(&outbound_text());
    let mut rig = Rig::new(&p);
    let rec = *record(&p, 6001, "10.0.0.5");
    let (m, o) = rig.forward(SEC, &vm_to_internet(&p, "host2", "10.0.0.5", 40000, SYN));
    assert!(o.tunnel.is_none(), "plain IP to the Internet");
    assert_eq!(o.eth_dst, p.balancer().external.gateway_mac.unwrap());
    assert_eq!(o.src, ip(OUT_ADDR), "source is the outbound address");
    assert!(
        (1024..=1027).contains(&o.sport),
        "first source's block: {}",
        o.sport
    );
    assert_eq!((o.dst, o.dport), (ip(INTERNET), 8000), "destination kept");
    assert_eq!(o.ttl, 63);
    assert!(o.l4_ok, "TCP checksum after source NAT");
    assert_eq!(
        m.tenant,
        p.tenants().iter().position(|t| t.name == "red").unwrap() as u16
    );

    let (_, r) = rig.forward(2 * SEC, &internet_reply(&p, o.src, o.sport, SYN_ACK));
    let (_, pa, vsid, _) = r.tunnel.expect("NVGRE back to the VM");
    assert_eq!(vsid, 6001);
    assert_eq!(
        pa,
        IpAddr::V4(p.host(rec.host).pa_v4.unwrap()),
        "to the VM's host"
    );
    assert_eq!(r.eth_dst, p.host(rec.host).mac);
    assert_eq!((r.src, r.sport), (ip(INTERNET), 8000));
    assert_eq!(
        (r.dst, r.dport),
        (rec.ca, 40000),
        "back to the VM's CA and port"
    );
    assert!(r.l4_ok);
    assert_eq!(rig.engine.counters().new_flows, 1);
    assert_eq!(
        rig.engine.shard().flow(0).state,
        crate::flow::State::SynReceived,
        "established only by the VM's ACK"
    );
    // The same connection keeps its port.
    let (_, again) = rig.forward(
        3 * SEC,
        &vm_to_internet(&p, "host2", "10.0.0.5", 40000, ACK),
    );
    assert_eq!(again.sport, o.sport);
    assert_eq!(rig.engine.counters().new_flows, 1);
}

#[test]
fn each_source_gets_its_own_block_and_exhaustion_is_counted() {
    let p = policy_from(&outbound_text());
    let rule = &p.outbound_rules()[0];
    assert_eq!(rule.sources.len(), 2, "red-web's two DIPs");
    assert_eq!(
        (rule.sources[0].first_port, rule.sources[0].last_port),
        (1024, 1027)
    );
    assert_eq!(
        (rule.sources[1].first_port, rule.sources[1].last_port),
        (1028, 1031)
    );
    let mut rig = Rig::new(&p);
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let (_, o) = rig.forward(
            SEC,
            &vm_to_internet(&p, "host2", "10.0.0.5", 40000 + i, SYN),
        );
        assert!((1024..=1027).contains(&o.sport));
        assert!(seen.insert(o.sport), "port {} handed out twice", o.sport);
    }
    assert_eq!(
        rig.run(SEC, &vm_to_internet(&p, "host2", "10.0.0.5", 40010, SYN)),
        Verdict::Drop(DropReason::OutboundPortsExhausted)
    );
    assert_eq!(
        rig.engine
            .counters()
            .dropped(DropReason::OutboundPortsExhausted),
        1
    );
    // The other VM's block is untouched by the first one's exhaustion.
    let (_, o) = rig.forward(SEC, &vm_to_internet(&p, "host3", "10.0.0.6", 40000, SYN));
    assert!((1028..=1031).contains(&o.sport), "{}", o.sport);
    assert_eq!(rig.engine.counters().new_flows, 5);
}

#[test]
fn a_spoofed_or_unlisted_source_is_refused() {
    let p = policy_from(&outbound_text());
    let mut rig = Rig::new(&p);
    // 10.0.0.5 lives on host2; host3 may not send for it.
    assert_eq!(
        rig.run(SEC, &vm_to_internet(&p, "host3", "10.0.0.5", 40000, SYN)),
        Verdict::Drop(DropReason::SpoofedPa)
    );
    // Red's tier-2 VM is in no outbound rule: still dropped as before.
    let rec = record(&p, 6002, "10.0.1.21");
    let t = Transport::Tcp {
        src_port: 40000,
        dst_port: 8000,
        flags: SYN,
        seq: 1,
        ack: 0,
    };
    let pkt = craft::ip_packet(rec.ca, ip(INTERNET), 64, t, &[]);
    assert_eq!(
        rig.run(SEC, &from_host(&p, "host5", 6002, rec.mac, &pkt)),
        Verdict::Drop(DropReason::NoFlow)
    );
    // An Internet packet to the outbound address creates nothing.
    assert_eq!(
        rig.run(SEC, &internet_reply(&p, ip(OUT_ADDR), 1025, SYN)),
        Verdict::Drop(DropReason::NoFlow)
    );
    assert_eq!(rig.engine.counters().new_flows, 0);
    assert!(rig.engine.shard().is_empty());
}

#[test]
fn a_dips_reply_to_a_vip_client_is_not_source_natted() {
    let p = policy_from(&outbound_text());
    let vip = pool(&p, "red-web");
    let mut rig = Rig::new(&p);
    let c = client(false, 3);
    let (_, o) = rig.forward(SEC, &from_internet(&p, c, 41000, vip, SYN, 64));
    let (_, r) = rig.forward(2 * SEC, &answer(&p, &o, SYN_ACK));
    assert_eq!(
        (r.src, r.sport),
        (vip.address, vip.port),
        "DIP -> VIP, not the outbound address"
    );
    assert_eq!((r.dst, r.dport), (c, 41000));
}

#[test]
fn idle_outbound_flows_are_forgotten() {
    let p = policy_from(&outbound_text());
    let mut rig = Rig::new(&p);
    let (_, o) = rig.forward(SEC, &vm_to_internet(&p, "host2", "10.0.0.5", 40000, SYN));
    rig.forward(2 * SEC, &internet_reply(&p, o.src, o.sport, SYN_ACK));
    // idle_timeout = 60s, shorter than the established timeout (300 s).
    assert_eq!(
        rig.run(63 * SEC, &internet_reply(&p, o.src, o.sport, ACK)),
        Verdict::Drop(DropReason::NoFlow)
    );
    assert!(
        rig.engine.shard().is_empty(),
        "the binding is gone, its port free"
    );

    // A sweep forgets an established outbound flow at the rule's 60 s as well, not at
    // the established timeout (300 s), so that a quiet VM does not keep its port.
    let (_, o) = rig.forward(
        100 * SEC,
        &vm_to_internet(&p, "host2", "10.0.0.5", 40001, SYN),
    );
    rig.forward(100 * SEC, &internet_reply(&p, o.src, o.sport, SYN_ACK));
    rig.forward(
        101 * SEC,
        &vm_to_internet(&p, "host2", "10.0.0.5", 40001, ACK),
    );
    assert_eq!(rig.engine.expire(160 * SEC, 100), 0, "59 s idle");
    assert_eq!(rig.engine.expire(162 * SEC, 100), 1, "61 s idle");
    assert!(rig.engine.shard().is_empty());
}

#[test]
fn outbound_flows_reach_their_worker_and_survive_a_reload() {
    let p = policy_from(&outbound_text());
    let mut engines: Vec<Engine> = (0..2).map(|w| Engine::new(p.clone(), w, 2)).collect();
    let mut out = vec![0u8; 4096];
    let mut owners = [0usize; 2];
    // Each connection to another server port: the destination endpoint picks the owner.
    for i in 0..8u16 {
        let frame = vm_to(&p, "host2", "10.0.0.5", 40000 + i, 8000 + i, SYN);
        let (owner, len) = run_on_owner(&mut engines, &frame, &mut out);
        owners[owner] += 1;
        let o = decode(&out[..len]);
        assert_eq!(
            usize::from(o.sport) % 2,
            owner,
            "the port says which worker owns the flow"
        );
        // The reply, given first to the other worker, is handed to the owner.
        let reply = internet_reply_from(&p, 8000 + i, o.src, o.sport, SYN_ACK);
        let other = 1 - owner;
        assert_eq!(
            engines[other].process(2 * SEC, &reply, &mut out),
            Verdict::Handoff {
                worker: owner as u16
            }
        );
        match engines[owner].process(2 * SEC, &reply, &mut out) {
            Verdict::Forward { len, .. } => {
                let r = decode(&out[..len]);
                assert_eq!((r.dst, r.dport), (ip("10.0.0.5"), 40000 + i));
            }
            v => panic!("reply not translated: {v:?}"),
        }
    }
    // A reload that renames nothing keeps every outbound binding.
    let reloaded = policy_from(&outbound_text());
    for e in &mut engines {
        assert_eq!(e.set_policy(reloaded.clone()), 0, "no binding forgotten");
    }
    assert!(
        owners[0] > 0 && owners[1] > 0,
        "both workers own flows: {owners:?}"
    );
    let total: usize = engines.iter().map(|e| e.shard().len()).sum();
    assert_eq!(total, 8);
}

/// Gives `frame` to worker 0, follows a handoff once; (owner, output length).
fn run_on_owner(engines: &mut [Engine], frame: &[u8], out: &mut [u8]) -> (usize, usize) {
    match engines[0].process(SEC, frame, out) {
        Verdict::Forward { len, .. } => (0, len),
        Verdict::Handoff { worker } => {
            match engines[usize::from(worker)].process(SEC, frame, out) {
                Verdict::Forward { len, .. } => (usize::from(worker), len),
                v => panic!("owner did not forward: {v:?}"),
            }
        }
        v => panic!("unexpected {v:?}"),
    }
}

#[test]
fn a_floating_ip_vip_keeps_its_destination() {
    let p = policy_from(&outbound_text());
    let vip = pool(&p, "red-dsr");
    assert!(vip.floating_ip);
    let mut rig = Rig::new(&p);
    let c = client(false, 9);
    let (m, o) = rig.forward(SEC, &from_internet(&p, c, 42000, vip, SYN, 64));
    let dip = &vip.dips[usize::from(m.dip)];
    let (_, pa, vsid, _) = o.tunnel.expect("NVGRE to the DIP's host");
    assert_eq!(pa, IpAddr::V4(p.host(dip.host).pa_v4.unwrap()));
    assert_eq!(vsid, 6001);
    assert_eq!(
        (o.dst, o.dport),
        (vip.address, 80),
        "the VIP stays the destination"
    );
    assert_eq!((o.src, o.sport), (c, 42000));
    assert_eq!(o.ttl, 63);
    assert!(o.l4_ok);
    // The same client to the non-floating VIP on the same DIP is rewritten as before.
    let web = pool(&p, "red-web");
    let (_, w) = rig.forward(SEC, &from_internet(&p, c, 42001, web, SYN, 64));
    assert_ne!(w.dst, web.address);
}

#[test]
fn a_floating_ip_flow_is_established_by_the_clients_ack() {
    let p = policy_from(&outbound_text());
    let vip = pool(&p, "red-dsr");
    let mut rig = Rig::new(&p);
    let c = client(false, 10);
    rig.forward(SEC, &from_internet(&p, c, 43000, vip, SYN, 64));
    assert_eq!(
        rig.engine.shard().flow(0).state,
        crate::flow::State::SynSent
    );
    rig.forward(2 * SEC, &from_internet(&p, c, 43000, vip, ACK, 64));
    assert_eq!(
        rig.engine.shard().flow(0).state,
        crate::flow::State::Established,
        "the SYN-ACK bypassed the LB; the client's ACK stands for it"
    );
    // 100 s later (beyond tcp_syn_timeout) the flow is still the same one.
    rig.forward(100 * SEC, &from_internet(&p, c, 43000, vip, ACK, 64));
    assert_eq!(rig.engine.counters().new_flows, 1);
    // An ordinary VIP's flow is not established by the client alone.
    let web = pool(&p, "red-web");
    rig.forward(SEC, &from_internet(&p, c, 43001, web, SYN, 64));
    rig.forward(2 * SEC, &from_internet(&p, c, 43001, web, ACK, 64));
    let states: Vec<_> = (0..rig.engine.shard().slots() as u32)
        .filter_map(|i| rig.engine.shard().live(i))
        .filter(|f| f.forward.client_port == 43001)
        .map(|f| f.state)
        .collect();
    assert_eq!(states, vec![crate::flow::State::SynSent]);
}

#[test]
fn outbound_over_ipv6() {
    let p = policy_from(&outbound_text());
    let mut rig = Rig::new(&p);
    let rec = *record(&p, 6001, "fd00:0:0:1::5");
    let server: IpAddr = ip("2001:db8:c::100");
    let t = Transport::Tcp {
        src_port: 40000,
        dst_port: 443,
        flags: SYN,
        seq: 1,
        ack: 0,
    };
    let pkt = craft::ip_packet(rec.ca, server, 64, t, b"hi");
    let (_, o) = rig.forward(SEC, &from_host(&p, "host2", 6001, rec.mac, &pkt));
    assert!(o.tunnel.is_none());
    assert_eq!(o.src, ip("2001:db8:203::40"));
    assert!((1024..=1027).contains(&o.sport));
    assert!(o.l4_ok);
    let t = Transport::Tcp {
        src_port: 443,
        dst_port: o.sport,
        flags: SYN_ACK,
        seq: 5,
        ack: 2,
    };
    let reply = craft::ip_frame(
        p.balancer().external.gateway_mac.unwrap(),
        p.balancer().external.mac,
        &craft::ip_packet(server, o.src, 64, t, b"ok"),
    );
    let (_, r) = rig.forward(2 * SEC, &reply);
    assert_eq!(r.tunnel.unwrap().2, 6001);
    assert_eq!((r.dst, r.dport), (rec.ca, 40000));
    assert!(r.l4_ok);
}

#[test]
fn a_frag_needed_about_an_outbound_packet_reaches_the_vm() {
    let p = policy_from(&outbound_text());
    let mut rig = Rig::new(&p);
    let rec = *record(&p, 6001, "10.0.0.5");
    let (_, o) = rig.forward(SEC, &vm_to_internet(&p, "host2", "10.0.0.5", 40000, SYN));
    // A router on the way says the packet (as the LB sent it) was too big.
    let t = Transport::Tcp {
        src_port: o.sport,
        dst_port: 8000,
        flags: SYN,
        seq: 1,
        ack: 0,
    };
    let quoted = craft::ip_packet(o.src, o.dst, 60, t, &[]);
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0x00];
    icmp.extend_from_slice(&quoted[..28]);
    let ck = crate::wire::checksum::data(&icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    let router = ip("192.0.2.1");
    let pkt = craft::ip_with_payload(router, o.src, 64, ip_proto::ICMP, &mut icmp);
    let frame = craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, &pkt);
    let (_, e) = rig.forward(2 * SEC, &frame);
    let (_, pa, vsid, _) = e.tunnel.expect("NVGRE to the VM's host");
    assert_eq!(
        (pa, vsid),
        (IpAddr::V4(p.host(rec.host).pa_v4.unwrap()), 6001)
    );
    assert_eq!((e.src, e.dst, e.proto), (router, rec.ca, ip_proto::ICMP));
    let Verdict::Forward { len, .. } = rig.run(2 * SEC, &frame) else {
        panic!()
    };
    // The quoted packet reads VM CA:port -> server, as the VM sent it.
    let q = &rig.out[len - 28..len];
    assert_eq!(&q[12..16], &[10, 0, 0, 5]);
    assert_eq!(u16::from_be_bytes([q[20], q[21]]), 40000);
    assert!(
        crate::wire::ipv4::Packet::new_quoted(q)
            .unwrap()
            .verify_checksum()
    );
    let icmp_at = len - 28 - 8;
    assert_eq!(
        crate::wire::checksum::data(&rig.out[icmp_at..len]),
        0,
        "ICMP checksum after translation"
    );
    // An error quoting a port of no binding is counted, not passed on.
    let mut other = icmp.clone();
    other[8 + 20..8 + 22].copy_from_slice(&1031u16.to_be_bytes());
    let ck_at = 2..4;
    other[ck_at.clone()].copy_from_slice(&[0, 0]);
    let ck = crate::wire::checksum::data(&other);
    other[ck_at].copy_from_slice(&ck.to_be_bytes());
    let pkt = craft::ip_with_payload(router, o.src, 64, ip_proto::ICMP, &mut other);
    assert_eq!(
        rig.run(
            3 * SEC,
            &craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, &pkt)
        ),
        Verdict::Drop(DropReason::IcmpNoFlow)
    );
}

/// Found by tests/lab_outbound.rs (one request of 40 timed out): the client's kernel
/// reused a source port for the floating-IP VIP that it had just used for the ordinary
/// VIP on the same DIP. The DIP sees two connections (to the VIP, to its CA), but both
/// bindings were keyed by the DIP's CA on the return side, so the second SYN and its
/// retransmissions were dropped as a flow conflict.
#[test]
fn one_client_port_to_a_floating_and_an_ordinary_vip_on_one_dip() {
    let p = policy_from(&outbound_text());
    let (dsr, web) = (pool(&p, "red-dsr"), pool(&p, "red-web"));
    let c = client(false, 11);
    let shared = dsr.dips[0].ca;
    // A port for which the ordinary VIP picks the floating VIP's DIP too.
    let port = (44000..44200)
        .find(|&sp| {
            let mut rig = Rig::new(&p);
            let (m, _) = rig.forward(SEC, &from_internet(&p, c, sp, web, SYN, 64));
            web.dips[usize::from(m.dip)].ca == shared
        })
        .expect("a port whose flow lands on the shared DIP");
    for first_dsr in [true, false] {
        let mut rig = Rig::new(&p);
        let order = if first_dsr { [dsr, web] } else { [web, dsr] };
        for vip in order {
            let v = rig.run(SEC, &from_internet(&p, c, port, vip, SYN, 64));
            assert!(
                matches!(v, Verdict::Forward { .. }),
                "{} after {}: {v:?}",
                vip.name,
                if first_dsr { "red-dsr" } else { "red-web" }
            );
        }
        assert_eq!(rig.engine.shard().len(), 2);
    }
}
