//! Engine tests of the rules tenants know from cloud load balancers: all-ports rules,
//! inbound NAT, ICMP echo per VIP address, per-rule idle timeouts and the resets sent
//! when a `tcp_reset` rule's flow times out idle.

use super::*;
use crate::flow::State;

/// Blue's extra rules, put before Red's tenant table so that they are Blue's.
const RULES: &str = include_str!("rules.toml");

pub(super) fn rules_policy() -> Arc<Snapshot> {
    let red = "[[tenant]]\nname = \"red\"";
    policy_from(&example_text().replacen(red, &format!("{RULES}\n{red}"), 1))
}

/// A TCP packet from an Internet client to `vip:port`.
#[allow(clippy::too_many_arguments)]
pub(super) fn tcp_in(
    p: &Snapshot,
    c: IpAddr,
    sport: u16,
    vip: IpAddr,
    port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: port,
        flags,
        seq,
        ack,
    };
    craft::ip_frame(
        CLIENT_MAC,
        p.balancer().external.mac,
        &craft::ip_packet(c, vip, 64, t, b""),
    )
}

pub(super) fn udp_in(p: &Snapshot, c: IpAddr, sport: u16, vip: IpAddr, port: u16) -> Vec<u8> {
    let t = Transport::Udp {
        src_port: sport,
        dst_port: port,
    };
    craft::ip_frame(
        CLIENT_MAC,
        p.balancer().external.mac,
        &craft::ip_packet(c, vip, 64, t, b"q"),
    )
}

/// The DIP's TCP answer to `o` with the given numbers.
fn dip_tcp(p: &Snapshot, o: &Out, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let (_, host_pa, vsid, _) = o.tunnel.unwrap();
    let host = p
        .hosts()
        .iter()
        .find(|h| h.pa_v4.map(IpAddr::V4) == Some(host_pa))
        .unwrap();
    let t = Transport::Tcp {
        src_port: o.dport,
        dst_port: o.sport,
        flags,
        seq,
        ack,
    };
    let ip = craft::ip_packet(o.dst, o.src, 64, t, b"");
    let rec = p
        .lookups()
        .iter()
        .find(|r| r.vsid.get() == vsid && r.ca == o.dst)
        .unwrap();
    from_host(p, &host.name, vsid, rec.mac, &ip)
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn name_of(p: &Snapshot, m: Matched) -> String {
    p.pools()[m.pool as usize].name.clone()
}

#[test]
fn an_all_ports_rule_serves_every_port_and_keeps_it() {
    let p = rules_policy();
    let ha = addr("203.0.113.30");
    let mut rig = Rig::new(&p);
    let c = client(false, 9);
    for (i, port) in [1u16, 22, 80, 8080, 65535].into_iter().enumerate() {
        let (m, o) = rig.forward(SEC, &tcp_in(&p, c, 41000 + i as u16, ha, port, SYN, 1, 0));
        assert_eq!(name_of(&p, m), "blue-ha");
        assert_eq!(o.dport, port, "the DIP gets the packet's own port");
        assert!(o.l4_ok);
        let (_, r) = rig.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 7, 2));
        assert_eq!(
            (r.src, r.sport, r.dst, r.dport),
            (ha, port, c, 41000 + i as u16)
        );
        assert!(r.l4_ok);
    }
    let (m, o) = rig.forward(SEC, &udp_in(&p, c, 5000, ha, 53));
    assert_eq!(
        (name_of(&p, m).as_str(), o.proto, o.dport),
        ("blue-ha", ip_proto::UDP, 53)
    );
    // A specific rule on the same address wins over the all-ports rule.
    let (m, o) = rig.forward(SEC, &tcp_in(&p, c, 42000, ha, 443, SYN, 1, 0));
    assert_eq!(name_of(&p, m), "blue-ha-web");
    assert_eq!(o.dst, addr("10.0.0.8"));
}

