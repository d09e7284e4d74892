//! The shortcut (`engine/shortcut/`): it takes the packets it is for, and on any
//! stream of frames it decides exactly as the general path does.

use super::batch::Pair;
use super::rules::{rules_policy, tcp_in, udp_in};
use super::*;

const FIN_ACK: u8 = tcp::flags::FIN | tcp::flags::ACK;

/// Sets up a flow with `first` (a SYN, or a datagram), for TCP the DIP's SYN-ACK, and
/// the client's `ack` (the handshake's end), then answers whether the shortcut decides
/// `next`, and checks that it decided it as the general path does.
fn shortcut_takes(p: &Arc<Snapshot>, first: &[u8], ack: &[u8], next: &[u8]) -> bool {
    let mut fast = Engine::new(p.clone(), 0, 1);
    let mut general = Engine::new(p.clone(), 0, 1);
    general.set_shortcut(false);
    let mut out = vec![0u8; 4096];
    let mut out2 = vec![0u8; 4096];
    for e in [&mut fast, &mut general] {
        let v = e.process(SEC, first, &mut out);
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        if let Some(reply) = craft::tunnel_reply(&out[..forwarded_len(&v)], SYN_ACK, 9, 2) {
            let v = e.process(SEC, &reply, &mut out2);
            assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
        }
        let v = e.process(SEC, ack, &mut out);
        assert!(matches!(v, Verdict::Forward { .. }), "{v:?}");
    }
    let taken = fast.shortcut(2 * SEC, next, &mut out, None);
    let want = general.process(2 * SEC, next, &mut out2);
    if let Some(v) = taken {
        assert_eq!(v, want);
        assert_eq!(out[..forwarded_len(&v)], out2[..forwarded_len(&want)]);
        assert_eq!(fast.counters(), general.counters());
    }
    taken.is_some()
}

fn forwarded_len(v: &Verdict) -> usize {
    match v {
        Verdict::Forward { len, .. } | Verdict::Reply { len, .. } => *len,
        _ => 0,
    }
}

#[test]
fn established_packets_of_every_common_shape_take_the_shortcut() {
    let p = example();
    for (name, v6) in [("blue-web", false), ("blue-web6", true)] {
        let vip = pool(&p, name);
        let c = client(v6, 3);
        let syn = from_internet(&p, c, 4000, vip, SYN, 64);
        let ack = from_internet(&p, c, 4000, vip, ACK, 64);
        for (flags, taken) in [
            (ACK, true),
            (ACK | tcp::flags::PSH, true),
            (FIN_ACK, false),
            (tcp::flags::RST, false),
            (SYN, false),
        ] {
            let next = from_internet(&p, c, 4000, vip, flags, 64);
            assert_eq!(
                shortcut_takes(&p, &syn, &ack, &next),
                taken,
                "{name} {flags:#x}"
            );
        }
        // TTL 1 is the general path's drop.
        let ttl1 = from_internet(&p, c, 4000, vip, ACK, 1);
        assert!(!shortcut_takes(&p, &syn, &ack, &ttl1), "{name} ttl 1");
    }
    // CA VIP (full NAT) from a VM, NVGRE in, NVGRE out.
    let vip1 = pool(&p, "blue-vip1");
    let syn = batch_from_vm(&p, "10.0.0.5", 5000, vip1, SYN);
    let ack = batch_from_vm(&p, "10.0.0.5", 5000, vip1, ACK);
    assert!(shortcut_takes(&p, &syn, &ack, &ack), "CA VIP");
    // The same segment from another host's PA is the general path's (SpoofedPa).
    let rec = record(&p, 5001, "10.0.0.5");
    let other = p
        .hosts()
        .iter()
        .enumerate()
        .find(|(i, _)| *i != usize::from(rec.host))
        .map(|(_, h)| h)
        .unwrap();
    let t = Transport::Tcp {
        src_port: 5000,
        dst_port: vip1.port,
        flags: ACK,
        seq: 1,
        ack: 0,
    };
    let spoofed = from_host(
        &p,
        &other.name,
        5001,
        rec.mac,
        &craft::ip_packet(rec.ca, vip1.address, 64, t, b"x"),
    );
    assert!(!shortcut_takes(&p, &syn, &ack, &spoofed), "spoofed PA");
}

#[test]
fn udp_and_reset_rules_take_the_shortcut_too() {
    let p = rules_policy();
    let quiet = pool(&p, "blue-quiet");
    let c = client(false, 5);
    let syn = tcp_in(&p, c, 4100, quiet.address, quiet.port, SYN, 1, 0);
    let ack = tcp_in(&p, c, 4100, quiet.address, quiet.port, ACK, 2, 10);
    assert!(shortcut_takes(&p, &syn, &ack, &ack), "tcp_reset rule");
    let udp = pool(&p, "blue-quiet-udp");
    let d = udp_in(&p, c, 4200, udp.address, udp.port);
    assert!(shortcut_takes(&p, &d, &d, &d), "udp");
}

