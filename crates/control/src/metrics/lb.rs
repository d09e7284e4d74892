//! The LB's collector: sums the workers' published counters at scrape time and
//! renders every `nvlb_` family, labelled from the policy snapshot in force.
//!
//! Label values come only from the policy (tenant, VIP pool name, VSID, DIP `ca:port`),
//! from closed lists (drop reasons, directions) or from small counts (shard numbers,
//! HTTP status codes), so a series set is bounded by the config. It must never label
//! by anything a packet carries (client addresses, ports).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dataplane::IoCounters;
use crate::engine::{Counters, DropReason};
use crate::policy::{Dip, Snapshot, VipPool};

use super::control::{API_CODES, ControlStats, Histogram, PROBE_BUCKETS};
use super::publish::{Publisher, WorkerSlot, WorkerStats};
use super::text::{Exposition, Kind};

/// The LB's metrics: one slot per worker, the policy for labels, the control plane's
/// statistics.
#[derive(Debug)]
pub struct LbMetrics {
    policy: ArcSwap<Snapshot>,
    slots: Vec<Arc<WorkerSlot>>,
    control: Arc<ControlStats>,
}

/// The label value of a DIP: `10.0.0.5:80`, `[fd00::5]:80`.
pub fn dip_label(d: &Dip) -> String {
    SocketAddr::new(d.ca, d.port).to_string()
}