#[test]
fn all_ports_flows_stick_to_their_dip() {
    let p = rules_policy();
    let ha = addr("203.0.113.30");
    let mut rig = Rig::new(&p);
    let mut used = std::collections::HashSet::new();
    for i in 0..60u16 {
        let c = client(false, i);
        let port = 1000 + i * 7;
        let (m0, o0) = rig.forward(SEC, &tcp_in(&p, c, 30000 + i, ha, port, SYN, 1, 0));
        used.insert(o0.dst);
        rig.forward(SEC, &dip_tcp(&p, &o0, SYN_ACK, 7, 2));
        for k in 0..3 {
            let (m, o) = rig.forward(2 * SEC + k, &tcp_in(&p, c, 30000 + i, ha, port, ACK, 2, 8));
            assert_eq!((m, o.dst, o.dport), (m0, o0.dst, port), "flow {i} stays");
        }
    }
    assert_eq!(
        used.len(),
        3,
        "five-tuple spreads all-ports flows over the DIPs"
    );
    assert_eq!(rig.engine.counters().new_flows, 60);
    // Stickiness comes from the flow table: with the table's binding gone the same
    // flow would be balanced afresh, which the table prevents even when the pool's
    // other DIPs are drained.
    let drained = policy_from(&example_text().replacen(
        "[[tenant]]\nname = \"red\"",
        &format!(
            "{}\n[[tenant]]\nname = \"red\"",
            RULES.replace(
                "dips = [{ ca = \"10.0.0.5\" }, { ca = \"10.0.0.6\" }, { ca = \"10.0.0.7\" }]",
                "dips = [{ ca = \"10.0.0.5\" }, { ca = \"10.0.0.6\", drain = true }, { ca = \"10.0.0.7\", drain = true }]"
            )
        ),
        1,
    ));
    rig.engine.set_policy(drained);
    let p2 = rig.engine.policy().clone();
    for i in 0..60u16 {
        let c = client(false, i);
        let port = 1000 + i * 7;
        let (_, o) = rig.forward(3 * SEC, &tcp_in(&p2, c, 30000 + i, ha, port, ACK, 2, 8));
        assert_eq!(o.dport, port);
    }
    let (_, fresh) = rig.forward(
        3 * SEC,
        &tcp_in(&p2, client(false, 99), 50000, ha, 7, SYN, 1, 0),
    );
    assert_eq!(
        fresh.dst,
        addr("10.0.0.5"),
        "new flows avoid the drained DIPs"
    );
}

#[test]
fn inbound_nat_reaches_exactly_its_target() {
    let p = rules_policy();
    let vip = addr("203.0.113.10");
    let mut rig = Rig::new(&p);
    for i in 0..20u16 {
        let (m, o) = rig.forward(
            SEC,
            &tcp_in(&p, client(false, i), 40000 + i, vip, 2222, SYN, 1, 0),
        );
        assert_eq!(name_of(&p, m), "blue-ssh");
        assert_eq!((o.dst, o.dport), (addr("10.0.0.5"), 22));
        let (_, r) = rig.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 7, 2));
        assert_eq!(
            (r.src, r.sport),
            (vip, 2222),
            "answers come from the frontend port"
        );
    }
    for (port, dip) in [(2300, "10.0.0.6"), (2301, "10.0.0.7"), (2302, "10.0.0.8")] {
        let (m, o) = rig.forward(
            SEC,
            &tcp_in(&p, client(false, 1), 45000, vip, port, SYN, 1, 0),
        );
        assert_eq!(name_of(&p, m), format!("blue-ssh-range:{port}"));
        assert_eq!((o.dst, o.dport), (addr(dip), 22), "port {port}");
    }
    // Beside the NAT rules, the LB rule of the address is untouched.
    let (m, _) = rig.forward(
        SEC,
        &tcp_in(&p, client(false, 1), 45001, vip, 80, SYN, 1, 0),
    );
    assert_eq!(name_of(&p, m), "blue-web");
    assert_eq!(
        rig.run(
            SEC,
            &tcp_in(&p, client(false, 1), 45002, vip, 2303, SYN, 1, 0)
        ),
        Verdict::Drop(DropReason::UnknownVip)
    );
    // A target's reply without binding (after a restart) still leaves as the NAT port.
    let mut fresh = Rig::new(&p);
    let (_, o) = rig.forward(
        SEC,
        &tcp_in(&p, client(false, 2), 46000, vip, 2222, SYN, 1, 0),
    );
    let (_, r) = fresh.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 7, 2));
    assert_eq!((r.src, r.sport), (vip, 2222));
}

