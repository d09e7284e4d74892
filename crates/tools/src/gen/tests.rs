//! The generator, the LB's engine and the reflector, frame by frame in one process:
//! every target's probe goes through both NAT directions and comes back as the
//! generator's own answer; the reflector refuses what a host would refuse.

use std::sync::Arc;

use crate::engine::{Engine, Verdict};
use crate::policy::Snapshot;
use crate::wire::checksum;

use super::layers;
use super::payload::{self, Probe, flags};
use super::plan::{Kind, Plan, PlanError, Selection};
use super::reflect::{Hosts, Skip, reflect};
use super::run::{Answer, classify};

fn policy() -> Arc<Snapshot> {
    let text = include_str!("../../../../lb-config/example.toml");
    Arc::new(Snapshot::from_toml(text, "example.toml").expect("example policy"))
}

fn plan(p: &Snapshot) -> Plan {
    let sel = Selection {
        ca_vips: true,
        ..Selection::default()
    };
    Plan::new(p, &sel, &[60, 700]).expect("plan")
}

fn frame(plan: &Plan, slot: u32, seq: u32, size: usize) -> Vec<u8> {
    let mut b = vec![0u8; 2048];
    let kind = if seq == 0 { Kind::Open } else { Kind::Data };
    let port = plan.port_of(slot, 0, 100);
    let n = plan.build(&mut b, slot, port, seq, size, kind, 1_000);
    b.truncate(n);
    b
}

/// The frame goes through the engine and must be forwarded.
fn forward(engine: &mut Engine, f: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 2048];
    match engine.process(5_000, f, &mut out) {
        Verdict::Forward { len, .. } => out[..len].to_vec(),
        v => panic!("engine: {v:?}"),
    }
}

fn l4_checksum_ok(f: &[u8]) -> bool {
    let l = layers::parse(f).expect("layers");
    let seg = &f[l.l4..l.end];
    let pseudo = checksum::pseudo_header(l.src, l.dst, l.proto, seg.len() as u32);
    checksum::fold(pseudo + u32::from(checksum::fold(checksum::sum(seg)))) == 0xffff
}

#[test]
fn every_target_makes_the_round_trip_through_both_nat_directions() {
    let p = policy();
    let plan = plan(&p);
    assert_eq!(
        plan.targets.len(),
        p.pools().len(),
        "every pool of the example"
    );
    let hosts = Hosts::new(Arc::clone(&p));
    let mut engine = Engine::new(Arc::clone(&p), 0, 1);
    for slot in 0..plan.targets.len() as u32 * 3 {
        let t = plan.target_of(slot).unwrap().clone();
        for seq in 0..3 {
            let f = frame(&plan, slot, seq, (seq % 2) as usize);
            assert!(l4_checksum_ok(&f), "{}: generated checksum", t.name);
            let mut to_dip = forward(&mut engine, &f);
            let r = reflect(&hosts, &mut to_dip).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            assert_eq!(r.pool, t.pool);
            let dip = r.dip.expect("a DIP of the addressed pool");
            assert!(l4_checksum_ok(&to_dip), "{}: reflected checksum", t.name);
            let back = forward(&mut engine, &to_dip);
            match classify(&plan, &back) {
                Answer::Ours {
                    pool,
                    dip: d,
                    first,
                    wrong,
                    time,
                } => {
                    assert_eq!(
                        (pool, d, first, wrong, time),
                        (t.pool, dip, seq == 0, false, 1_000)
                    );
                }
                a => panic!("{}: {a:?}", t.name),
            }
            // The generator's own request is not an answer.
            assert_eq!(classify(&plan, &f), Answer::Other);
        }
    }
}

#[test]
fn frames_are_raised_to_hold_the_probe_and_keep_their_size_otherwise() {
    let p = policy();
    let plan = plan(&p);
    let public_v4 = plan
        .targets
        .iter()
        .position(|t| t.name == "blue-web")
        .unwrap() as u32;
    assert_eq!(
        frame(&plan, public_v4, 0, 0).len(),
        14 + 20 + 20 + payload::LEN
    );
    assert_eq!(frame(&plan, public_v4, 0, 1).len(), 700);
    let ca_v4 = plan
        .targets
        .iter()
        .position(|t| t.name == "blue-vip1")
        .unwrap() as u32;
    assert_eq!(frame(&plan, ca_v4, 1, 1).len(), 700 + 14 + 20 + 8);
    // Distinct flows of one target take distinct source ports.
    let n = plan.targets.len() as u32;
    let ports: std::collections::HashSet<u16> = (0..50)
        .map(|i| plan.port_of(public_v4 + i * n, 0, 50 * n))
        .collect();
    assert_eq!(ports.len(), 50);
    assert_ne!(plan.port_of(0, 0, 100), plan.port_of(0, 1, 100));
}

