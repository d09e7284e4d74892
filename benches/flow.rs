//! The flow table at the sizes a balancer runs at: 16 384 flows (in cache), 1 M and 4 M
//! (every lookup a cache miss), our shard against its baselines in the same run.
//!
//! Per table size, three measurements, each over 65 536 operations:
//! - `lookup`: finds by forward key, in a random order over the whole table (insertion
//!   order would walk the slab and hide the misses);
//! - `lookup_batch`: the same finds through the batch interface, which hashes and
//!   prefetches a batch of keys before it resolves them (the engine's batch path);
//! - `churn`: a new binding inserted and an old one removed, in a table that stays at
//!   its size (new flows into a full-size table, not into an empty one).
//!
//! The baseline is the table nvlb had before (`flow_baseline`: slab + two hashbrown
//! indexes); dashmap, rejected earlier (docs/decisions.md, "Flow tables"), runs at
//! 16 384 only, where its figures were taken. Memory per flow is printed per size.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use nvlb::flow::{Flow, FlowShard, ForwardKey, ReturnKey, ShardLimits, State, Timeouts};

mod flow_baseline;
mod shuffle;
use flow_baseline::HashbrownShard;
use shuffle::shuffle;

/// Operations per measured iteration.
const OPS: usize = 65_536;

/// Keys of flow `i`: distinct for every `i` below 2^32.
fn key(i: u32) -> (ForwardKey, ReturnKey) {
    let client = IpAddr::V4(Ipv4Addr::from(0xc633_0000u32.wrapping_add(i >> 16)));
    let port = (i & 0xffff) as u16;
    let vip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let dip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5 + (i % 4) as u8));
    (
        ForwardKey {
            vsid: 0,
            proto: 6,
            client,
            client_port: port,
            vip,
            vip_port: 80,
        },
        ReturnKey {
            vsid: 5001,
            proto: 6,
            dip,
            dip_port: 80,
            peer: client,
            peer_port: port,
        },
    )
}

fn flow(i: u32) -> Flow {
    let (f, r) = key(i);
    Flow::new(f, r, 0, 0, 0, State::SynSent)
}

/// A shard for `n` flows, sized for exactly that many.
fn limits(n: usize) -> ShardLimits {
    ShardLimits {
        max_flows: n as u32,
        max_per_tenant: n as u32,
        preallocate: n as u32,
        timeouts: Timeouts::default(),
    }
}

/// The next `OPS` keys of `probes`, from a cursor that wraps (`probes` holds a multiple
/// of `OPS` keys). The keys lie in the order they are looked up, so reading them is
/// sequential and only the table's own misses are measured.
fn window<'a>(probes: &'a [ForwardKey], cursor: &mut usize) -> &'a [ForwardKey] {
    let w = &probes[*cursor..*cursor + OPS];
    *cursor = (*cursor + OPS) % probes.len();
    w
}

fn table_size(c: &mut Criterion, n: usize) {
    let mut order: Vec<u32> = (0..n.max(OPS) as u32).collect();
    shuffle(&mut order);
    let probes: Vec<ForwardKey> = order.into_iter().map(|i| key(i % n as u32).0).collect();
    let mut g = c.benchmark_group(format!("flow_table/{n}"));
    g.throughput(Throughput::Elements(OPS as u64));
    g.sample_size(10);

    let mut shard = FlowShard::new(limits(n));
    for i in 0..n as u32 {
        shard.insert(flow(i), 1).expect("room");
    }
    let mut base = HashbrownShard::with_capacity(4096);
    for i in 0..n as u32 {
        base.insert(flow(i));
    }
    eprintln!(
        "flow memory at {n} flows: shard {} bytes/flow, hashbrown baseline {} bytes/flow \
         (Flow = {} bytes)",
        shard.memory_bytes() / n,
        base.memory_bytes() / n,
        std::mem::size_of::<Flow>()
    );

    let mut cursor = 0usize;
    g.bench_function(BenchmarkId::new("lookup", "shard"), |b| {
        b.iter(|| {
            for k in window(&probes, &mut cursor) {
                black_box(shard.find_forward(k, 2));
            }
        })
    });
    g.bench_function(BenchmarkId::new("lookup_batch", "shard"), |b| {
        let mut found = [None; 32];
        b.iter(|| {
            for batch in window(&probes, &mut cursor).chunks(32) {
                shard.find_forward_batch(batch, 2, &mut found[..batch.len()]);
                black_box(&found);
            }
        })
    });
    g.bench_function(BenchmarkId::new("lookup", "hashbrown_baseline"), |b| {
        b.iter(|| {
            for k in window(&probes, &mut cursor) {
                black_box(base.find_forward(k));
            }
        })
    });

    // Churn: flow `next` comes in, the oldest one (in insertion order) goes.
    let mut oldest = std::collections::VecDeque::with_capacity(n);
    oldest.extend((0..n as u32).map(|i| shard.find_forward(&key(i).0, 2).expect("inserted above")));
    let mut next = n as u32;
    g.bench_function(BenchmarkId::new("churn", "shard"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                shard.remove(oldest.pop_front().expect("full table"));
                oldest.push_back(shard.insert(flow(next), 2).expect("room"));
                next += 1;
            }
        })
    });
    let mut oldest: std::collections::VecDeque<u32> = (0..n as u32).collect();
    let mut next = n as u32;
    g.bench_function(BenchmarkId::new("churn", "hashbrown_baseline"), |b| {
        b.iter(|| {
            for _ in 0..OPS {
                base.remove(oldest.pop_front().expect("full table"));
                oldest.push_back(base.insert(flow(next)));
                next += 1;
            }
        })
    });
    if n <= 16_384 {
        let fwd: DashMap<ForwardKey, Flow, foldhash::fast::RandomState> = DashMap::default();
        for i in 0..n as u32 {
            fwd.insert(key(i).0, flow(i));
        }
        g.bench_function(BenchmarkId::new("lookup", "dashmap_foldhash"), |b| {
            b.iter(|| {
                for k in window(&probes, &mut cursor) {
                    black_box(fwd.get(k).map(|e| e.dip));
                }
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let sizes: Vec<usize> = match std::env::var("NVLB_FLOW_SIZES") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![16_384, 1 << 20, 4 << 20],
    };
    for n in sizes {
        table_size(c, n);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
