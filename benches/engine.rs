//! Engine throughput per core: established flows and new flows, public VIP and CA VIP,
//! IPv4 and IPv6, on the example policy (lb-config/example.toml), one worker.
//!
//! Each scenario runs through `Engine::process` one frame at a time and through
//! `Engine::process_batch` 64 frames at a time (`_batch`), as the ring data plane feeds
//! it. Established traffic comes in a random order (not the order the flows were set
//! up in, which would walk the flow table and hide its misses), at 16 384 flows and,
//! for public IPv4, at 1 M and 4 M flows (`engine_large`), where every lookup misses
//! the cache. New flows are measured into a fresh engine (16 384) and into one that
//! already holds 1 M flows, with the expiry sweep running between batches as in a
//! worker.
//!
//! The DIPs' answers are measured too (`engine_reply`), and
//! every established scenario also without the shortcut for bound flows (`_general`:
//! the general path alone), beside it in the same run.
//!
//! Baseline in the same run: copying each frame to the output buffer, the floor of any
//! engine that writes its output rather than rewriting in place. Criterion reports
//! elements/s: each element is one frame, so Melem/s reads as Mpps per core.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nvlb::engine::{Engine, MAX_BATCH, Verdict, output_len};

mod engine_batch;
mod engine_scenarios;
mod shuffle;
use engine_batch::{Discard, Packed, policy_for};
use engine_scenarios::{NOW, Scenario, ca_vip, public};
use shuffle::shuffle;

/// TCP ACK flag.
const ACK: u8 = 0x10;

/// `frames` through the batch path, `MAX_BATCH` at a time.
fn batched(engine: &mut Engine, now: u64, frames: &[&[u8]], sink: &mut Discard) {
    for chunk in frames.chunks(MAX_BATCH) {
        engine.process_batch(now, chunk, sink);
    }
}

