//! The generator's measurements and their report: rates, loss, round-trip
//! percentiles, per-DIP and per-VSID shares against the configured weights, and
//! wrong-tenant deliveries; as a table for people and as JSON for scripts.
//!
//! Pure arithmetic over counts; never reads a clock or a socket.

use std::collections::BTreeMap;
use std::time::Duration;

use hashbrown::HashMap;
use serde::Serialize;

use crate::policy::Snapshot;

use super::payload;
use super::plan::Plan;

/// Most round-trip samples kept; later ones replace earlier ones at random-ish slots,
/// so percentiles stay those of the whole run.
const MAX_SAMPLES: usize = 1 << 21;

/// What one receiver counted.
#[derive(Clone, Debug, Default)]
pub struct RxStats {
    pub packets: u64,
    pub bytes: u64,
    pub wrong_tenant: u64,
    pub mismatched: u64,
    /// (pool, dip) -> (flows, packets); flows are counted by the answer to a flow's
    /// first packet.
    pub per_dip: HashMap<(u16, u16), (u64, u64)>,
    rtt_ns: Vec<u64>,
    seen: u64,
}

impl RxStats {
    pub fn add_rtt(&mut self, ns: u64) {
        self.seen += 1;
        if self.rtt_ns.len() < MAX_SAMPLES {
            self.rtt_ns.push(ns);
        } else {
            // Reservoir sampling with a cheap deterministic mix of the count.
            let r = (self.seen.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) % self.seen;
            if let Some(slot) = self.rtt_ns.get_mut(r as usize) {
                *slot = ns;
            }
        }
    }

    pub fn merge(&mut self, o: RxStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.wrong_tenant += o.wrong_tenant;
        self.mismatched += o.mismatched;
        for (k, (f, p)) in o.per_dip {
            let e = self.per_dip.entry(k).or_insert((0, 0));
            e.0 += f;
            e.1 += p;
        }
        self.seen += o.seen;
        self.rtt_ns.extend(o.rtt_ns);
    }
}

/// One point of the pps timeline.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sample {
    pub t: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
}

/// Round-trip times in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// One DIP's share of its pool.
#[derive(Clone, Debug, Serialize)]
pub struct DipRow {
    pub vip: String,
    pub dip: String,
    pub vsid: u32,
    pub weight: u32,
    pub expected_percent: f64,
    pub flows: u64,
    pub packets: u64,
    pub percent: f64,
    pub deviation_pp: f64,
}

/// One VSID's share of all answers.
#[derive(Clone, Debug, Serialize)]
pub struct VsidRow {
    pub vsid: u32,
    pub tenant: String,
    pub packets: u64,
    pub percent: f64,
    pub expected_percent: f64,
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub seconds: f64,
    pub sent: u64,
    pub sent_bytes: u64,
    /// Frames built but refused by a full device queue until the run ended.
    pub not_sent: u64,
    pub received: u64,
    pub received_bytes: u64,
    pub lost: u64,
    pub loss_percent: f64,
    pub tx_pps: f64,
    pub rx_pps: f64,
    pub tx_mbps: f64,
    pub rx_mbps: f64,
    pub rtt: Latency,
    pub dips: Vec<DipRow>,
    pub vsids: Vec<VsidRow>,
    /// Largest |observed - expected| share of a DIP within its pool, in percentage
    /// points, over pools that saw at least one flow.
    pub max_deviation_pp: f64,
    pub flows_seen: u64,
    pub wrong_tenant: u64,
    pub mismatched: u64,
    pub timeline: Vec<Sample>,
}

pub fn loss_percent(sent: u64, received: u64) -> f64 {
    if sent == 0 {
        0.0
    } else {
        sent.saturating_sub(received) as f64 * 100.0 / sent as f64
    }
}

/// The value at quantile `q` of sorted `v`.
fn quantile(v: &[u64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i.min(v.len() - 1)).copied().unwrap_or(0) as f64 / 1000.0
}