fn echo(p: &Snapshot, c: IpAddr, dst: IpAddr, ident: u16) -> Vec<u8> {
    let mut msg = vec![
        8u8,
        0,
        0,
        0,
        (ident >> 8) as u8,
        ident as u8,
        0,
        1,
        b'p',
        b'i',
        b'n',
        b'g',
    ];
    crate::wire::icmpv4::Packet::new_unchecked(&mut msg[..]).fill_checksum();
    let ip = craft::ip_with_payload(c, dst, 64, ip_proto::ICMP, &mut msg);
    craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, &ip)
}

#[test]
fn icmp_echo_is_answered_forwarded_or_dropped_as_configured() {
    let p = rules_policy();
    let mut rig = Rig::new(&p);
    let c = client(false, 4);
    // Default: the LB answers.
    match rig.run(SEC, &echo(&p, c, addr("203.0.113.10"), 1)) {
        Verdict::Reply {
            egress: Egress::External,
            len,
        } => {
            let o = decode(&rig.out[..len]);
            assert_eq!((o.src, o.dst), (addr("203.0.113.10"), c));
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(
        rig.run(SEC, &echo(&p, c, addr("203.0.113.31"), 1)),
        Verdict::Drop(DropReason::IcmpEchoDropped)
    );
    // Forward: to one DIP of the rule, and its echo reply back as from the VIP.
    let ha = addr("203.0.113.30");
    let (m, o) = rig.forward(SEC, &echo(&p, c, ha, 77));
    assert_eq!(name_of(&p, m), "blue-ha");
    assert_eq!((o.src, o.proto, o.ttl), (c, ip_proto::ICMP, 63));
    let dip = o.dst;
    assert!(["10.0.0.5", "10.0.0.6", "10.0.0.7"].contains(&dip.to_string().as_str()));
    let (_, host_pa, vsid, _) = o.tunnel.unwrap();
    let host = p
        .hosts()
        .iter()
        .find(|h| h.pa_v4.map(IpAddr::V4) == Some(host_pa))
        .unwrap();
    let rec = p
        .lookups()
        .iter()
        .find(|r| r.vsid.get() == vsid && r.ca == dip)
        .unwrap();
    let mut msg = vec![0u8, 0, 0, 0, 0, 77, 0, 1, b'p', b'i', b'n', b'g'];
    crate::wire::icmpv4::Packet::new_unchecked(&mut msg[..]).fill_checksum();
    let ip = craft::ip_with_payload(dip, c, 64, ip_proto::ICMP, &mut msg);
    let (_, r) = rig.forward(SEC, &from_host(&p, &host.name, vsid, rec.mac, &ip));
    assert!(r.tunnel.is_none());
    assert_eq!((r.src, r.dst, r.ttl), (ha, c, 63));
    // The same client's next ping (same identifier) reaches the same DIP.
    let (_, again) = rig.forward(2 * SEC, &echo(&p, c, ha, 77));
    assert_eq!(again.dst, dip);
    // An echo reply nobody asked for is not passed on.
    let stray = craft::ip_with_payload(dip, client(false, 5), 64, ip_proto::ICMP, &mut msg.clone());
    assert_eq!(
        rig.run(SEC, &from_host(&p, &host.name, vsid, rec.mac, &stray)),
        Verdict::Drop(DropReason::IcmpNotHandled)
    );
}

#[test]
fn a_rules_idle_timeout_applies_to_its_flows_only() {
    let p = rules_policy();
    let mut rig = Rig::new(&p);
    let c = client(false, 6);
    let quiet = addr("203.0.113.31");
    let (_, o) = rig.forward(SEC, &tcp_in(&p, c, 40000, quiet, 80, SYN, 1, 0));
    rig.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 7, 2));
    rig.forward(SEC, &tcp_in(&p, c, 40000, quiet, 80, ACK, 2, 8));
    let web = addr("203.0.113.10");
    let (_, w) = rig.forward(SEC, &tcp_in(&p, c, 40001, web, 80, SYN, 1, 0));
    rig.forward(SEC, &dip_tcp(&p, &w, SYN_ACK, 7, 2));
    rig.forward(SEC, &tcp_in(&p, c, 40001, web, 80, ACK, 2, 8));
    rig.forward(SEC, &udp_in(&p, c, 5353, quiet, 53));
    assert_eq!(rig.engine.shard().len(), 3);
    // 2 s idle for blue-quiet's TCP, 3 s for its UDP; blue-web keeps the 300 s default.
    assert_eq!(
        rig.engine.expire(3 * SEC, 100),
        0,
        "2 s idle is not yet over 2 s"
    );
    assert_eq!(rig.engine.expire(4 * SEC, 100), 1);
    assert_eq!(rig.engine.expire(5 * SEC, 100), 1, "the UDP flow after 3 s");
    assert_eq!(rig.engine.shard().len(), 1);
    assert_eq!(rig.engine.shard().flow(1).state, State::Established);
    assert_eq!(rig.engine.expire(300 * SEC, 100), 0);
}