/// Sets up every flow of `s` (its SYNs, which must all be forwarded).
fn set_up(engine: &mut Engine, s: &Scenario, out: &mut [u8]) {
    for f in &s.syn {
        assert!(
            matches!(engine.process(NOW, f, out), Verdict::Forward { .. }),
            "{}: SYN not forwarded",
            s.name
        );
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
    let mut sink = Discard::new();

    let mut g = c.benchmark_group("engine_established");
    g.sample_size(20);
    for s in &scenarios {
        g.throughput(Throughput::Elements(s.ack.len() as u64));
        let mut engine = Engine::new(policy.clone(), 0, 1);
        set_up(&mut engine, s, &mut out);
        let mut order: Vec<&[u8]> = s.ack.iter().map(Vec::as_slice).collect();
        shuffle(&mut order);
        let packed = Packed::new(order);
        let acks = packed.frames();
        g.bench_function(s.name, |b| {
            b.iter(|| {
                for f in &acks {
                    black_box(engine.process(NOW, f, &mut out));
                }
            })
        });
        g.bench_function(format!("{}_batch", s.name), |b| {
            b.iter(|| batched(&mut engine, NOW, &acks, &mut sink))
        });
        // The general path alone, without the established-flow shortcut: what the
        // shortcut buys, measured beside it.
        engine.set_shortcut(false);
        g.bench_function(format!("{}_general", s.name), |b| {
            b.iter(|| {
                for f in &acks {
                    black_box(engine.process(NOW, f, &mut out));
                }
            })
        });
        g.bench_function(format!("{}_general_batch", s.name), |b| {
            b.iter(|| batched(&mut engine, NOW, &acks, &mut sink))
        });
        engine.set_shortcut(true);
        // Baseline: the cost of only copying each frame to the output buffer.
        g.bench_function(format!("{}_copy_baseline", s.name), |b| {
            b.iter(|| {
                for f in &acks {
                    out[..f.len()].copy_from_slice(f);
                    black_box(&out);
                }
            })
        });
    }
    g.finish();

    // The DIPs' answers (an ACK each), on the same flows.
    let mut g = c.benchmark_group("engine_reply");
    g.sample_size(20);
    for s in &scenarios {
        let mut engine = Engine::new(policy.clone(), 0, 1);
        let mut replies = Vec::with_capacity(s.syn.len());
        for f in &s.syn {
            let Verdict::Forward { len, .. } = engine.process(NOW, f, &mut out) else {
                panic!("{}: SYN not forwarded", s.name);
            };
            replies.push(nvlb::craft::tunnel_reply(&out[..len], ACK, 9, 2).expect("NVGRE"));
        }
        g.throughput(Throughput::Elements(replies.len() as u64));
        let mut order: Vec<&[u8]> = replies.iter().map(Vec::as_slice).collect();
        shuffle(&mut order);
        let packed = Packed::new(order);
        let frames = packed.frames();
        // The first answer of each flow completes its handshake (a change of state,
        // the general path's); every later one is an established flow's.
        batched(&mut engine, NOW, &frames, &mut sink);
        g.bench_function(s.name, |b| {
            b.iter(|| {
                for f in &frames {
                    black_box(engine.process(NOW, f, &mut out));
                }
            })
        });
        g.bench_function(format!("{}_batch", s.name), |b| {
            b.iter(|| batched(&mut engine, NOW, &frames, &mut sink))
        });
        engine.set_shortcut(false);
        g.bench_function(format!("{}_general", s.name), |b| {
            b.iter(|| {
                for f in &frames {
                    black_box(engine.process(NOW, f, &mut out));
                }
            })
        });
        engine.set_shortcut(true);
    }
    g.finish();

    let mut g = c.benchmark_group("engine_new_flows");
    g.sample_size(10);
    for s in &scenarios {
        g.throughput(Throughput::Elements(s.syn.len() as u64));
        let packed = Packed::new(s.syn.iter().map(Vec::as_slice));
        let syns = packed.frames();
        g.bench_function(s.name, |b| {
            b.iter_batched(
                || Engine::new(policy.clone(), 0, 1),
                |mut engine| {
                    for f in &syns {
                        black_box(engine.process(NOW, f, &mut out));
                    }
                    engine
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function(format!("{}_batch", s.name), |b| {
            b.iter_batched(
                || Engine::new(policy.clone(), 0, 1),
                |mut engine| {
                    batched(&mut engine, NOW, &syns, &mut sink);
                    engine
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();

    large(c, &mut out, &mut sink);

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

/// Public IPv4 at 1 M and 4 M flows: established traffic in random order, and new
/// flows into the 1 M-flow table with the expiry sweep between batches. Sizes from
/// `NVLB_ENGINE_LARGE` (comma-separated flow counts; empty to skip).
fn large(c: &mut Criterion, out: &mut [u8], sink: &mut Discard) {
    let sizes: Vec<usize> = match std::env::var("NVLB_ENGINE_LARGE") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1 << 20, 4 << 20],
    };
    let mut g = c.benchmark_group("engine_large");
    g.sample_size(10);
    for flows in sizes {
        // Room for the new-flow measurement's flows on top of the table's own.
        let policy = Arc::new(policy_for(flows * 2));
        let s = public(&policy, false, flows, "large");
        let mut engine = Engine::new(policy.clone(), 0, 1);
        set_up(&mut engine, &s, out);
        let mut order: Vec<&[u8]> = s.ack.iter().map(Vec::as_slice).collect();
        shuffle(&mut order);
        let packed = Packed::new(order);
        let acks = packed.frames();
        // 65 536 frames a measured iteration, a window moving over the whole table.
        let window = 65_536.min(acks.len());
        g.throughput(Throughput::Elements(window as u64));
        let mut at = 0;
        let next = |at: &mut usize| {
            let w = &acks[*at..*at + window];
            *at = (*at + window) % (acks.len() - window + 1);
            w
        };
        g.bench_function(format!("established_public_v4_{flows}_flows"), |b| {
            b.iter(|| {
                for f in next(&mut at) {
                    black_box(engine.process(NOW, f, out));
                }
            })
        });
        g.bench_function(format!("established_public_v4_{flows}_flows_batch"), |b| {
            b.iter(|| batched(&mut engine, NOW, next(&mut at), sink))
        });
        if flows == 1 << 20 {
            // New flows from other clients (a second population, offset past the
            // first), 65 536 an iteration into the table of 1 M, the expiry sweep
            // between batches; when the second population runs out the table is set up
            // again, unmeasured, so it holds 1 M to 2 M flows throughout.
            let fresh = public(&policy, false, flows * 2, "fresh");
            let packed = Packed::new(fresh.syn[flows..].iter().map(Vec::as_slice));
            let syns = packed.frames();
            for batch in [false, true] {
                let name = format!(
                    "new_flows_public_v4_into_{flows}_flows{}",
                    if batch { "_batch" } else { "" }
                );
                let mut at = 0;
                g.bench_function(name, |b| {
                    b.iter_custom(|iters| {
                        let mut spent = Duration::ZERO;
                        for _ in 0..iters {
                            if at + window > syns.len() {
                                engine = Engine::new(policy.clone(), 0, 1);
                                set_up(&mut engine, &s, out);
                                at = 0;
                            }
                            let t = Instant::now();
                            for chunk in syns[at..at + window].chunks(MAX_BATCH) {
                                if batch {
                                    engine.process_batch(NOW, chunk, sink);
                                } else {
                                    for f in chunk {
                                        black_box(engine.process(NOW, f, out));
                                    }
                                }
                                black_box(engine.expire(NOW, 256));
                            }
                            spent += t.elapsed();
                            at += window;
                        }
                        spent
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