/// I/O events that lose a frame, exported among the drops under these reasons.
fn io_drops(io: &IoCounters) -> [(&'static str, u64); 7] {
    [
        ("rx_truncated", io.rx_truncated),
        ("rx_error", io.rx_errors),
        ("rx_vlan_tagged", io.rx_vlan_tagged),
        ("tx_queue_full", io.tx_queue_full),
        ("tx_error", io.tx_errors),
        ("handoff_queue_full", io.handoff_queue_full),
        ("handoff_bounced", io.handoff_bounced),
    ]
}

const DIRECTIONS: [&str; 2] = ["forward", "return"];

impl LbMetrics {
    pub fn new(policy: Arc<Snapshot>, workers: usize, control: Arc<ControlStats>) -> LbMetrics {
        LbMetrics {
            policy: ArcSwap::new(policy),
            slots: (0..workers).map(|_| Arc::default()).collect(),
            control,
        }
    }

    /// The publisher of worker `i` (None beyond the worker count given to `new`).
    pub fn publisher(&self, i: usize) -> Option<Publisher> {
        self.slots.get(i).map(|s| Publisher::new(s.clone()))
    }

    pub fn slot(&self, i: usize) -> Option<&Arc<WorkerSlot>> {
        self.slots.get(i)
    }

    pub fn control(&self) -> &Arc<ControlStats> {
        &self.control
    }

    /// The snapshot labels are taken from; call after the workers got a new one (their
    /// counters re-indexed with `Counters::remap`).
    pub fn set_policy(&self, policy: Arc<Snapshot>) {
        self.policy.store(policy);
    }

    /// The whole page, summed now.
    pub fn render(&self) -> String {
        let policy = self.policy.load_full();
        render(&policy, &self.stats(&policy), &self.control)
    }

    /// Every worker's published counters, re-indexed to `policy` where a worker still
    /// ran another snapshot (a reload between two publications): counters by identity
    /// (pool name, DIP key), flow gauges left out until that worker publishes again.
    pub fn stats(&self, policy: &Arc<Snapshot>) -> Vec<WorkerStats> {
        self.slots
            .iter()
            .map(|s| {
                let mut w = s.read();
                if let Some(own) = w.policy.clone()
                    && !Arc::ptr_eq(&own, policy)
                {
                    w.engine = w.engine.remap(&own, policy);
                    w.tenant_flows.clear();
                    w.dip_flows.clear();
                    w.policy = Some(policy.clone());
                }
                w
            })
            .collect()
    }

    /// The snapshot labels come from now.
    pub fn policy(&self) -> Arc<Snapshot> {
        self.policy.load_full()
    }
}

/// Renders from explicit inputs (the benchmark and the tests call this directly).
pub fn render(policy: &Snapshot, stats: &[WorkerStats], control: &ControlStats) -> String {
    let mut engine = Counters::for_policy(policy);
    let mut io = IoCounters::default();
    for s in stats {
        engine.add(&s.engine);
        io.add(&s.io);
    }
    let ctl = control.snapshot();
    let mut e = Exposition::new();
    let tenant_name = |p: &VipPool| {
        policy
            .tenant(p.tenant)
            .map(|t| t.name.clone())
            .unwrap_or_default()
    };

    e.family(
        "nvlb_build_info",
        Kind::Gauge,
        "Always 1; the version of nvlb that serves these metrics.",
    );
    e.sample(
        "nvlb_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1u64,
    );
    e.family(
        "nvlb_workers",
        Kind::Gauge,
        "Data-plane worker threads (flow shards).",
    );
    e.sample("nvlb_workers", &[], stats.len() as u64);

    totals(&mut e, &engine, &io);

    // Flow tables.
    e.family(
        "nvlb_active_flows",
        Kind::Gauge,
        "Live bindings in a worker's flow shard.",
    );
    for (i, s) in stats.iter().enumerate() {
        e.sample("nvlb_active_flows", &[("shard", &i.to_string())], s.flows);
    }
    e.family(
        "nvlb_flow_table_capacity",
        Kind::Gauge,
        "Bindings a worker's flow shard holds at most (max_flows_per_worker).",
    );
    for (i, s) in stats.iter().enumerate() {
        let cap = if s.published {
            s.capacity
        } else {
            u64::from(policy.balancer().flows.max_flows_per_worker)
        };
        e.sample(
            "nvlb_flow_table_capacity",
            &[("shard", &i.to_string())],
            cap,
        );
    }
    e.family(
        "nvlb_tenant_active_flows",
        Kind::Gauge,
        "Live bindings of a tenant in a worker's flow shard.",
    );
    for (i, s) in stats.iter().enumerate() {
        let shard = i.to_string();
        for t in policy.tenants() {
            let n = s.tenant_flows.get(usize::from(t.id)).copied().unwrap_or(0);
            e.sample(
                "nvlb_tenant_active_flows",
                &[("tenant", &t.name), ("shard", &shard)],
                n,
            );
        }
    }
    e.family(
        "nvlb_tenant_flow_quota",
        Kind::Gauge,
        "Bindings one tenant may hold in one worker's shard (max_flows_per_tenant).",
    );
    e.sample(
        "nvlb_tenant_flow_quota",
        &[],
        u64::from(policy.balancer().flows.max_flows_per_tenant),
    );

    // Flows per pool and DIP, summed over the workers.
    let dip_flows: Vec<Vec<u64>> = policy
        .pools()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (0..p.dips.len())
                .map(|j| {
                    stats
                        .iter()
                        .filter_map(|s| s.dip_flows.get(i)?.get(j))
                        .sum()
                })
                .collect()
        })
        .collect();

    vips(&mut e, policy, &engine, &dip_flows, &tenant_name);
    dips(&mut e, policy, &engine, &dip_flows, &ctl, &tenant_name);
    nat(&mut e, policy, &dip_flows);
    control_plane(&mut e, policy, &ctl, &tenant_name);
    e.finish()
}