/// A decoded RST: where it went and its TCP fields.
fn rst_fields(frame: &[u8]) -> (Out, u32, u32, u8) {
    let o = decode(frame);
    let eth = ethernet::Frame::new_checked(frame).unwrap();
    let mut bytes = eth.payload().to_vec();
    if o.tunnel.is_some() {
        let (.., l4) = decode_ip(eth.payload(), eth.ethertype());
        let g = gre::Packet::new_checked(l4).unwrap();
        bytes = g.payload()[ethernet::HEADER_LEN..].to_vec();
    }
    let (.., l4) = decode_ip(&bytes, ethernet::ethertype::IPV4);
    let t = tcp::Packet::new_checked(l4).unwrap();
    (o, t.seq_number(), t.ack_number(), t.flags())
}

#[test]
fn an_idle_tcp_flow_is_reset_at_both_ends_with_accepted_numbers() {
    let p = rules_policy();
    let mut rig = Rig::new(&p);
    let c = client(false, 7);
    let quiet = addr("203.0.113.31");
    // Handshake: client ISN 1000, DIP ISN 5000; then 10 bytes each way, all acked.
    let (_, o) = rig.forward(SEC, &tcp_in(&p, c, 40000, quiet, 80, SYN, 1000, 0));
    rig.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 5000, 1001));
    rig.forward(SEC, &tcp_in(&p, c, 40000, quiet, 80, ACK, 1001, 5001));
    rig.forward(SEC, &dip_tcp(&p, &o, ACK, 5001, 1011));
    rig.forward(SEC, &tcp_in(&p, c, 40000, quiet, 80, ACK, 1011, 5011));
    assert!(!rig.engine.has_resets());
    assert_eq!(rig.engine.expire(4 * SEC, 100), 1);
    assert!(rig.engine.has_resets());
    let mut frames = Vec::new();
    while let Some((egress, len)) = rig.engine.next_reset(&mut rig.out) {
        frames.push((egress, rig.out[..len].to_vec()));
    }
    assert_eq!(frames.len(), 2);
    assert!(!rig.engine.has_resets());
    let (to_client, seq, ack, flags) = rst_fields(&frames[0].1);
    assert_eq!(frames[0].0, Egress::External);
    assert!(to_client.tunnel.is_none(), "plain IP to the gateway");
    assert_eq!(
        to_client.eth_dst,
        p.balancer().external.gateway_mac.unwrap()
    );
    assert_eq!(
        (
            to_client.src,
            to_client.sport,
            to_client.dst,
            to_client.dport
        ),
        (quiet, 80, c, 40000)
    );
    assert_eq!(
        (seq, ack, flags),
        (5011, 1011, tcp::flags::RST | tcp::flags::ACK),
        "the client's RCV.NXT"
    );
    assert!(to_client.l4_ok, "TCP checksum of the client's RST");
    let (to_dip, seq, ack, flags) = rst_fields(&frames[1].1);
    assert_eq!(frames[1].0, Egress::Provider);
    let (_, pa, vsid, _) = to_dip.tunnel.unwrap();
    assert_eq!(
        (pa, vsid),
        (o.tunnel.unwrap().1, 5001),
        "NVGRE to the DIP's host"
    );
    assert_eq!(
        (to_dip.src, to_dip.sport, to_dip.dst, to_dip.dport),
        (c, 40000, addr("10.0.0.5"), 80)
    );
    assert_eq!(
        (seq, ack, flags),
        (1011, 5011, tcp::flags::RST | tcp::flags::ACK),
        "the DIP's RCV.NXT"
    );
    assert!(to_dip.l4_ok, "TCP checksum of the DIP's RST");
    // A flow of a rule without tcp_reset, or one that never completed its handshake,
    // expires silently.
    let (_, s) = rig.forward(10 * SEC, &tcp_in(&p, c, 40001, quiet, 80, SYN, 1, 0));
    let _ = s;
    assert_eq!(rig.engine.expire(60 * SEC, 100), 1);
    assert!(!rig.engine.has_resets());
    let counted = rig.engine.counters();
    assert_eq!(
        (counted.idle_resets_sent, counted.idle_resets_unsent),
        (2, 0)
    );
}