#[test]
fn selection_errors_name_the_problem() {
    let p = policy();
    let e = Plan::new(
        &p,
        &Selection {
            vips: vec!["nosuch".into()],
            ..Selection::default()
        },
        &[128],
    );
    assert_eq!(
        e.unwrap_err(),
        super::PlanError::UnknownVip("nosuch".into())
    );
    let e = Plan::new(
        &p,
        &Selection {
            vips: vec!["blue-vip1".into()],
            ..Selection::default()
        },
        &[128],
    );
    assert!(e.unwrap_err().to_string().contains("--provider"));
    let e = Plan::new(
        &p,
        &Selection {
            protocol: Some(crate::policy::Protocol::Udp),
            ..Selection::default()
        },
        &[128],
    );
    assert_eq!(e.unwrap_err(), super::PlanError::Empty);
    let only_v6 = Plan::new(
        &p,
        &Selection {
            v6: Some(true),
            public_only: true,
            ..Selection::default()
        },
        &[128],
    )
    .unwrap();
    assert!(
        only_v6
            .targets
            .iter()
            .all(|t| t.vip.is_ipv6() && t.client.is_ipv6())
    );
    assert_eq!(only_v6.targets.len(), 2);
}

/// The engine's frame toward a DIP of blue-web.
fn to_blue_dip(p: &Arc<Snapshot>) -> (Plan, Vec<u8>) {
    let plan = plan(p);
    let slot = plan
        .targets
        .iter()
        .position(|t| t.name == "blue-web")
        .unwrap() as u32;
    let mut engine = Engine::new(Arc::clone(p), 0, 1);
    let f = forward(&mut engine, &frame(&plan, slot, 0, 0));
    (plan, f)
}

#[test]
fn a_delivery_outside_the_addressed_pool_is_answered_and_flagged_wrong_tenant() {
    let p = policy();
    let (_, mut f) = to_blue_dip(&p);
    let l = layers::parse(&f).unwrap();
    // As if the generator had addressed red-web: blue's DIP is none of red-web's.
    let red = p.pools().iter().position(|x| x.name == "red-web").unwrap() as u16;
    f[l.payload + 4..l.payload + 6].copy_from_slice(&red.to_be_bytes());
    let r = reflect(&Hosts::new(Arc::clone(&p)), &mut f).expect("answered");
    assert_eq!((r.pool, r.dip), (red, None));
    let l = layers::parse(&f).unwrap();
    let probe = Probe::new_checked(&f[l.payload..l.end]).unwrap();
    assert_eq!(probe.flags(), flags::REFLECTED | flags::WRONG_TENANT);
    assert_eq!(probe.dip(), payload::UNSET);
}

/// A change to a good frame.
type Mutation = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn the_reflector_refuses_what_the_dips_host_would_refuse() {
    let p = policy();
    let hosts = Hosts::new(Arc::clone(&p));
    let (_, good) = to_blue_dip(&p);
    let l = layers::parse(&good).unwrap();
    let t = l.tunnel.unwrap();
    let cases: Vec<(&str, Mutation, Skip)> = vec![
        (
            "outer dst MAC",
            Box::new(|f| f[0..6].copy_from_slice(&[2, 0, 0, 0, 6, 0x99])),
            Skip::NotHostMac,
        ),
        (
            "outer dst MAC of another host",
            Box::new(move |f| {
                let other = if t.dst_mac.0[5] == 0x11 { 0x12 } else { 0x11 };
                f[5] = other;
            }),
            Skip::NotHostPa,
        ),
        (
            "outer src",
            Box::new(move |f| {
                // 192.168.6.10 -> .99 (checksum fixed so that the outer still parses).
                let at = t.ip + 15;
                f[at] = 99;
                let c = u16::from_be_bytes([f[t.ip + 10], f[t.ip + 11]]);
                let c = checksum::update16(c, 10, 99);
                f[t.ip + 10..t.ip + 12].copy_from_slice(&c.to_be_bytes());
            }),
            Skip::NotFromLb,
        ),
        (
            "vsid",
            Box::new(move |f| {
                let key = t.ip + 20 + 4;
                f[key..key + 3].copy_from_slice(&[0, 0x13, 0x8a]); // 5002: no such CA there
            }),
            Skip::UnknownCa,
        ),
        (
            "unknown vsid",
            Box::new(move |f| {
                let key = t.ip + 20 + 4;
                f[key..key + 3].copy_from_slice(&[0, 0x20, 0x00]);
            }),
            Skip::UnknownVsid,
        ),
        (
            "gre protocol",
            Box::new(move |f| f[t.ip + 20 + 2] = 0x08),
            Skip::BadGre,
        ),
        (
            "inner dst MAC",
            Box::new(move |f| f[l.eth + 5] ^= 0xff),
            Skip::WrongMac,
        ),
        (
            "no probe",
            Box::new(move |f| f[l.payload] = 0),
            Skip::NotProbe,
        ),
        (
            "already reflected",
            Box::new(move |f| f[l.payload + 2] = flags::REFLECTED),
            Skip::Answer,
        ),
    ];
    for (what, mutate, want) in cases {
        let mut f = good.clone();
        mutate(&mut f);
        assert_eq!(reflect(&hosts, &mut f), Err(want), "{what}");
    }
    let mut plain = good.clone();
    plain.drain(..14 + 20 + 8);
    assert_eq!(
        reflect(&hosts, &mut plain.clone()).unwrap_err(),
        Skip::NotNvgre
    );
    // In echo mode a plain probe comes back with its endpoints swapped.
    let echo = Hosts {
        echo_plain: true,
        ..Hosts::new(Arc::clone(&p))
    };
    let before = layers::parse(&plain).unwrap();
    let r = reflect(&echo, &mut plain).expect("echoed");
    assert_eq!(r.dip, Some(0));
    let after = layers::parse(&plain).unwrap();
    assert_eq!((after.src, after.dst), (before.dst, before.src));
    assert_eq!(
        (after.src_port, after.dst_port),
        (before.dst_port, before.src_port)
    );
    assert_eq!(
        (after.src_mac, after.dst_mac),
        (before.dst_mac, before.src_mac)
    );
    assert!(l4_checksum_ok(&plain));
    assert_eq!(
        reflect(&hosts, &mut [0u8; 10]).unwrap_err(),
        Skip::NotTcpUdp
    );
}