/// Builds the summary from the counts; `elapsed` is the sending time.
pub fn summarize(
    policy: &Snapshot,
    plan: &Plan,
    elapsed: Duration,
    (sent, sent_bytes, not_sent): (u64, u64, u64),
    mut rx: RxStats,
    timeline: Vec<Sample>,
) -> Summary {
    let secs = elapsed.as_secs_f64().max(1e-9);
    rx.rtt_ns.sort_unstable();
    let rtt = Latency {
        samples: rx.seen,
        p50_us: quantile(&rx.rtt_ns, 0.5),
        p90_us: quantile(&rx.rtt_ns, 0.9),
        p99_us: quantile(&rx.rtt_ns, 0.99),
        p999_us: quantile(&rx.rtt_ns, 0.999),
        max_us: rx.rtt_ns.last().copied().unwrap_or(0) as f64 / 1000.0,
    };
    let mut dips = Vec::new();
    let mut max_dev = 0.0f64;
    let mut vsid_packets: BTreeMap<u32, u64> = BTreeMap::new();
    let mut vsid_expected: BTreeMap<u32, f64> = BTreeMap::new();
    let mut flows_seen = 0;
    for t in &plan.targets {
        let Some(pool) = policy.get_pool(u32::from(t.pool)) else {
            continue;
        };
        let total_w: u64 = pool.dips.iter().map(|d| u64::from(d.weight)).sum();
        let pool_flows: u64 = rx
            .per_dip
            .iter()
            .filter(|((p, _), _)| *p == t.pool)
            .map(|(_, (f, _))| *f)
            .sum();
        let pool_packets: u64 = rx
            .per_dip
            .iter()
            .filter(|((p, _), _)| *p == t.pool)
            .map(|(_, (_, n))| *n)
            .sum();
        flows_seen += pool_flows;
        for (i, d) in pool.dips.iter().enumerate() {
            let (flows, packets) = u16::try_from(i)
                .ok()
                .and_then(|i| rx.per_dip.get(&(t.pool, i)).copied())
                .unwrap_or((0, 0));
            let expected = if total_w == 0 {
                0.0
            } else {
                u64::from(d.weight) as f64 * 100.0 / total_w as f64
            };
            let percent = if pool_flows == 0 {
                0.0
            } else {
                flows as f64 * 100.0 / pool_flows as f64
            };
            let deviation = (percent - expected).abs();
            if pool_flows > 0 {
                max_dev = max_dev.max(deviation);
            }
            *vsid_packets.entry(d.vsid.get()).or_default() += packets;
            *vsid_expected.entry(d.vsid.get()).or_default() +=
                pool_packets as f64 * expected / 100.0;
            dips.push(DipRow {
                vip: pool.name.clone(),
                dip: format!("{}:{}", fmt_ip(d.ca), d.port),
                vsid: d.vsid.get(),
                weight: d.weight,
                expected_percent: expected,
                flows,
                packets,
                percent,
                deviation_pp: deviation,
            });
        }
        if let Some(&(flows, packets)) = rx.per_dip.get(&(t.pool, payload::UNSET)) {
            dips.push(DipRow {
                vip: pool.name.clone(),
                dip: "WRONG-TENANT".into(),
                vsid: 0,
                weight: 0,
                expected_percent: 0.0,
                flows,
                packets,
                percent: 0.0,
                deviation_pp: 0.0,
            });
        }
    }
    let total_rx = rx.packets.max(1) as f64;
    let vsids = vsid_packets
        .iter()
        .map(|(&vsid, &packets)| VsidRow {
            vsid,
            tenant: crate::policy::Vsid::new(vsid)
                .and_then(|v| policy.subnet(v))
                .and_then(|s| policy.tenant(s.tenant))
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            packets,
            percent: packets as f64 * 100.0 / total_rx,
            expected_percent: vsid_expected.get(&vsid).copied().unwrap_or(0.0) * 100.0 / total_rx,
        })
        .collect();
    Summary {
        seconds: secs,
        sent,
        sent_bytes,
        not_sent,
        received: rx.packets,
        received_bytes: rx.bytes,
        lost: sent.saturating_sub(rx.packets),
        loss_percent: loss_percent(sent, rx.packets),
        tx_pps: sent as f64 / secs,
        rx_pps: rx.packets as f64 / secs,
        tx_mbps: sent_bytes as f64 * 8.0 / secs / 1e6,
        rx_mbps: rx.bytes as f64 * 8.0 / secs / 1e6,
        rtt,
        dips,
        vsids,
        max_deviation_pp: max_dev,
        flows_seen,
        wrong_tenant: rx.wrong_tenant,
        mismatched: rx.mismatched,
        timeline,
    }
}

