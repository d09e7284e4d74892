//! Control-plane statistics: config generation and reloads, DIP health, probe
//! latency, API requests.
//!
//! The control plane (reload, health checks, the management API) calls these methods
//! from its own threads or tasks; the collector reads a copy at scrape time. One
//! mutex guards everything: these events happen a few times a second at most, and
//! the data plane never touches this type. It must never be called per packet.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Upper bounds (seconds) of the probe latency histogram's buckets: a probe crosses the
/// LB's NVGRE path to a VM, so sub-millisecond to a few seconds (the probe timeout).
pub const PROBE_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Status codes reported as zero before the API has answered any, so that rate() over
/// them has a series from the first scrape on.
pub const API_CODES: [u16; 6] = [200, 400, 401, 404, 409, 500];

/// A DIP as the control plane names it: pool (the `vip` label) and `ca:port`.
pub type DipKey = (String, String);

/// Health of one DIP as last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DipHealth {
    pub tenant: String,
    pub vsid: u32,
    pub up: bool,
    /// Up/down transitions reported since start (the first report is not one).
    pub changes: u64,
}

/// Probe latencies of one DIP: cumulative bucket counts, sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `buckets[i]` counts observations `<= PROBE_BUCKETS[i]` (cumulative, as exposed).
    pub buckets: [u64; PROBE_BUCKETS.len()],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let v = if seconds.is_finite() && seconds >= 0.0 {
            seconds
        } else {
            0.0
        };
        for (b, bound) in self.buckets.iter_mut().zip(PROBE_BUCKETS) {
            if v <= bound {
                *b += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// A copy of everything, taken at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlSnapshot {
    pub generation: u64,
    /// None until the first load was reported.
    pub last_reload_ok: Option<bool>,
    /// Unix time (seconds) of the last reload attempt.
    pub last_reload_time: f64,
    /// Unix time of the last successful one.
    pub last_success_time: f64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub health: BTreeMap<DipKey, DipHealth>,
    pub probes: BTreeMap<DipKey, Histogram>,
    pub api: BTreeMap<u16, u64>,
}

/// See the module docs. Shared as `Arc<ControlStats>` between the control plane and
/// the metrics endpoint.
#[derive(Debug, Default)]
pub struct ControlStats {
    inner: Mutex<ControlSnapshot>,
}

impl ControlStats {
    pub fn new() -> ControlStats {
        ControlStats::default()
    }

    /// A poisoned lock only means a reporter panicked mid-update of plain counters:
    /// the values are still meaningful, so keep serving them.
    fn lock(&self) -> MutexGuard<'_, ControlSnapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The generation of the policy now in force (1 for the first load).
    pub fn set_generation(&self, generation: u64) {
        self.lock().generation = generation;
    }

    /// The outcome of a load or reload attempt at `unix_time` seconds.
    pub fn reload_result(&self, ok: bool, unix_time: f64) {
        let mut s = self.lock();
        s.last_reload_ok = Some(ok);
        s.last_reload_time = unix_time;
        if ok {
            s.reloads_ok += 1;
            s.last_success_time = unix_time;
        } else {
            s.reloads_failed += 1;
        }
    }

    /// The health checker's verdict on a DIP (`dip` as `ca:port`, e.g. `10.0.0.5:80`
    /// or `[fd00::5]:80`, the same form the data-plane metrics use).
    pub fn set_dip_health(&self, pool: &str, tenant: &str, vsid: u32, dip: &str, up: bool) {
        let mut s = self.lock();
        let key = (pool.to_string(), dip.to_string());
        match s.health.get_mut(&key) {
            Some(h) => {
                if h.up != up {
                    h.changes += 1;
                }
                h.up = up;
                h.vsid = vsid;
            }
            None => {
                s.health.insert(
                    key,
                    DipHealth {
                        tenant: tenant.to_string(),
                        vsid,
                        up,
                        changes: 0,
                    },
                );
            }
        }
    }

    /// One probe's round-trip time.
    pub fn observe_probe(&self, pool: &str, dip: &str, seconds: f64) {
        self.lock()
            .probes
            .entry((pool.to_string(), dip.to_string()))
            .or_default()
            .observe(seconds);
    }

    /// One answered management-API request.
    pub fn api_request(&self, code: u16) {
        *self.lock().api.entry(code).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> ControlSnapshot {
        self.lock().clone()
    }
}

/// Seconds since the Unix epoch, for [`ControlStats::reload_result`].
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_count_and_remember_the_last() {
        let c = ControlStats::new();
        assert_eq!(c.snapshot().last_reload_ok, None);
        c.set_generation(1);
        c.reload_result(true, 100.0);
        c.set_generation(2);
        c.reload_result(false, 200.0);
        let s = c.snapshot();
        assert_eq!(s.generation, 2);
        assert_eq!(s.last_reload_ok, Some(false));
        assert_eq!((s.reloads_ok, s.reloads_failed), (1, 1));
        assert_eq!(s.last_reload_time, 200.0);
        assert_eq!(s.last_success_time, 100.0);
    }

    #[test]
    fn health_changes_count_transitions_only() {
        let c = ControlStats::new();
        c.set_dip_health("blue-web", "blue", 5001, "10.0.0.5:80", true);
        c.set_dip_health("blue-web", "blue", 5001, "10.0.0.5:80", true);
        c.set_dip_health("blue-web", "blue", 5001, "10.0.0.5:80", false);
        c.set_dip_health("blue-web", "blue", 5001, "10.0.0.5:80", true);
        let s = c.snapshot();
        let h = &s.health[&("blue-web".to_string(), "10.0.0.5:80".to_string())];
        assert!(h.up);
        assert_eq!(h.changes, 2);
    }

    #[test]
    fn probe_histogram_is_cumulative() {
        let c = ControlStats::new();
        for v in [0.0002, 0.003, 0.003, 3.0, f64::NAN] {
            c.observe_probe("p", "d", v);
        }
        let s = c.snapshot();
        let h = &s.probes[&("p".to_string(), "d".to_string())];
        assert_eq!(h.count, 5);
        // NaN is counted as 0 s, 3 s is above every bound.
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[3], 4, "<= 5 ms");
        assert_eq!(h.buckets[PROBE_BUCKETS.len() - 1], 4);
        assert!((h.sum - 3.0062).abs() < 1e-9);
    }

    #[test]
    fn api_requests_by_code() {
        let c = ControlStats::new();
        c.api_request(200);
        c.api_request(200);
        c.api_request(401);
        let s = c.snapshot();
        assert_eq!(s.api.get(&200), Some(&2));
        assert_eq!(s.api.get(&401), Some(&1));
        assert_eq!(s.api.get(&500), None);
    }
}
