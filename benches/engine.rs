//! Engine throughput per core: established flows and new flows, public VIP and CA VIP,
//! IPv4 and IPv6, on the example policy (lb-config/example.toml), one worker.
//!
//! Baseline in the same run: copying each frame to the output buffer, the floor of any
//! engine that writes its output rather than rewriting in place. Criterion reports
//! elements/s: each element is one frame, so Melem/s reads as Mpps per core.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nvlb::craft::{self, Outer, Transport};
use nvlb::engine::{Engine, Verdict, output_len};
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

fn bench(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/lb-config/example.toml");
    let policy = Arc::new(
        nvlb::control::policy_file::read(std::path::Path::new(path), &Default::default())
            .expect("example policy"),
    );
    let scenarios = [
        // 256 flows: the flow table stays in L1/L2; 16 384: it does not (the usual case).
        public(&policy, false, 256, "public_v4_256_flows"),
        public(&policy, false, 16_384, "public_v4"),
        public(&policy, true, 16_384, "public_v6"),
        ca_vip(&policy, false, 16_384, "ca_vip_v4"),
        ca_vip(&policy, true, 16_384, "ca_vip_v6"),
    ];
    let mut out = vec![0u8; output_len(2048)];

    let mut g = c.benchmark_group("engine_established");
    g.sample_size(20);
    for s in &scenarios {
        g.throughput(Throughput::Elements(s.ack.len() as u64));
        let mut engine = Engine::new(policy.clone(), 0, 1);
        for f in &s.syn {
            assert!(
                matches!(engine.process(NOW, f, &mut out), Verdict::Forward { .. }),
                "{}: SYN not forwarded",
                s.name
            );
        }
        g.bench_function(s.name, |b| {
            b.iter(|| {
                for f in &s.ack {
                    black_box(engine.process(NOW, f, &mut out));
                }
            })
        });
        // Baseline: the cost of only copying each frame to the output buffer.
        g.bench_function(format!("{}_copy_baseline", s.name), |b| {
            b.iter(|| {
                for f in &s.ack {
                    out[..f.len()].copy_from_slice(f);
                    black_box(&out);
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("engine_new_flows");
    g.sample_size(10);
    for s in &scenarios {
        g.throughput(Throughput::Elements(s.syn.len() as u64));
        g.bench_function(s.name, |b| {
            b.iter_batched(
                || Engine::new(policy.clone(), 0, 1),
                |mut engine| {
                    for f in &s.syn {
                        black_box(engine.process(NOW, f, &mut out));
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    // A reload: every worker renumbers all its bindings once (engine/remap.rs). The
    // two snapshots are equal in content but distinct, so the whole walk runs.
    let twin = Arc::new(
        nvlb::control::policy_file::read(std::path::Path::new(path), &Default::default())
            .expect("example policy"),
    );
    let mut g = c.benchmark_group("engine_policy_swap");
    g.sample_size(10);
    for flows in [16_384usize, 131_072] {
        let s = public(&policy, false, flows, "swap");
        let mut engine = Engine::new(policy.clone(), 0, 1);
        for f in &s.syn {
            black_box(engine.process(NOW, f, &mut out));
        }
        let bound = engine.shard().len();
        g.throughput(Throughput::Elements(bound as u64));
        let mut which = false;
        g.bench_function(format!("{bound}_flows"), |b| {
            b.iter(|| {
                which = !which;
                let next = if which { twin.clone() } else { policy.clone() };
                black_box(engine.set_policy(next));
            })
        });
        assert_eq!(engine.shard().len(), bound, "a swap forgot bindings");
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
