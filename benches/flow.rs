//! Flow table operations: our per-worker shard (slab + two hashbrown index tables,
//! foldhash) against the dashmap baseline (docs/decisions.md, "Flow tables"), in one run.
//!
//! One "flow op" = insert a binding, find it by its forward key, find it by its return
//! key, remove it: what a short connection costs the table. Both sides index both
//! directions, as the engine needs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use nvlb::flow::{Flow, FlowShard, ForwardKey, ReturnKey, ShardLimits, State, Timeouts};

const N: usize = 65_536;

fn keys() -> Vec<(ForwardKey, ReturnKey)> {
    (0..N)
        .map(|i| {
            let client = IpAddr::V4(Ipv4Addr::from(0xc633_6400u32 + (i as u32 >> 16)));
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
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("flow_ops");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);

    g.bench_function("shard_hashbrown_foldhash", |b| {
        let limits = ShardLimits {
            max_flows: N as u32 * 2,
            max_per_tenant: N as u32 * 2,
            timeouts: Timeouts::default(),
        };
        let mut shard = FlowShard::new(limits);
        b.iter(|| {
            let mut ids = Vec::with_capacity(N);
            for (f, r) in &keys {
                ids.push(
                    shard
                        .insert(Flow::new(*f, *r, 0, 0, 0, State::SynSent), 1)
                        .unwrap(),
                );
            }
            for (f, r) in &keys {
                black_box(shard.find_forward(f, 2));
                black_box(shard.find_return(r, 2));
            }
            for id in ids {
                shard.remove(id);
            }
        })
    });

    g.bench_function("dashmap_foldhash", |b| {
        let fwd: DashMap<ForwardKey, Flow, foldhash::fast::RandomState> = DashMap::default();
        let ret: DashMap<ReturnKey, ForwardKey, foldhash::fast::RandomState> = DashMap::default();
        b.iter(|| run_dashmap(&keys, &fwd, &ret))
    });

    g.bench_function("dashmap_default_hasher", |b| {
        let fwd: DashMap<ForwardKey, Flow> = DashMap::new();
        let ret: DashMap<ReturnKey, ForwardKey> = DashMap::new();
        b.iter(|| run_dashmap(&keys, &fwd, &ret))
    });
    g.finish();

    let limits = ShardLimits {
        max_flows: N as u32 * 2,
        max_per_tenant: N as u32 * 2,
        timeouts: Timeouts::default(),
    };
    let mut shard = FlowShard::new(limits);
    for (f, r) in &keys {
        shard
            .insert(Flow::new(*f, *r, 0, 0, 0, State::SynSent), 1)
            .unwrap();
    }
    eprintln!(
        "flow memory: {} flows, {} bytes/flow (Flow = {} bytes + index tables)",
        N,
        shard.memory_bytes() / N,
        std::mem::size_of::<Flow>()
    );
}

fn run_dashmap<S: std::hash::BuildHasher + Clone>(
    keys: &[(ForwardKey, ReturnKey)],
    fwd: &DashMap<ForwardKey, Flow, S>,
    ret: &DashMap<ReturnKey, ForwardKey, S>,
) {
    for (f, r) in keys {
        fwd.insert(*f, Flow::new(*f, *r, 0, 0, 0, State::SynSent));
        ret.insert(*r, *f);
    }
    for (f, r) in keys {
        black_box(fwd.get(f).map(|e| e.dip));
        let k = ret.get(r).map(|e| *e);
        black_box(k.and_then(|k| fwd.get(&k).map(|e| e.dip)));
    }
    for (f, r) in keys {
        fwd.remove(f);
        ret.remove(r);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