fn totals(e: &mut Exposition, engine: &Counters, io: &IoCounters) {
    e.family(
        "nvlb_received_packets_total",
        Kind::Counter,
        "Frames the engine examined (both ports, handed-over frames included).",
    );
    e.sample("nvlb_received_packets_total", &[], engine.packets_in);
    e.family(
        "nvlb_received_bytes_total",
        Kind::Counter,
        "Bytes of the frames the engine examined.",
    );
    e.sample("nvlb_received_bytes_total", &[], engine.bytes_in);
    e.family(
        "nvlb_sent_packets_total",
        Kind::Counter,
        "Frames the engine emitted: forwarded (translated traffic) or replied (ARP/ND, \
         echo, packet-too-big).",
    );
    e.sample(
        "nvlb_sent_packets_total",
        &[("kind", "forwarded")],
        engine.forwarded,
    );
    e.sample(
        "nvlb_sent_packets_total",
        &[("kind", "replied")],
        engine.replied,
    );
    e.family(
        "nvlb_sent_bytes_total",
        Kind::Counter,
        "Bytes of the frames the engine emitted.",
    );
    e.sample("nvlb_sent_bytes_total", &[], engine.bytes_out);
    e.family(
        "nvlb_new_flows_total",
        Kind::Counter,
        "Bindings created (new connections balanced to a DIP).",
    );
    e.sample("nvlb_new_flows_total", &[], engine.new_flows);
    e.family(
        "nvlb_idle_resets_total",
        Kind::Counter,
        "RST segments for TCP flows that timed out idle under a tcp_reset rule, two per \
         flow (client, DIP): sent, or not sent (reset queue full, policy changed first, \
         path gone).",
    );
    e.sample(
        "nvlb_idle_resets_total",
        &[("outcome", "sent")],
        engine.idle_resets_sent,
    );
    e.sample(
        "nvlb_idle_resets_total",
        &[("outcome", "not_sent")],
        engine.idle_resets_unsent,
    );
    e.family(
        "nvlb_handoffs_total",
        Kind::Counter,
        "Frames a worker handed to the worker owning their flow.",
    );
    e.sample("nvlb_handoffs_total", &[], io.handoff_sent);
    e.family(
        "nvlb_interface_frames_total",
        Kind::Counter,
        "Frames received from and sent to the LB's sockets.",
    );
    e.sample(
        "nvlb_interface_frames_total",
        &[("direction", "rx")],
        io.rx_frames,
    );
    e.sample(
        "nvlb_interface_frames_total",
        &[("direction", "tx")],
        io.tx_frames,
    );
    e.family(
        "nvlb_drops_total",
        Kind::Counter,
        "Frames dropped, by reason: the engine's reasons (docs/metrics.md) and I/O \
         losses (rx_*, tx_*, handoff_*).",
    );
    for r in DropReason::ALL {
        e.sample(
            "nvlb_drops_total",
            &[("reason", r.name())],
            engine.dropped(*r),
        );
    }
    for (reason, v) in io_drops(io) {
        e.sample("nvlb_drops_total", &[("reason", reason)], v);
    }
}

fn vips(
    e: &mut Exposition,
    policy: &Snapshot,
    engine: &Counters,
    dip_flows: &[Vec<u64>],
    tenant_name: &dyn Fn(&VipPool) -> String,
) {
    e.family(
        "nvlb_vip_info",
        Kind::Gauge,
        "Always 1: a VIP pool's frontend (VSID 0 = public), address, protocol and port.",
    );
    for p in policy.pools() {
        let port = p.port.to_string();
        let vsid = p.frontend.get().to_string();
        let addr = p.address.to_string();
        e.sample(
            "nvlb_vip_info",
            &[
                ("tenant", &tenant_name(p)),
                ("vip", &p.name),
                ("vsid", &vsid),
                ("address", &addr),
                ("protocol", p.protocol.name()),
                ("port", &port),
            ],
            1u64,
        );
    }
    type Field = fn(&crate::engine::counters::PoolCounters, usize) -> u64;
    let per_direction: [(&str, &str, Field); 3] = [
        (
            "nvlb_vip_packets_total",
            "Packets of a VIP's flows, by direction (forward: client to DIP).",
            |c, d| c.packets[d],
        ),
        (
            "nvlb_vip_received_bytes_total",
            "Bytes of a VIP's packets as received (outer headers included).",
            |c, d| c.bytes_in[d],
        ),
        (
            "nvlb_vip_sent_bytes_total",
            "Bytes of a VIP's packets as sent (outer headers included).",
            |c, d| c.bytes_out[d],
        ),
    ];
    for (name, help, field) in per_direction {
        e.family(name, Kind::Counter, help);
        for (i, p) in policy.pools().iter().enumerate() {
            let tenant = tenant_name(p);
            for (d, dir) in DIRECTIONS.iter().enumerate() {
                let v = engine.pools.get(i).map(|c| field(c, d)).unwrap_or(0);
                e.sample(
                    name,
                    &[("tenant", &tenant), ("vip", &p.name), ("direction", dir)],
                    v,
                );
            }
        }
    }
    e.family(
        "nvlb_vip_new_flows_total",
        Kind::Counter,
        "Bindings created for a VIP.",
    );
    for (i, p) in policy.pools().iter().enumerate() {
        let v = engine.pools.get(i).map(|c| c.new_flows).unwrap_or(0);
        e.sample(
            "nvlb_vip_new_flows_total",
            &[("tenant", &tenant_name(p)), ("vip", &p.name)],
            v,
        );
    }
    e.family(
        "nvlb_vip_active_flows",
        Kind::Gauge,
        "Live bindings of a VIP (as of the workers' last scan, at most a few seconds old).",
    );
    for (i, p) in policy.pools().iter().enumerate() {
        let v: u64 = dip_flows.get(i).map(|d| d.iter().sum()).unwrap_or(0);
        e.sample(
            "nvlb_vip_active_flows",
            &[("tenant", &tenant_name(p)), ("vip", &p.name)],
            v,
        );
    }
}