/// Establishes a flow of the tcp_reset rule blue-quiet (203.0.113.31:80) from client
/// port `sport`, with acknowledgment numbers seen both ways, at second 1.
fn quiet_flow(rig: &mut Rig, p: &Snapshot, sport: u16) {
    let c = client(false, 7);
    let quiet = addr("203.0.113.31");
    let (_, o) = rig.forward(SEC, &tcp_in(p, c, sport, quiet, 80, SYN, 1000, 0));
    rig.forward(SEC, &dip_tcp(p, &o, SYN_ACK, 5000, 1001));
    rig.forward(SEC, &tcp_in(p, c, sport, quiet, 80, ACK, 1001, 5001));
}

#[test]
fn idle_resets_that_cannot_be_sent_are_counted() {
    let p = rules_policy();
    // More expiries at once than the reset queue holds: the excess is counted, two
    // segments a flow, and the queued ones are sent.
    let mut rig = Rig::new(&p);
    let extra = 3;
    let n = crate::flow::idle::MAX_PENDING_RESETS + extra;
    for i in 0..n {
        quiet_flow(&mut rig, &p, 20000 + i as u16);
    }
    assert_eq!(rig.engine.expire(10 * SEC, usize::MAX), n);
    let mut sent = 0;
    while rig.engine.next_reset(&mut rig.out).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 2 * crate::flow::idle::MAX_PENDING_RESETS);
    let c = rig.engine.counters();
    assert_eq!(
        (c.idle_resets_sent, c.idle_resets_unsent),
        (sent as u64, 2 * extra as u64)
    );

    // A policy change while resets wait: the waiting ones are counted, not sent, also
    // the DIP's half of a flow whose client was already reset.
    let mut rig = Rig::new(&p);
    quiet_flow(&mut rig, &p, 30000);
    quiet_flow(&mut rig, &p, 30001);
    assert_eq!(rig.engine.expire(10 * SEC, 100), 2);
    assert!(
        rig.engine.next_reset(&mut rig.out).is_some(),
        "first client's RST"
    );
    rig.engine.set_policy(rules_policy());
    assert!(!rig.engine.has_resets());
    let c = rig.engine.counters();
    assert_eq!((c.idle_resets_sent, c.idle_resets_unsent), (1, 3));
}

