//! Scrape rendering for a policy of 100 VIPs x 10 DIPs, 2 workers' published counters.
//!
//! `full_page`: everything `/metrics` serves (`metrics::lb::render`). Then the per-VIP
//! and per-DIP families alone (most of the page: 1000 DIPs x labels), written two ways
//! from the same summed counters: by hand (`metrics::text`, what nvlb uses) and through
//! the official client, prometheus-client, with a scrape-time `Collector` of constant
//! counters (its way of exposing values summed elsewhere). The baseline for the choice
//! recorded in docs/decisions.md.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nvlb::engine::Counters;
use nvlb::metrics::text::{Exposition, Kind};
use nvlb::metrics::{ControlStats, WorkerStats, dip_label};
use nvlb::policy::Snapshot;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

const VIPS: usize = 100;
const DIPS: usize = 10;
const DIRECTIONS: [&str; 2] = ["forward", "return"];

fn policy() -> Snapshot {
    let mut t = String::from(
        "[balancer]\nname = \"lb1\"\n\
         [balancer.external]\nmac = \"02:00:00:00:01:0a\"\naddresses = [\"198.51.100.10\"]\n\
         gateway_mac = \"02:00:00:00:01:01\"\nmtu = 1500\n\
         [balancer.provider]\nmac = \"02:00:00:00:06:0a\"\naddresses = [\"192.168.6.10\"]\nmtu = 1600\n",
    );
    for h in 0..DIPS {
        let _ = write!(
            t,
            "[[host]]\nname = \"host{h}\"\npa = [\"192.168.6.{}\"]\nmac = \"02:00:00:00:06:{:02x}\"\n",
            20 + h,
            20 + h
        );
    }
    t.push_str(
        "[[tenant]]\nname = \"t\"\n[[tenant.routing_domain]]\nname = \"rd\"\n\
         [[tenant.routing_domain.subnet]]\nvsid = 5001\nprefixes = [\"10.0.0.0/16\"]\n\
         lb_mac = \"02:00:00:b1:00:fe\"\n",
    );
    for v in 0..VIPS {
        for d in 0..DIPS {
            let _ = write!(
                t,
                "[[tenant.lookup]]\nvsid = 5001\nca = \"10.0.{v}.{}\"\nhost = \"host{d}\"\n\
                 mac = \"00:1d:d8:00:{v:02x}:{d:02x}\"\n",
                d + 1
            );
        }
    }
    for v in 0..VIPS {
        let _ = write!(
            t,
            "[[tenant.vip]]\nname = \"vip-{v}\"\nfrontend = \"public\"\naddress = \"203.0.113.{v}\"\n\
             protocol = \"tcp\"\nport = 80\nbackend_vsid = 5001\ndips = ["
        );
        for d in 0..DIPS {
            let _ = write!(t, "{{ ca = \"10.0.{v}.{}\", port = 80 }},", d + 1);
        }
        t.push_str("]\n");
    }
    Snapshot::from_toml(&t, "bench.toml").expect("bench policy")
}

fn stats(p: &Snapshot) -> Vec<WorkerStats> {
    (0..2u64)
        .map(|w| {
            let mut c = Counters::for_policy(p);
            for (i, pool) in c.pools.iter_mut().enumerate() {
                pool.packets = [1000 + i as u64, 900 + w];
                for (j, d) in pool.dip_packets.iter_mut().enumerate() {
                    *d = [100 + j as u64, 90 + w];
                }
            }
            WorkerStats {
                engine: c,
                dip_flows: p.pools().iter().map(|x| vec![3; x.dips.len()]).collect(),
                published: true,
                ..WorkerStats::default()
            }
        })
        .collect()
}

/// The labels of every DIP and the summed per-direction packets.
struct Summed {
    rows: Vec<[String; 4]>,
    packets: Vec<[u64; 2]>,
    vips: Vec<([String; 2], [u64; 2])>,
}

