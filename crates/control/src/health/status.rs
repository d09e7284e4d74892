//! The health of every checked DIP, shared with whoever reports it (the management
//! API, metrics): the prober publishes a fresh copy after each round, readers take a
//! copy. Readers never hold the lock while they work, and the prober never waits on
//! them for longer than a copy.

use std::sync::Mutex;
use std::time::Duration;

use crate::policy::DipKey;

/// One DIP of one pool, as its health check last saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DipHealth {
    /// The pool (VIP) name: a DIP in two pools is checked once per pool.
    pub pool: String,
    pub dip: DipKey,
    /// `"tcp"` or `"http"`.
    pub protocol: &'static str,
    /// The port probed (the DIP's, unless the check names one).
    pub port: u16,
    /// Whether it takes new flows as far as health goes (a DIP starts up).
    pub up: bool,
    /// Time from SYN to the deciding answer of the last successful probe.
    pub last_latency: Option<Duration>,
    /// `"ok"` or why the last probe failed (`timeout`, `reset`, `status 503`, ...);
    /// `None` before the first probe ended.
    pub last_result: Option<String>,
    /// Probes ended so far, and how many of them failed.
    pub probes: u64,
    pub failures: u64,
    /// Consecutive results like the last one.
    pub streak: u32,
}

/// The shared table; cheap to read, written once per prober round.
#[derive(Debug, Default)]
pub struct HealthStatus {
    dips: Mutex<Vec<DipHealth>>,
}

impl HealthStatus {
    pub fn new() -> HealthStatus {
        HealthStatus::default()
    }

    /// Every checked DIP, in policy order.
    pub fn snapshot(&self) -> Vec<DipHealth> {
        self.lock().clone()
    }

    /// One DIP of one pool, if it is checked.
    pub fn get(&self, pool: &str, dip: DipKey) -> Option<DipHealth> {
        self.lock()
            .iter()
            .find(|d| d.pool == pool && d.dip == dip)
            .cloned()
    }

    pub(crate) fn publish(&self, dips: Vec<DipHealth>) {
        *self.lock() = dips;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<DipHealth>> {
        // The vector is replaced whole, so a poisoned lock still holds a consistent one.
        self.dips.lock().unwrap_or_else(|p| p.into_inner())
    }
}