#[test]
fn a_spoofed_syn_is_a_new_flow_from_its_random_client_with_valid_checksums() {
    use super::plan::Spoof;
    let p = policy();
    let plan = plan(&p);
    let mut engine = Engine::new(Arc::clone(&p), 0, 1);
    let mut spoof = Spoof::new(7);
    let mut clients = std::collections::HashSet::new();
    let mut forwarded = 0;
    for (slot, t) in (0u32..).zip(&plan.targets) {
        for _ in 0..20 {
            let (src, port) = spoof.client(t.client.is_ipv6());
            let mut b = vec![0u8; 2048];
            let n = plan.build_spoofed(&mut b, slot, src, port, 1, 1_000);
            if t.side != super::plan::Side::External {
                assert_eq!(n, 0, "{}: a CA VIP's client cannot be spoofed", t.name);
                continue;
            }
            let f = &b[..n];
            let l = layers::parse(f).expect("layers");
            assert_eq!((l.src, l.src_port, l.dst), (src, port, t.vip), "{}", t.name);
            assert!(l4_checksum_ok(f), "{}: spoofed checksum", t.name);
            if let std::net::IpAddr::V4(a) = src {
                assert_eq!(a.octets()[..1], [198]);
                assert_eq!(checksum::data(&f[14..34]), 0, "IPv4 header checksum");
            }
            clients.insert((src, port));
            // Each is a new flow to the LB (a SYN it binds), never a malformed drop.
            let before = engine.counters().new_flows;
            let mut out = vec![0u8; 2048];
            match engine.process(5_000, f, &mut out) {
                Verdict::Forward { .. } => forwarded += 1,
                v => panic!("{}: {v:?}", t.name),
            }
            assert_eq!(engine.counters().new_flows, before + 1, "{}", t.name);
        }
    }
    assert!(forwarded > 0);
    assert!(clients.len() > forwarded / 2, "sources vary");
}

#[test]
fn all_ports_and_floating_ip_pools_are_skipped_or_refused_by_name() {
    let text = format!(
        "{}\n[[tenant.vip]]\nname = \"red-all\"\nfrontend = \"public\"\naddress = \"203.0.113.40\"\nprotocol = \"all\"\nport = 0\nbackend_vsid = 6001\ndips = [ {{ ca = \"10.0.0.5\" }} ]\n\n[[tenant.vip]]\nname = \"red-dsr\"\nfrontend = \"public\"\naddress = \"203.0.113.41\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001\nfloating_ip = true\ndips = [ {{ ca = \"10.0.0.6\" }} ]\n",
        include_str!("../../../../lb-config/example.toml")
    )
    .replace("name = \"host1\"\n", "name = \"host1\"\ngateway_mac = \"02:00:00:00:06:01\"\n")
    .replace("name = \"host2\"\n", "name = \"host2\"\ngateway_mac = \"02:00:00:00:06:01\"\n")
    .replace("name = \"host3\"\n", "name = \"host3\"\ngateway_mac = \"02:00:00:00:06:01\"\n")
    .replace("name = \"host4\"\n", "name = \"host4\"\ngateway_mac = \"02:00:00:00:06:01\"\n")
    .replace("name = \"host5\"\n", "name = \"host5\"\ngateway_mac = \"02:00:00:00:06:01\"\n");
    let p = Snapshot::from_toml(&text, "t.toml").expect("policy with all-ports and DSR VIPs");
    let all = Plan::new(&p, &Selection::default(), &[128]).expect("plan");
    let names: Vec<_> = (0..64)
        .filter_map(|s| all.target_of(s).map(|t| t.name.clone()))
        .collect();
    assert!(names.iter().any(|n| n == "red-web"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "red-all" || n == "red-dsr"),
        "{names:?}"
    );
    for name in ["red-all", "red-dsr"] {
        let sel = Selection {
            vips: vec![name.into()],
            ..Selection::default()
        };
        assert!(
            matches!(Plan::new(&p, &sel, &[128]), Err(PlanError::Unsupported(n, _)) if n == name),
            "{name}"
        );
    }
}