fn sum(p: &Snapshot, stats: &[WorkerStats]) -> Summed {
    let mut total = Counters::for_policy(p);
    for s in stats {
        total.add(&s.engine);
    }
    let mut rows = Vec::new();
    let mut packets = Vec::new();
    let mut vips = Vec::new();
    for (i, pool) in p.pools().iter().enumerate() {
        let tenant = p.tenant(pool.tenant).unwrap().name.clone();
        vips.push(([tenant.clone(), pool.name.clone()], total.pools[i].packets));
        for (j, d) in pool.dips.iter().enumerate() {
            rows.push([
                tenant.clone(),
                pool.name.clone(),
                d.vsid.get().to_string(),
                dip_label(d),
            ]);
            packets.push(total.pools[i].dip_packets[j]);
        }
    }
    Summed {
        rows,
        packets,
        vips,
    }
}

fn by_hand(s: &Summed) -> String {
    let mut e = Exposition::new();
    e.family("nvlb_vip_packets_total", Kind::Counter, "Packets of a VIP.");
    for (l, v) in &s.vips {
        for (d, dir) in DIRECTIONS.iter().enumerate() {
            e.sample(
                "nvlb_vip_packets_total",
                &[("tenant", &l[0]), ("vip", &l[1]), ("direction", dir)],
                v[d],
            );
        }
    }
    e.family("nvlb_dip_packets_total", Kind::Counter, "Packets of a DIP.");
    for (l, v) in s.rows.iter().zip(&s.packets) {
        for (d, dir) in DIRECTIONS.iter().enumerate() {
            e.sample(
                "nvlb_dip_packets_total",
                &[
                    ("tenant", &l[0]),
                    ("vip", &l[1]),
                    ("vsid", &l[2]),
                    ("dip", &l[3]),
                    ("direction", dir),
                ],
                v[d],
            );
        }
    }
    e.finish()
}

/// The prometheus-client way: a collector that encodes the summed values at scrape time.
#[derive(Debug)]
struct ClientCollector {
    summed: std::sync::Mutex<Option<Summed>>,
}

impl std::fmt::Debug for Summed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rows", self.rows.len())
    }
}

impl prometheus_client::collector::Collector for ClientCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let guard = self.summed.lock().unwrap();
        let s = guard.as_ref().unwrap();
        {
            let mut m = enc.encode_descriptor(
                "nvlb_vip_packets",
                "Packets of a VIP.",
                None,
                MetricType::Counter,
            )?;
            for (l, v) in &s.vips {
                for (d, dir) in DIRECTIONS.iter().enumerate() {
                    let labels = [
                        ("tenant", l[0].as_str()),
                        ("vip", l[1].as_str()),
                        ("direction", dir),
                    ];
                    let fam = m.encode_family(&labels)?;
                    prometheus_client::metrics::counter::ConstCounter::new(v[d]).encode(fam)?;
                }
            }
        }
        let mut m = enc.encode_descriptor(
            "nvlb_dip_packets",
            "Packets of a DIP.",
            None,
            MetricType::Counter,
        )?;
        for (l, v) in s.rows.iter().zip(&s.packets) {
            for (d, dir) in DIRECTIONS.iter().enumerate() {
                let labels = [
                    ("tenant", l[0].as_str()),
                    ("vip", l[1].as_str()),
                    ("vsid", l[2].as_str()),
                    ("dip", l[3].as_str()),
                    ("direction", dir),
                ];
                let mut fam = m.encode_family(&labels)?;
                fam.encode_counter::<NoLabelSet, u64, u64>(&v[d], None)?;
            }
        }
        Ok(())
    }
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let st = stats(&p);
    let control = ControlStats::new();
    let page = nvlb::metrics::lb::render(&p, &st, &control);
    eprintln!(
        "full page: {} bytes, {} samples",
        page.len(),
        page.lines().filter(|l| !l.starts_with('#')).count()
    );
    let mut g = c.benchmark_group("metrics_render_100x10");
    g.bench_function("full_page", |b| {
        b.iter(|| black_box(nvlb::metrics::lb::render(&p, &st, &control)))
    });
    g.bench_function("vip_dip_families_by_hand", |b| {
        b.iter(|| black_box(by_hand(&sum(&p, &st))))
    });
    let collector = std::sync::Arc::new(ClientCollector {
        summed: std::sync::Mutex::new(None),
    });
    let mut reg = Registry::default();
    reg.register_collector(Box::new(collector.clone()));
    g.bench_function("vip_dip_families_prometheus_client", |b| {
        b.iter(|| {
            *collector.summed.lock().unwrap() = Some(sum(&p, &st));
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