/// Whether a DIP is up: the health checker's last word, else (no checker yet) whether
/// the policy gives it weight, i.e. whether Maglev sends it flows.
fn dip_up(ctl: &super::control::ControlSnapshot, pool: &VipPool, d: &Dip, label: &str) -> bool {
    if ctl.health.is_empty() {
        return d.weight > 0;
    }
    ctl.health
        .get(&(pool.name.clone(), label.to_string()))
        .map(|h| h.up)
        .unwrap_or(d.weight > 0)
}

fn dips(
    e: &mut Exposition,
    policy: &Snapshot,
    engine: &Counters,
    dip_flows: &[Vec<u64>],
    ctl: &super::control::ControlSnapshot,
    tenant_name: &dyn Fn(&VipPool) -> String,
) {
    /// One DIP with its label values, made once per scrape.
    struct Row<'a> {
        tenant: String,
        pool: &'a VipPool,
        pool_index: usize,
        index: usize,
        dip: &'a Dip,
        vsid: String,
        label: String,
    }
    impl Row<'_> {
        fn labels(&self) -> [(&str, &str); 4] {
            [
                ("tenant", &self.tenant),
                ("vip", &self.pool.name),
                ("vsid", &self.vsid),
                ("dip", &self.label),
            ]
        }

        fn with<'a>(&'a self, k: &'a str, v: &'a str) -> [(&'a str, &'a str); 5] {
            let [a, b, c, d] = self.labels();
            [a, b, c, d, (k, v)]
        }

        fn key(&self) -> super::control::DipKey {
            (self.pool.name.clone(), self.label.clone())
        }
    }
    let pools: Vec<Vec<Row>> = policy
        .pools()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let tenant = tenant_name(p);
            p.dips
                .iter()
                .enumerate()
                .map(|(j, d)| Row {
                    tenant: tenant.clone(),
                    pool: p,
                    pool_index: i,
                    index: j,
                    dip: d,
                    vsid: d.vsid.get().to_string(),
                    label: dip_label(d),
                })
                .collect()
        })
        .collect();
    let rows = || pools.iter().flatten();

    e.family(
        "nvlb_dip_packets_total",
        Kind::Counter,
        "Packets of flows bound to a DIP, by direction (forward: client to DIP).",
    );
    for r in rows() {
        let counts = engine
            .pools
            .get(r.pool_index)
            .and_then(|c| c.dip_packets.get(r.index))
            .copied()
            .unwrap_or([0; 2]);
        for (dir, v) in DIRECTIONS.iter().zip(counts) {
            e.sample("nvlb_dip_packets_total", &r.with("direction", dir), v);
        }
    }
    e.family(
        "nvlb_dip_active_flows",
        Kind::Gauge,
        "Live bindings to a DIP (as of the workers' last scan).",
    );
    for r in rows() {
        let v = dip_flows
            .get(r.pool_index)
            .and_then(|d| d.get(r.index))
            .copied()
            .unwrap_or(0);
        e.sample("nvlb_dip_active_flows", &r.labels(), v);
    }
    e.family(
        "nvlb_dip_weight",
        Kind::Gauge,
        "A DIP's weight in its pool's Maglev table, from the policy.",
    );
    for r in rows() {
        e.sample("nvlb_dip_weight", &r.labels(), u64::from(r.dip.weight));
    }
    e.family(
        "nvlb_dip_up",
        Kind::Gauge,
        "1 when a DIP takes new flows: healthy by its checks (without health checks: \
         weight above 0), else 0.",
    );
    let up: Vec<Vec<bool>> = pools
        .iter()
        .map(|p| {
            p.iter()
                .map(|r| dip_up(ctl, r.pool, r.dip, &r.label))
                .collect()
        })
        .collect();
    for (r, u) in rows().zip(up.iter().flatten()) {
        e.sample("nvlb_dip_up", &r.labels(), u64::from(*u));
    }
    e.family(
        "nvlb_pool_dips",
        Kind::Gauge,
        "DIPs declared in a VIP's pool.",
    );
    for p in &pools {
        let Some(first) = p.first() else { continue };
        let l = [("tenant", first.tenant.as_str()), ("vip", &first.pool.name)];
        e.sample("nvlb_pool_dips", &l, p.len() as u64);
    }
    e.family(
        "nvlb_pool_healthy_dips",
        Kind::Gauge,
        "DIPs of a VIP's pool that are up.",
    );
    for (p, u) in pools.iter().zip(&up) {
        let Some(first) = p.first() else { continue };
        let l = [("tenant", first.tenant.as_str()), ("vip", &first.pool.name)];
        let n = u.iter().filter(|x| **x).count();
        e.sample("nvlb_pool_healthy_dips", &l, n as u64);
    }
    e.family(
        "nvlb_dip_health_changes_total",
        Kind::Counter,
        "Up/down transitions of a DIP reported by its health checks.",
    );
    for r in rows() {
        let n = if ctl.health.is_empty() {
            0
        } else {
            ctl.health.get(&r.key()).map(|h| h.changes).unwrap_or(0)
        };
        e.sample("nvlb_dip_health_changes_total", &r.labels(), n);
    }
    e.family(
        "nvlb_health_probe_duration_seconds",
        Kind::Histogram,
        "Round-trip time of a DIP's health probes.",
    );
    let empty = Histogram::default();
    let bounds: Vec<String> = PROBE_BUCKETS.iter().map(|b| b.to_string()).collect();
    for r in rows() {
        let h = if ctl.probes.is_empty() {
            &empty
        } else {
            ctl.probes.get(&r.key()).unwrap_or(&empty)
        };
        let bucket = "nvlb_health_probe_duration_seconds_bucket";
        for (bound, n) in bounds.iter().zip(h.buckets) {
            e.sample(bucket, &r.with("le", bound), n);
        }
        e.sample(bucket, &r.with("le", "+Inf"), h.count);
        e.sample("nvlb_health_probe_duration_seconds_sum", &r.labels(), h.sum);
        e.sample(
            "nvlb_health_probe_duration_seconds_count",
            &r.labels(),
            h.count,
        );
    }
}

