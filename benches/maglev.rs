//! Maglev table build and lookup: ours (weighted, lazily walked preference lists, xxh3)
//! against the `maglev` crate 0.2 (unweighted, stores the N×M permutation, std's
//! DefaultHasher), at the default table size M = 65537.
//!
//! Run: `cargo bench --bench maglev -- --warm-up-time 1 --measurement-time 3`.
//! Memory is printed once on stderr before the timings.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use maglev::ConsistentHasher;
use nvlb::maglev::{Backend, DEFAULT_TABLE_SIZE, Table, backend_key, flow_hash};

const SIZES: [usize; 3] = [10, 100, 1000];

fn pool(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            key: backend_key(
                5001,
                IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
                80,
            ),
            // Mixed weights 1..=8; the crate ignores them (it has none).
            weight: 1 + (i as u32 * 5) % 8,
        })
        .collect()
}

fn crate_table(p: &[Backend]) -> maglev::Maglev<u64> {
    maglev::Maglev::with_capacity(p.iter().map(|b| b.key), DEFAULT_TABLE_SIZE as usize)
}

/// Peak resident set (VmHWM) of this process in bytes, from /proc.
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Printed once: ours from `memory_bytes`; the crate's both computed from its source
/// (`Vec<Vec<usize>>` permutation of N×M during the build, `Vec<isize>` of M kept) and
/// measured as the growth of peak RSS over one build (ascending N, so each build sets a
/// new peak).
fn report_memory() {
    let m = DEFAULT_TABLE_SIZE as usize;
    let word = std::mem::size_of::<usize>();
    for n in SIZES {
        let p = pool(n);
        let ours = Table::build(&p, DEFAULT_TABLE_SIZE).expect("valid pool");
        let before = peak_rss();
        let theirs = crate_table(&p);
        let after = peak_rss();
        black_box(&theirs);
        let perm = n * (m * word + std::mem::size_of::<Vec<usize>>());
        let kept = m * word + n * std::mem::size_of::<u64>();
        let measured = match (before, after) {
            (Some(b), Some(a)) => format!("{:.1} MB", a.saturating_sub(b) as f64 / 1e6),
            _ => "n/a".to_string(),
        };
        eprintln!(
            "memory N={n:4} M={m}: ours {:.3} MB kept; maglev crate {:.3} MB kept, \
             {:.1} MB permutation during build (from source), peak RSS growth {measured}",
            ours.memory_bytes() as f64 / 1e6,
            kept as f64 / 1e6,
            perm as f64 / 1e6,
        );
    }
}

fn build(c: &mut Criterion) {
    report_memory();
    for n in SIZES {
        let p = pool(n);
        let mut g = c.benchmark_group(format!("maglev_build_n{n}"));
        // The crate takes ~0.3 s and half a gigabyte per build at N = 1000.
        g.sample_size(if n >= 1000 { 10 } else { 20 });
        g.bench_function(BenchmarkId::new("ours", n), |b| {
            b.iter(|| Table::build(black_box(&p), DEFAULT_TABLE_SIZE))
        });
        g.bench_function(BenchmarkId::new("maglev_crate", n), |b| {
            b.iter(|| crate_table(black_box(&p)))
        });
        g.finish();
    }
}

fn lookup(c: &mut Criterion) {
    const FLOWS: usize = 4096;
    let p = pool(100);
    let ours = Table::build(&p, DEFAULT_TABLE_SIZE).expect("valid pool");
    let theirs = crate_table(&p);
    let client = |i: usize| IpAddr::V4(Ipv4Addr::new(198, 51, (i >> 8) as u8, i as u8));
    let vip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
    let hashes: Vec<u64> = (0..FLOWS)
        .map(|i| flow_hash(0, 6, client(i), 40000 + i as u16, vip, 80))
        .collect();

    let mut g = c.benchmark_group("maglev_lookup_n100");
    g.throughput(Throughput::Elements(FLOWS as u64));
    g.bench_function("ours_table_only", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &h in black_box(&hashes) {
                acc = acc.wrapping_add(u32::from(ours.lookup(h).unwrap_or(0)));
            }
            acc
        })
    });
    g.bench_function("ours_flow_hash_and_table", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for i in 0..FLOWS {
                let h = flow_hash(0, 6, black_box(client(i)), 40000, vip, 80);
                acc = acc.wrapping_add(u32::from(ours.lookup(h).unwrap_or(0)));
            }
            acc
        })
    });
    g.bench_function("ours_flow_hash_only", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for i in 0..FLOWS {
                acc ^= flow_hash(0, 6, black_box(client(i)), 40000, vip, 80);
            }
            acc
        })
    });
    // The crate hashes the key itself (SipHash via DefaultHasher) inside `get`.
    g.bench_function("maglev_crate_get", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for h in black_box(&hashes) {
                acc = acc.wrapping_add(theirs.get(h).copied().unwrap_or(0));
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, build, lookup);
criterion_main!(benches);