fn fmt_ip(a: std::net::IpAddr) -> String {
    match a {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl Summary {
    /// The summary table printed at the end of a run.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "duration        {:.2} s\n\
             sent            {} packets, {} bytes ({:.0} pps, {:.1} Mbit/s){}\n\
             received        {} packets, {} bytes ({:.0} pps, {:.1} Mbit/s)\n\
             lost            {} ({:.3} %)\n\
             rtt (us)        p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)\n\
             flows answered  {}\n\
             wrong tenant    {}\n\
             mismatched      {}\n\
             max deviation   {:.2} percentage points (DIP share of its pool's flows vs weight)\n",
            self.seconds,
            self.sent,
            self.sent_bytes,
            self.tx_pps,
            self.tx_mbps,
            if self.not_sent > 0 {
                format!(", {} not sent (device queue full)", self.not_sent)
            } else {
                String::new()
            },
            self.received,
            self.received_bytes,
            self.rx_pps,
            self.rx_mbps,
            self.lost,
            self.loss_percent,
            self.rtt.p50_us,
            self.rtt.p90_us,
            self.rtt.p99_us,
            self.rtt.p999_us,
            self.rtt.max_us,
            self.rtt.samples,
            self.flows_seen,
            self.wrong_tenant,
            self.mismatched,
            self.max_deviation_pp,
        ));
        s.push_str(&format!(
            "\n{:<14} {:<26} {:>8} {:>6} {:>9} {:>9} {:>8} {:>10} {:>8}\n",
            "vip", "dip", "vsid", "weight", "expected%", "flows", "share%", "packets", "dev pp"
        ));
        for d in &self.dips {
            s.push_str(&format!(
                "{:<14} {:<26} {:>8} {:>6} {:>9.2} {:>9} {:>8.2} {:>10} {:>8.2}\n",
                d.vip,
                d.dip,
                d.vsid,
                d.weight,
                d.expected_percent,
                d.flows,
                d.percent,
                d.packets,
                d.deviation_pp
            ));
        }
        s.push_str(&format!(
            "\n{:<8} {:<10} {:>10} {:>8} {:>9}\n",
            "vsid", "tenant", "packets", "share%", "expected%"
        ));
        for v in &self.vsids {
            s.push_str(&format!(
                "{:<8} {:<10} {:>10} {:>8.2} {:>9.2}\n",
                v.vsid, v.tenant, v.packets, v.percent, v.expected_percent
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_quantiles() {
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(200, 150), 25.0);
        assert_eq!(loss_percent(10, 12), 0.0);
        let v: Vec<u64> = (1..=1000).map(|x| x * 1000).collect();
        assert_eq!(quantile(&v, 0.5), 501.0);
        assert_eq!(quantile(&v, 0.99), 990.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn reservoir_keeps_the_sample_count_bounded() {
        let mut r = RxStats::default();
        for i in 0..(MAX_SAMPLES as u64 + 1000) {
            r.add_rtt(i);
        }
        assert_eq!(r.rtt_ns.len(), MAX_SAMPLES);
        assert_eq!(r.seen, MAX_SAMPLES as u64 + 1000);
    }
}