/// Source-NAT ports per VSID. A port is taken per DIP endpoint (the same port may
/// serve different DIPs), so what runs out first is the busiest endpoint: in use and
/// free are reported for the endpoint with the fewest free ports.
fn nat(e: &mut Exposition, policy: &Snapshot, dip_flows: &[Vec<u64>]) {
    let capacity = |vsid, v6| -> u64 {
        policy
            .snat_ranges(vsid, v6)
            .map(|r| u64::from(r.len()))
            .sum()
    };
    // Bindings per full-NAT endpoint (VSID, CA, port), over all CA-VIP pools.
    let mut used: BTreeMap<(u32, IpAddr, u16), u64> = BTreeMap::new();
    for (i, p) in policy.pools().iter().enumerate() {
        if p.is_public() {
            continue;
        }
        for (j, d) in p.dips.iter().enumerate() {
            let n = dip_flows
                .get(i)
                .and_then(|v| v.get(j))
                .copied()
                .unwrap_or(0);
            *used.entry((d.vsid.get(), d.ca, d.port)).or_insert(0) += n;
        }
    }
    // Per VSID: (in use, capacity) of the endpoint with the fewest free ports.
    let mut worst: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for s in policy.subnets() {
        if s.snat.is_empty() {
            continue;
        }
        let cap = capacity(s.vsid, false).max(capacity(s.vsid, true));
        worst.insert(s.vsid.get(), (0, cap));
    }
    for (&(vsid, ca, _), &n) in &used {
        let Some(v) = crate::policy::Vsid::new(vsid) else {
            continue;
        };
        let cap = capacity(v, ca.is_ipv6());
        let free = cap.saturating_sub(n);
        let slot = worst.entry(vsid).or_insert((n, cap));
        if free < slot.1.saturating_sub(slot.0) {
            *slot = (n, cap);
        }
    }
    let rows: Vec<(String, u64, u64)> = worst
        .into_iter()
        .map(|(v, (n, cap))| (v.to_string(), n, cap))
        .collect();
    e.family(
        "nvlb_nat_ports",
        Kind::Gauge,
        "Source-NAT ports a DIP endpoint of this VSID can use (its family's SNAT ranges).",
    );
    for (v, _, cap) in &rows {
        e.sample("nvlb_nat_ports", &[("vsid", v)], *cap);
    }
    e.family(
        "nvlb_nat_ports_in_use",
        Kind::Gauge,
        "Source-NAT ports held by bindings, at the VSID's busiest DIP endpoint.",
    );
    for (v, n, _) in &rows {
        e.sample("nvlb_nat_ports_in_use", &[("vsid", v)], *n);
    }
    e.family(
        "nvlb_nat_ports_free",
        Kind::Gauge,
        "Source-NAT ports still free at the VSID's busiest DIP endpoint.",
    );
    for (v, n, cap) in &rows {
        e.sample(
            "nvlb_nat_ports_free",
            &[("vsid", v)],
            cap.saturating_sub(*n),
        );
    }
}