#[test]
fn a_ca_vip_client_is_reset_through_its_host() {
    let p = rules_policy();
    let mut rig = Rig::new(&p);
    let rec = *record(&p, 5001, "10.0.0.6");
    let vip = addr("10.0.0.101");
    let pkt = |flags, seq, ack| {
        let t = Transport::Tcp {
            src_port: 33000,
            dst_port: 9000,
            flags,
            seq,
            ack,
        };
        from_host(
            &p,
            "host2",
            5001,
            rec.mac,
            &craft::ip_packet(rec.ca, vip, 64, t, b""),
        )
    };
    let (_, o) = rig.forward(SEC, &pkt(SYN, 10, 0));
    rig.forward(SEC, &dip_tcp(&p, &o, SYN_ACK, 90, 11));
    rig.forward(SEC, &pkt(ACK, 11, 91));
    assert_eq!(rig.engine.expire(5 * SEC, 100), 1);
    let (e1, l1) = rig.engine.next_reset(&mut rig.out).unwrap();
    let (to_client, seq, ack, _) = rst_fields(&rig.out[..l1]);
    assert_eq!(e1, Egress::Provider);
    let (_, pa, vsid, _) = to_client.tunnel.unwrap();
    assert_eq!(
        (pa, vsid),
        (IpAddr::V4(p.host(rec.host).pa_v4.unwrap()), 5001),
        "to the client's host"
    );
    assert_eq!(
        (
            to_client.src,
            to_client.sport,
            to_client.dst,
            to_client.dport
        ),
        (vip, 9000, rec.ca, 33000)
    );
    assert_eq!((seq, ack), (91, 11));
    assert!(to_client.l4_ok);
    let (_, l2) = rig.engine.next_reset(&mut rig.out).unwrap();
    let (to_dip, seq, ack, _) = rst_fields(&rig.out[..l2]);
    assert_eq!(to_dip.tunnel.unwrap().2, 5002);
    assert_eq!(
        (to_dip.src, to_dip.sport),
        (o.src, o.sport),
        "from the LB's SNAT CA and port"
    );
    assert_eq!((seq, ack), (11, 91));
    assert!(to_dip.l4_ok);
    assert!(rig.engine.next_reset(&mut rig.out).is_none());
}

