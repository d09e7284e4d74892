//! Metrics without sockets: frames through a real `Engine`, then its per-VIP counters,
//! a worker's `Publisher`, and the rendered page. Checks that both directions of a
//! flow are counted apart, per DIP, that flows per DIP reach the published slot, and
//! that the page says what the engine did.

use std::net::IpAddr;
use std::sync::Arc;

use nvlb::craft::{self, Outer, Transport};
use nvlb::dataplane::IoCounters;
use nvlb::engine::{Engine, Verdict, output_len};
use nvlb::metrics::{ControlStats, LbMetrics, dip_label};
use nvlb::policy::Snapshot;
use nvlb::wire::MacAddr;

const EXAMPLE: &str = include_str!("../lb-config/example.toml");
const SEC: u64 = 1_000_000_000;
const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;

fn policy() -> Arc<Snapshot> {
    Arc::new(Snapshot::from_toml(EXAMPLE, "example.toml").expect("example policy"))
}

/// The value of the one sample line starting with `prefix`.
fn value(page: &str, prefix: &str) -> f64 {
    let hits: Vec<&str> = page.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(hits.len(), 1, "{prefix}: {hits:?}");
    hits[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn both_directions_per_vip_and_dip_reach_the_page() {
    let p = policy();
    let (pool_id, pool) = p
        .pools()
        .iter()
        .enumerate()
        .find(|(_, x)| x.is_public() && !x.address.is_ipv6())
        .expect("public v4 pool");
    let b = p.balancer();
    let client_mac = MacAddr([2, 0, 0, 0, 1, 0x77]);
    let client: IpAddr = "198.51.100.77".parse().unwrap();
    let mut engine = Engine::new(p.clone(), 0, 1);
    let mut out = vec![0u8; output_len(2048)];
    const FLOWS: u16 = 40;
    let mut per_dip = vec![0u64; pool.dips.len()];
    for i in 0..FLOWS {
        let port = 1024 + i;
        let t = Transport::Tcp {
            src_port: port,
            dst_port: pool.port,
            flags: SYN,
            seq: 1,
            ack: 0,
        };
        let ip = craft::ip_packet(client, pool.address, 64, t, &[]);
        let frame = craft::ip_frame(client_mac, b.external.mac, &ip);
        let Verdict::Forward { matched, .. } = engine.process(SEC, &frame, &mut out) else {
            panic!("SYN not forwarded");
        };
        assert_eq!(matched.pool as usize, pool_id);
        per_dip[usize::from(matched.dip)] += 1;

        // The DIP answers through its host, as NVGRE to the LB.
        let dip = &pool.dips[usize::from(matched.dip)];
        let host = p.host(dip.host);
        let outer = Outer {
            src_mac: host.mac,
            dst_mac: b.provider.mac,
            src: IpAddr::V4(host.pa_v4.unwrap()),
            dst: IpAddr::V4(b.provider.address_v4().unwrap()),
            vsid: dip.vsid.get(),
            flow_id: 7,
        };
        let lb_mac = p.subnet(dip.vsid).unwrap().lb_mac;
        let t = Transport::Tcp {
            src_port: dip.port,
            dst_port: port,
            flags: SYN_ACK,
            seq: 9,
            ack: 2,
        };
        let reply = craft::ip_packet(dip.ca, client, 64, t, &[]);
        let frame = craft::nvgre(&outer, &craft::ip_frame(dip.mac, lb_mac, &reply));
        let v = engine.process(2 * SEC, &frame, &mut out);
        assert!(matches!(v, Verdict::Forward { .. }), "reply: {v:?}");
    }
    let c = engine.counters();
    let counts = &c.pools[pool_id];
    let n = u64::from(FLOWS);
    assert_eq!(counts.packets, [n, n], "forward and return apart");
    assert_eq!(counts.new_flows, n);
    for (j, want) in per_dip.iter().enumerate() {
        assert_eq!(counts.dip_packets[j], [*want, *want], "DIP {j}");
    }
    assert!(
        per_dip.iter().filter(|n| **n > 0).count() > 1,
        "{per_dip:?}"
    );
    for (i, other) in c.pools.iter().enumerate() {
        if i != pool_id {
            assert_eq!(other.packets, [0, 0], "pool {i}");
        }
    }

    // A worker's publisher: counters, occupancy and flows per DIP into its slot.
    let metrics = LbMetrics::new(p.clone(), 1, Arc::new(ControlStats::new()));
    let mut publisher = metrics.publisher(0).unwrap();
    assert!(metrics.publisher(1).is_none());
    publisher.tick(3 * SEC, &engine, &IoCounters::default(), true);
    let s = metrics.slot(0).unwrap().read();
    assert!(s.published);
    assert_eq!(s.flows, n);
    assert_eq!(s.tenant_flows[usize::from(pool.tenant)], n);
    assert_eq!(s.dip_flows[pool_id], per_dip);
    assert_eq!(s.engine, *engine.counters());

    let page = metrics.render();
    let tenant = &p.tenant(pool.tenant).unwrap().name;
    let vip = format!("tenant=\"{tenant}\",vip=\"{}\"", pool.name);
    assert_eq!(
        value(
            &page,
            &format!("nvlb_vip_packets_total{{{vip},direction=\"return\"}}")
        ),
        n as f64
    );
    assert_eq!(
        value(&page, &format!("nvlb_vip_active_flows{{{vip}}}")),
        n as f64
    );
    assert_eq!(value(&page, "nvlb_active_flows{shard=\"0\"}"), n as f64);
    for (j, d) in pool.dips.iter().enumerate() {
        let l = format!("{vip},vsid=\"{}\",dip=\"{}\"", d.vsid.get(), dip_label(d));
        assert_eq!(
            value(&page, &format!("nvlb_dip_active_flows{{{l}}}")),
            per_dip[j] as f64
        );
        assert_eq!(
            value(
                &page,
                &format!("nvlb_dip_packets_total{{{l},direction=\"forward\"}}")
            ),
            per_dip[j] as f64
        );
    }
}

#[test]
fn a_worker_publishes_at_most_every_100_ms() {
    let p = policy();
    let engine = Engine::new(p.clone(), 0, 1);
    let metrics = LbMetrics::new(p, 1, Arc::new(ControlStats::new()));
    let mut publisher = metrics.publisher(0).unwrap();
    let mut io = IoCounters::default();
    publisher.tick(0, &engine, &io, false);
    assert_eq!(metrics.slot(0).unwrap().read().io.rx_frames, 0);
    io.rx_frames = 5;
    publisher.tick(50_000_000, &engine, &io, false);
    assert_eq!(metrics.slot(0).unwrap().read().io.rx_frames, 0, "too soon");
    publisher.tick(100_000_000, &engine, &io, false);
    assert_eq!(metrics.slot(0).unwrap().read().io.rx_frames, 5);
}
