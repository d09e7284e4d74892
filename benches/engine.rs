//! Engine throughput per core: established flows and new flows, public VIP and CA VIP,
//! IPv4 and IPv6, on the example policy (lb-config/example.toml), one worker.
//!
//! Baseline in the same run: copying each frame to the output buffer, the floor of any
//! engine that writes its output rather than rewriting in place. Criterion reports
//! elements/s: each element is one frame, so Melem/s reads as Mpps per core.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nvlb::engine::{Engine, Verdict, output_len};

mod engine_scenarios;
use engine_scenarios::{NOW, ca_vip, public};

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