/// Frames of the rules policy's pools (UDP, all-ports, `tcp_reset`, IPv6) through
/// whole connections, with the DIPs' answers.
fn rule_frames(p: &Arc<Snapshot>) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for name in [
        "blue-quiet",
        "blue-ha",
        "blue-ha-web",
        "blue-vip-reset",
        "blue-quiet6",
    ] {
        let vip = pool(p, name);
        let v6 = vip.address.is_ipv6();
        let port = if vip.port == 0 { 8080 } else { vip.port };
        for c in 0..3u16 {
            for flags in [
                SYN,
                ACK,
                ACK | tcp::flags::PSH,
                FIN_ACK,
                ACK,
                tcp::flags::RST,
                SYN,
            ] {
                if vip.frontend == crate::policy::Vsid::PUBLIC {
                    v.push(tcp_in(
                        p,
                        client(v6, c),
                        4300 + c,
                        vip.address,
                        port,
                        flags,
                        7,
                        9,
                    ));
                } else {
                    v.push(batch_from_vm(
                        p,
                        ["10.0.0.5", "10.0.0.6"][usize::from(c % 2)],
                        4300 + c,
                        vip,
                        flags,
                    ));
                }
            }
        }
    }
    let udp = pool(p, "blue-quiet-udp");
    for c in 0..3u16 {
        v.push(udp_in(p, client(false, c), 4400 + c, udp.address, udp.port));
    }
    let mut pair = Pair::new(p);
    pair.run(&v.clone(), &[64]).unwrap();
    for sent in &pair.sent {
        for flags in [SYN_ACK, ACK, FIN_ACK] {
            v.extend(craft::tunnel_reply(sent, flags, 9, 2));
        }
    }
    v
}

fn batch_from_vm(p: &Snapshot, ca: &str, sport: u16, vip: &VipPool, flags: u8) -> Vec<u8> {
    let rec = record(p, vip.frontend.get(), ca);
    let host = &p.hosts()[usize::from(rec.host)];
    let t = Transport::Tcp {
        src_port: sport,
        dst_port: if vip.port == 0 { 8080 } else { vip.port },
        flags,
        seq: 1,
        ack: 0,
    };
    from_host(
        p,
        &host.name,
        vip.frontend.get(),
        rec.mac,
        &craft::ip_packet(rec.ca, vip.address, 64, t, b"x"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// On the rules policy's pools, any stream of whole, mutated or random frames, as
    /// any worker of up to three: the shortcut (in the batch path) and the general
    /// path agree on every verdict (handoffs included), output byte and counter.
    #[test]
    fn the_shortcut_agrees_with_the_general_path_on_every_rule(
        picks in proptest::collection::vec(any::<usize>(), 64..512),
        flips in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 0..200),
        cuts in proptest::collection::vec(1usize..100, 1..8),
        worker in 0u16..3,
        workers in 1u16..4,
    ) {
        let p = rules_policy();
        let from = rule_frames(&p);
        let mut frames: Vec<Vec<u8>> = picks.iter().map(|&i| from[i % from.len()].clone()).collect();
        for (which, at, bits) in flips {
            let f = &mut frames[which % picks.len()];
            let i = at % f.len();
            f[i] ^= bits.max(1);
        }
        let mut pair = Pair::of_worker(&p, worker % workers, workers);
        pair.run(&frames, &cuts)?;
    }
}

/// Runs `frames` through a shortcut engine and a general one, both must agree on each;
/// answers which of them the shortcut took. A frame given as `None` is the DIP's ACK to
/// the first frame's output (the flow's SYN), built once the LB has sent it.
fn taken_in_order(p: &Arc<Snapshot>, frames: &[Option<Vec<u8>>]) -> Vec<bool> {
    let mut fast = Engine::new(p.clone(), 0, 1);
    let mut general = Engine::new(p.clone(), 0, 1);
    general.set_shortcut(false);
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut first_out: Option<Vec<u8>> = None;
    let mut taken = Vec::new();
    for f in frames {
        let frame = match f {
            Some(f) => f.clone(),
            None => craft::tunnel_reply(first_out.as_ref().unwrap(), ACK, 9, 2).unwrap(),
        };
        let got = fast.shortcut(2 * SEC, &frame, &mut a, None);
        let v = match got {
            Some(v) => v,
            None => fast.process(2 * SEC, &frame, &mut a),
        };
        let want = general.process(2 * SEC, &frame, &mut b);
        assert_eq!(v, want);
        assert_eq!(a[..forwarded_len(&v)], b[..forwarded_len(&want)]);
        assert_eq!(fast.counters(), general.counters());
        if first_out.is_none() {
            first_out = Some(b[..forwarded_len(&want)].to_vec());
        }
        taken.push(got.is_some());
    }
    taken
}

#[test]
fn dip_replies_take_the_shortcut() {
    let p = example();
    for name in ["blue-web", "blue-web6"] {
        let vip = pool(&p, name);
        let c = client(vip.address.is_ipv6(), 4);
        let syn = from_internet(&p, c, 4500, vip, SYN, 64);
        let ack = from_internet(&p, c, 4500, vip, ACK, 64);
        // SYN out; the DIP's ACK while the flow is still opening (a change of state:
        // the general path's); the client's ACK; the DIP's next ACK (the shortcut's).
        let taken = taken_in_order(&p, &[Some(syn), None, Some(ack), None]);
        assert_eq!(taken, [false, false, true, true], "{name}");
    }
    // A CA VIP's DIP answers the LB's source-NAT CA; the reply goes back into the
    // client's VSID, to its host.
    let vip1 = pool(&p, "blue-vip1");
    let syn = batch_from_vm(&p, "10.0.0.5", 5100, vip1, SYN);
    let ack = batch_from_vm(&p, "10.0.0.5", 5100, vip1, ACK);
    let taken = taken_in_order(&p, &[Some(syn), None, Some(ack), None]);
    assert_eq!(taken, [false, false, true, true], "CA VIP");
}