fn control_plane(
    e: &mut Exposition,
    _policy: &Snapshot,
    ctl: &super::control::ControlSnapshot,
    _tenant_name: &dyn Fn(&VipPool) -> String,
) {
    e.family(
        "nvlb_config_generation",
        Kind::Gauge,
        "Generation of the policy in force (1 = the one loaded at start).",
    );
    e.sample("nvlb_config_generation", &[], ctl.generation);
    e.family(
        "nvlb_config_last_reload_success",
        Kind::Gauge,
        "1 when the last load or reload of the policy succeeded, else 0.",
    );
    if let Some(ok) = ctl.last_reload_ok {
        e.sample("nvlb_config_last_reload_success", &[], u64::from(ok));
    }
    e.family(
        "nvlb_config_last_reload_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last load or reload attempt.",
    );
    e.sample(
        "nvlb_config_last_reload_timestamp_seconds",
        &[],
        ctl.last_reload_time,
    );
    e.family(
        "nvlb_config_last_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last successful load or reload.",
    );
    e.sample(
        "nvlb_config_last_success_timestamp_seconds",
        &[],
        ctl.last_success_time,
    );
    e.family(
        "nvlb_config_reloads_total",
        Kind::Counter,
        "Loads and reloads of the policy, by result.",
    );
    e.sample(
        "nvlb_config_reloads_total",
        &[("result", "success")],
        ctl.reloads_ok,
    );
    e.sample(
        "nvlb_config_reloads_total",
        &[("result", "failure")],
        ctl.reloads_failed,
    );
    e.family(
        "nvlb_api_requests_total",
        Kind::Counter,
        "Management API requests answered, by HTTP status code.",
    );
    let mut codes = ctl.api.clone();
    for c in API_CODES {
        codes.entry(c).or_insert(0);
    }
    for (code, n) in codes {
        e.sample("nvlb_api_requests_total", &[("code", &code.to_string())], n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const EXAMPLE_POLICY: &str = include_str!("../../../../lb-config/example.toml");

    fn policy() -> Snapshot {
        Snapshot::from_toml(EXAMPLE_POLICY, "example.toml").expect("example policy")
    }

    /// The value of the one sample line that starts with `prefix` and ends in a value.
    fn value(page: &str, prefix: &str) -> f64 {
        let hits: Vec<&str> = page.lines().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(hits.len(), 1, "{prefix}: {hits:?}");
        hits[0].rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// The idle resets an engine sent reach the page as a worker publishes them
    /// (the engine's own test, engine/tests/rules.rs, checks the resets themselves).
    #[test]
    fn idle_resets_an_engine_sent_are_on_the_page() {
        use crate::craft::{self, Transport};
        use crate::engine::{Engine, Verdict};
        use crate::wire::{MacAddr, tcp::flags};
        const SEC: u64 = 1_000_000_000;
        // The example with Blue's rules, among them blue-quiet (203.0.113.31:80,
        // tcp_reset, idle timeout 4 s), before Red's tenant table.
        let rules = include_str!("../../../proto/src/engine/tests/rules.toml");
        let red = "[[tenant]]\nname = \"red\"";
        let text = EXAMPLE_POLICY.replacen(red, &format!("{rules}\n{red}"), 1);
        let p = Arc::new(Snapshot::from_toml(&text, "rules.toml").expect("rules policy"));
        let mut engine = Engine::new(p.clone(), 0, 1);
        let mut out = vec![0u8; 2048];
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let quiet: IpAddr = "203.0.113.31".parse().unwrap();
        let from_client = |f: u8, seq: u32, ack: u32| {
            let t = Transport::Tcp {
                src_port: 40000,
                dst_port: 80,
                flags: f,
                seq,
                ack,
            };
            let ip = craft::ip_packet(client, quiet, 64, t, b"");
            craft::ip_frame(MacAddr([2, 0, 0, 0, 1, 7]), p.balancer().external.mac, &ip)
        };
        let Verdict::Forward { len, .. } =
            engine.process(SEC, &from_client(flags::SYN, 1000, 0), &mut out)
        else {
            panic!("the SYN is forwarded");
        };
        let syn_ack = craft::tunnel_reply(&out[..len], flags::SYN | flags::ACK, 5000, 1001)
            .expect("NVGRE with TCP");
        assert!(matches!(
            engine.process(SEC, &syn_ack, &mut out),
            Verdict::Forward { .. }
        ));
        let ack = from_client(flags::ACK, 1001, 5001);
        assert!(matches!(
            engine.process(SEC, &ack, &mut out),
            Verdict::Forward { .. }
        ));
        assert_eq!(engine.expire(6 * SEC, 100), 1);
        while engine.next_reset(&mut out).is_some() {}
        assert_eq!(engine.counters().idle_resets_sent, 2, "one RST to each end");

        let metrics = LbMetrics::new(p.clone(), 1, Arc::new(ControlStats::new()));
        let mut publisher = metrics.publisher(0).unwrap();
        publisher.tick(61 * SEC, &engine, &Default::default(), true);
        let page = metrics.render();
        for line in [
            "nvlb_idle_resets_total{outcome=\"sent\"} 2",
            "nvlb_idle_resets_total{outcome=\"not_sent\"} 0",
        ] {
            assert!(page.lines().any(|l| l == line), "{line} not on the page");
        }
    }

    #[test]
    fn sums_workers_and_labels_from_policy() {
        let p = policy();
        let pool = p.pools().iter().position(|x| x.is_public()).unwrap();
        let name = p.pools()[pool].name.clone();
        let tenant = p.tenant(p.pools()[pool].tenant).unwrap().name.clone();
        let mut stats = Vec::new();
        for w in 0..2u64 {
            let mut c = Counters::for_policy(&p);
            c.packets_in = 10 + w;
            c.pools[pool].packets = [3 + w, 1];
            c.pools[pool].dip_packets[0] = [2, w];
            c.drops[DropReason::NoFlow as usize] = 4;
            let mut dip_flows: Vec<Vec<u64>> =
                p.pools().iter().map(|x| vec![0; x.dips.len()]).collect();
            dip_flows[pool][0] = 5;
            stats.push(WorkerStats {
                engine: c,
                flows: 7 * (w + 1),
                capacity: 100,
                dip_flows,
                published: true,
                ..WorkerStats::default()
            });
        }
        let control = ControlStats::new();
        control.set_generation(3);
        control.reload_result(true, 1234.5);
        control.api_request(401);
        let page = render(&p, &stats, &control);
        assert_eq!(value(&page, "nvlb_received_packets_total "), 21.0);
        assert_eq!(
            value(&page, "nvlb_drops_total{reason=\"no_flow\"}"),
            8.0,
            "drops summed"
        );
        let l = format!("{{tenant=\"{tenant}\",vip=\"{name}\",direction=\"forward\"}}");
        assert_eq!(value(&page, &format!("nvlb_vip_packets_total{l}")), 7.0);
        let dip = dip_label(&p.pools()[pool].dips[0]);
        let vsid = p.pools()[pool].dips[0].vsid.get();
        let dl = format!(
            "{{tenant=\"{tenant}\",vip=\"{name}\",vsid=\"{vsid}\",dip=\"{dip}\",direction=\"return\"}}"
        );
        assert_eq!(value(&page, &format!("nvlb_dip_packets_total{dl}")), 1.0);
        let al = format!("{{tenant=\"{tenant}\",vip=\"{name}\",vsid=\"{vsid}\",dip=\"{dip}\"}}");
        assert_eq!(value(&page, &format!("nvlb_dip_active_flows{al}")), 10.0);
        assert_eq!(value(&page, &format!("nvlb_dip_up{al}")), 1.0);
        assert_eq!(value(&page, "nvlb_active_flows{shard=\"1\"}"), 14.0);
        assert_eq!(value(&page, "nvlb_config_generation "), 3.0);
        assert_eq!(value(&page, "nvlb_config_last_reload_success "), 1.0);
        assert_eq!(value(&page, "nvlb_api_requests_total{code=\"401\"}"), 1.0);
        assert_eq!(value(&page, "nvlb_api_requests_total{code=\"200\"}"), 0.0);
        // Every sample belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in page.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|b| declared.contains(*b))
                    .unwrap_or(name);
                assert!(declared.contains(base), "{line}");
            }
        }
    }

    #[test]
    fn health_reports_override_weights_and_count_healthy_dips() {
        let p = policy();
        let pool = &p.pools()[0];
        let tenant = p.tenant(pool.tenant).unwrap().name.clone();
        let control = ControlStats::new();
        for d in &pool.dips {
            control.set_dip_health(&pool.name, &tenant, d.vsid.get(), &dip_label(d), false);
        }
        let page = render(&p, &[WorkerStats::default()], &control);
        let l = format!(
            "nvlb_pool_healthy_dips{{tenant=\"{tenant}\",vip=\"{}\"}}",
            pool.name
        );
        assert_eq!(value(&page, &l), 0.0);
        control.set_dip_health(
            &pool.name,
            &tenant,
            pool.dips[0].vsid.get(),
            &dip_label(&pool.dips[0]),
            true,
        );
        let page = render(&p, &[WorkerStats::default()], &control);
        assert_eq!(value(&page, &l), 1.0);
    }

    #[test]
    fn nat_ports_follow_the_busiest_endpoint() {
        let p = policy();
        let (i, pool) = p
            .pools()
            .iter()
            .enumerate()
            .find(|(_, x)| !x.is_public())
            .expect("a CA VIP pool");
        let vsid = pool.dips[0].vsid;
        let cap: u64 = p
            .snat_ranges(vsid, pool.dips[0].ca.is_ipv6())
            .map(|r| u64::from(r.len()))
            .sum();
        let mut dip_flows: Vec<Vec<u64>> =
            p.pools().iter().map(|x| vec![0; x.dips.len()]).collect();
        dip_flows[i][0] = 42;
        let stats = [WorkerStats {
            dip_flows,
            ..WorkerStats::default()
        }];
        let page = render(&p, &stats, &ControlStats::new());
        let v = vsid.get();
        assert_eq!(
            value(&page, &format!("nvlb_nat_ports_in_use{{vsid=\"{v}\"}}")),
            42.0
        );
        assert_eq!(
            value(&page, &format!("nvlb_nat_ports_free{{vsid=\"{v}\"}}")),
            (cap - 42) as f64
        );
    }
}
