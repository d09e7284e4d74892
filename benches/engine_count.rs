//! Instructions per frame of the engine, counted rather than timed, for
//! `benches/count.sh`: run under callgrind with `--toggle-collect='*measured*'`, only
//! the engine's work on the scenario's frames is counted, so two builds compare to a
//! fraction of a percent on a machine too noisy to time a few percent (the split's
//! regression of new flows, 8% more instructions, hid in ±15% timing noise).
//!
//! `engine_count SCENARIO new|established` runs one scenario; without arguments (as
//! `cargo bench` runs it) every scenario runs once natively, a smoke test.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use nvlb::craft::{self, Outer, Transport};
use nvlb::engine::{Engine, output_len};
use nvlb::policy::{Snapshot, VipPool};
use nvlb::wire::MacAddr;

const NOW: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

struct Scenario {
    name: &'static str,
    syn: Vec<Vec<u8>>,
    ack: Vec<Vec<u8>>,
}

fn client_addr(v6: bool, i: usize) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0xff,
            0,
            0,
            0,
            (i >> 16) as u16,
            0x77,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100 + (i >> 16) as u8, 77))
    }
}

fn public(policy: &Snapshot, v6: bool, flows: usize, name: &'static str) -> Scenario {
    let pool = policy
        .pools()
        .iter()
        .find(|p| p.is_public() && p.address.is_ipv6() == v6)
        .expect("public pool");
    let b = policy.balancer();
    let client_mac = MacAddr([2, 0, 0, 0, 1, 0x77]);
    let build = |flags: u8| -> Vec<Vec<u8>> {
        (0..flows)
            .map(|i| {
                let t = Transport::Tcp {
                    src_port: 1024 + (i % 60000) as u16,
                    dst_port: pool.port,
                    flags,
                    seq: 1,
                    ack: 0,
                };
                let ip = craft::ip_packet(client_addr(v6, i / 60000), pool.address, 64, t, &[]);
                craft::ip_frame(client_mac, b.external.mac, &ip)
            })
            .collect()
    };
    Scenario {
        name,
        syn: build(SYN),
        ack: build(ACK),
    }
}

fn ca_vip(policy: &Snapshot, v6: bool, flows: usize, name: &'static str) -> Scenario {
    let pool: &VipPool = policy
        .pools()
        .iter()
        .find(|p| !p.is_public() && p.address.is_ipv6() == v6)
        .expect("CA VIP pool");
    let client = policy
        .lookups()
        .iter()
        .find(|r| r.vsid == pool.frontend && r.ca.is_ipv6() == v6 && r.ca != pool.address)
        .expect("client VM");
    let host = policy.host(client.host);
    let b = policy.balancer();
    let (outer_src, outer_dst) = match (host.pa_v4, b.provider.address_v4()) {
        (Some(h), Some(l)) => (IpAddr::V4(h), IpAddr::V4(l)),
        _ => (
            IpAddr::V6(host.pa_v6.unwrap()),
            IpAddr::V6(b.provider.address_v6().unwrap()),
        ),
    };
    let outer = Outer {
        src_mac: host.mac,
        dst_mac: b.provider.mac,
        src: outer_src,
        dst: outer_dst,
        vsid: pool.frontend.get(),
        flow_id: 1,
    };
    let lb_mac = policy.subnet(pool.frontend).unwrap().lb_mac;
    let build = |flags: u8| -> Vec<Vec<u8>> {
        (0..flows)
            .map(|i| {
                let t = Transport::Tcp {
                    src_port: 1024 + i as u16,
                    dst_port: pool.port,
                    flags,
                    seq: 1,
                    ack: 0,
                };
                let ip = craft::ip_packet(client.ca, pool.address, 64, t, &[]);
                craft::nvgre(&outer, &craft::ip_frame(client.mac, lb_mac, &ip))
            })
            .collect()
    };
    Scenario {
        name,
        syn: build(SYN),
        ack: build(ACK),
    }
}

/// The engine's work alone; cachegrind counts only inside this function.
#[inline(never)]
fn measured(engine: &mut Engine, frames: &[Vec<u8>], out: &mut [u8]) {
    for f in frames {
        black_box(engine.process(NOW, f, out));
    }
}

const SCENARIOS: [&str; 4] = ["public_v4", "public_v6", "ca_vip_v4", "ca_vip_v6"];

fn scenario(policy: &Snapshot, name: &str) -> Option<Scenario> {
    Some(match name {
        "public_v4" => public(policy, false, 16_384, "public_v4"),
        "public_v6" => public(policy, true, 16_384, "public_v6"),
        "ca_vip_v4" => ca_vip(policy, false, 16_384, "ca_vip_v4"),
        "ca_vip_v6" => ca_vip(policy, true, 16_384, "ca_vip_v6"),
        _ => return None,
    })
}

/// Runs `phase` of `s` on a fresh engine: `new` counts the SYNs into an empty table,
/// `established` the ACKs after the SYNs set every flow up.
fn run(policy: &Arc<Snapshot>, s: &Scenario, phase: &str) -> Option<()> {
    let mut out = vec![0u8; output_len(2048)];
    let mut engine = Engine::new(policy.clone(), 0, 1);
    match phase {
        "new" => measured(&mut engine, &s.syn, &mut out),
        "established" => {
            for f in &s.syn {
                black_box(engine.process(NOW, f, &mut out));
            }
            measured(&mut engine, &s.ack, &mut out);
        }
        _ => return None,
    }
    Some(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let text = include_str!("../lb-config/example.toml");
    let policy = Arc::new(Snapshot::from_toml(text, "example.toml").expect("example policy"));
    // `cargo bench` passes `--bench`; only two plain words name a run.
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if let [name, phase] = words[..] {
        let s = scenario(&policy, name).unwrap_or_else(|| {
            eprintln!("unknown scenario {name:?} (one of {SCENARIOS:?})");
            std::process::exit(2);
        });
        if run(&policy, &s, phase).is_none() {
            eprintln!("unknown phase {phase:?} (new or established)");
            std::process::exit(2);
        }
        println!("{} {phase}: {} frames", s.name, s.syn.len());
        return;
    }
    for name in SCENARIOS {
        let s = scenario(&policy, name).expect("known scenario");
        for phase in ["new", "established"] {
            run(&policy, &s, phase).expect("known phase");
        }
        println!("{name}: {} frames, new and established", s.syn.len());
    }
}