#[test]
fn ipv6_idle_resets_and_forwarded_echoes_carry_valid_checksums() {
    use crate::wire::icmpv6;
    let p = rules_policy();
    let mut rig = Rig::new(&p);
    let c = client(true, 3);
    let vip = addr("2001:db8:203::31");
    let (m, o) = rig.forward(SEC, &tcp_in(&p, c, 40000, vip, 3306, SYN, 70, 0));
    assert_eq!((name_of(&p, m).as_str(), o.dport), ("blue-quiet6", 3306));
    let host = p
        .hosts()
        .iter()
        .find(|h| h.pa_v4.map(IpAddr::V4) == Some(o.tunnel.unwrap().1))
        .unwrap();
    let rec = *record(&p, 5001, "fd00:0:0:1::6");
    let dip = |flags, seq, ack| {
        let t = Transport::Tcp {
            src_port: 3306,
            dst_port: 40000,
            flags,
            seq,
            ack,
        };
        from_host(
            &p,
            &host.name,
            5001,
            rec.mac,
            &craft::ip_packet(rec.ca, c, 64, t, b""),
        )
    };
    rig.forward(SEC, &dip(SYN_ACK, 300, 71));
    rig.forward(SEC, &tcp_in(&p, c, 40000, vip, 3306, ACK, 71, 301));
    assert_eq!(rig.engine.expire(4 * SEC, 10), 1);
    let (_, l) = rig.engine.next_reset(&mut rig.out).unwrap();
    let eth = ethernet::Frame::new_checked(&rig.out[..l]).unwrap();
    assert_eq!(eth.ethertype(), ethernet::ethertype::IPV6);
    let o1 = decode(&rig.out[..l]);
    assert_eq!((o1.src, o1.dst, o1.sport, o1.dport), (vip, c, 3306, 40000));
    assert!(o1.l4_ok, "TCP checksum over the IPv6 pseudo header");
    let (_, l) = rig.engine.next_reset(&mut rig.out).unwrap();
    let o2 = decode(&rig.out[..l]);
    assert_eq!((o2.src, o2.dst, o2.dport), (c, rec.ca, 3306));
    assert!(o2.l4_ok);
    assert!(rig.engine.next_reset(&mut rig.out).is_none());

    // Echo forwarded to the DIP, and back: ICMPv6 checksums follow the new addresses.
    let (IpAddr::V6(c6), IpAddr::V6(vip6), IpAddr::V6(dip6)) = (c, vip, rec.ca) else {
        unreachable!()
    };
    let mut msg = vec![128u8, 0, 0, 0, 0, 9, 0, 1, b'p', b'i', b'n', b'g'];
    icmpv6::Packet::new_unchecked(&mut msg[..]).fill_checksum(&c6, &vip6);
    let ip = craft::ip_with_payload(c, vip, 64, ip_proto::ICMPV6, &mut msg);
    let (_, o) = rig.forward(
        5 * SEC,
        &craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, &ip),
    );
    assert_eq!((o.src, o.dst), (c, rec.ca));
    let checked = |frame: &[u8], src: &std::net::Ipv6Addr, dst: &std::net::Ipv6Addr| {
        let icmp = &frame[frame.len() - msg.len()..];
        icmpv6::Packet::new_checked(icmp)
            .unwrap()
            .verify_checksum(src, dst)
    };
    let Verdict::Forward { len, .. } = rig.run(
        5 * SEC,
        &craft::ip_frame(CLIENT_MAC, p.balancer().external.mac, &ip),
    ) else {
        panic!("forwarded")
    };
    assert!(
        checked(&rig.out[..len], &c6, &dip6),
        "ICMPv6 checksum towards the DIP"
    );
    let mut reply = vec![129u8, 0, 0, 0, 0, 9, 0, 1, b'p', b'i', b'n', b'g'];
    icmpv6::Packet::new_unchecked(&mut reply[..]).fill_checksum(&dip6, &c6);
    let rip = craft::ip_with_payload(rec.ca, c, 64, ip_proto::ICMPV6, &mut reply);
    let Verdict::Forward { len, .. } =
        rig.run(5 * SEC, &from_host(&p, &host.name, 5001, rec.mac, &rip))
    else {
        panic!("the reply goes back")
    };
    let r = decode(&rig.out[..len]);
    assert_eq!((r.src, r.dst), (vip, c));
    assert!(
        checked(&rig.out[..len], &vip6, &c6),
        "ICMPv6 checksum towards the client"
    );
}

/// A client port reused for another VIP on the same DIP endpoint (inbound NAT
/// 203.0.113.10:2222 and the all-ports 203.0.113.30, both reaching 10.0.0.5:22) is the
/// same 4-tuple at the DIP: the closed first connection's binding gives way to the
/// second's SYN instead of refusing it as a flow conflict for the closing timeout.
#[test]
fn a_closed_binding_gives_its_return_key_to_a_syn_for_another_vip() {
    let p = rules_policy();
    let c = addr("198.51.100.77");
    let ssh = addr("203.0.113.10");
    let ha = addr("203.0.113.30");
    let dip = addr("10.0.0.5");
    let mut out = vec![0u8; 4096];
    let mut tried = 0;
    for sport in 40_000u16..40_200 {
        let mut e = Engine::new(p.clone(), 0, 1);
        assert!(matches!(
            e.process(SEC, &tcp_in(&p, c, sport, ssh, 2222, SYN, 1, 0), &mut out),
            Verdict::Forward { .. }
        ));
        e.process(
            SEC,
            &tcp_in(&p, c, sport, ssh, 2222, tcp::flags::RST, 2, 0),
            &mut out,
        );
        let v = e.process(SEC, &tcp_in(&p, c, sport, ha, 22, SYN, 9, 0), &mut out);
        let Verdict::Forward { len, .. } = v else {
            // Only where the all-ports rule picks 10.0.0.5 do the two meet.
            assert_ne!(v, Verdict::Drop(DropReason::FlowConflict), "port {sport}");
            continue;
        };
        let o = decode(&out[..len]);
        if o.dst == dip && o.dport == 22 {
            tried += 1;
        }
    }
    assert!(tried > 0, "no client port met the first connection's DIP");
}
