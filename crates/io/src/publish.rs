//! Workers publish copies of their counters; the collector reads the copies.
//!
//! Each worker owns a [`Publisher`] and calls [`Publisher::tick`] between batches;
//! every [`PUBLISH_EVERY`] it copies its engine and I/O counters, its shard's
//! occupancy and its flows per tenant and per DIP into its own [`WorkerSlot`]. The
//! packet path itself touches only the worker's plain counters: no atomics, no shared
//! line. The slot's mutex is taken with `try_lock` by the worker (a scrape that holds
//! it delays the copy to the next batch; the worker never waits) and briefly by the
//! collector. Flows per DIP come from a scan of the shard's slab in slices, so a large
//! table never stalls a worker for long.

use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use crate::IoCounters;
use crate::engine::{Counters, Engine};
use crate::flow::Nanos;
use crate::policy::Snapshot;

/// How often a worker copies its counters into its slot (the freshness of a scrape).
pub const PUBLISH_EVERY: Nanos = 100_000_000;
/// How often a new scan of the slab for flows per DIP may start.
pub const SCAN_EVERY: Nanos = 1_000_000_000;
/// Slab slots scanned per batch while the worker is busy (~1 µs).
const SCAN_BUSY: usize = 256;
/// Slab slots scanned per round while the worker is idle.
const SCAN_IDLE: usize = 65536;

/// One worker's published state.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// The snapshot the worker ran when it published: `engine`, `tenant_flows` and
    /// `dip_flows` are indexed by its pools, DIPs and tenants.
    pub policy: Option<Arc<Snapshot>>,
    pub engine: Counters,
    pub io: IoCounters,
    /// Live bindings in the worker's shard.
    pub flows: u64,
    /// The shard's bound (`max_flows_per_worker`).
    pub capacity: u64,
    /// The per-tenant bound within the shard.
    pub tenant_quota: u64,
    /// Live bindings per tenant, indexed like the snapshot's tenants.
    pub tenant_flows: Vec<u64>,
    /// Bindings per pool and DIP (snapshot indices), from the last complete scan.
    pub dip_flows: Vec<Vec<u64>>,
    /// False until the worker published once.
    pub published: bool,
}

/// A worker's published copy, shared with the collector.
#[derive(Debug, Default)]
pub struct WorkerSlot {
    stats: Mutex<WorkerStats>,
}

impl WorkerSlot {
    fn lock(&self) -> MutexGuard<'_, WorkerStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of what the worker last published.
    pub fn read(&self) -> WorkerStats {
        self.lock().clone()
    }

    /// Replaces the published copy (tests and the host simulator's loop use this).
    pub fn store(&self, stats: WorkerStats) {
        *self.lock() = stats;
    }
}

/// The worker's side: when to publish, and the slab scan in progress.
#[derive(Debug)]
pub struct Publisher {
    slot: Arc<WorkerSlot>,
    next_publish: Nanos,
    next_scan: Nanos,
    /// Next slab slot to scan; None when no scan is in progress.
    cursor: Option<usize>,
    tally: Vec<Vec<u64>>,
    counted: Vec<Vec<u64>>,
    /// The snapshot `counted` is indexed by.
    policy: Option<Arc<Snapshot>>,
}

impl Publisher {
    pub fn new(slot: Arc<WorkerSlot>) -> Publisher {
        Publisher {
            slot,
            next_publish: 0,
            next_scan: 0,
            cursor: None,
            tally: Vec::new(),
            counted: Vec::new(),
            policy: None,
        }
    }

    /// Call between batches: advances the scan and publishes when due. `idle` when
    /// the last round found no work (the scan then takes bigger slices).
    pub fn tick(&mut self, now: Nanos, engine: &Engine, io: &IoCounters, idle: bool) {
        // A new snapshot renumbers pools and DIPs: a scan begun under the old one
        // would count into the wrong rows, so start over.
        if !self
            .policy
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, engine.policy()))
        {
            self.policy = Some(engine.policy().clone());
            self.cursor = None;
            self.next_scan = 0;
            self.counted.clear();
        }
        self.scan(now, engine, if idle { SCAN_IDLE } else { SCAN_BUSY });
        if now >= self.next_publish && self.publish(engine, io) {
            self.next_publish = now.saturating_add(PUBLISH_EVERY);
        }
    }

    /// Copies the counters into the slot unless the collector holds it right now;
    /// whether it did.
    pub fn publish(&mut self, engine: &Engine, io: &IoCounters) -> bool {
        let mut s = match self.slot.stats.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        let shard = engine.shard();
        s.policy = Some(engine.policy().clone());
        s.engine.clone_from(engine.counters());
        s.io.clone_from(io);
        s.flows = shard.len() as u64;
        s.capacity = u64::from(shard.limits().max_flows);
        s.tenant_quota = u64::from(shard.limits().max_per_tenant);
        let tenants = engine.policy().tenants();
        s.tenant_flows.clear();
        s.tenant_flows
            .extend(tenants.iter().map(|t| u64::from(shard.tenant_len(t.id))));
        s.dip_flows.clone_from(&self.counted);
        s.published = true;
        true
    }

    fn scan(&mut self, now: Nanos, engine: &Engine, budget: usize) {
        let shard = engine.shard();
        let start = match self.cursor {
            Some(c) => c,
            None if now >= self.next_scan => {
                self.next_scan = now.saturating_add(SCAN_EVERY);
                let pools = engine.policy().pools();
                self.tally.clear();
                self.tally
                    .extend(pools.iter().map(|p| vec![0u64; p.dips.len()]));
                0
            }
            None => return,
        };
        let end = start.saturating_add(budget).min(shard.slots());
        for id in start..end {
            let Ok(id) = u32::try_from(id) else { break };
            if let Some(f) = shard.live(id)
                && let Some(pool) = self.tally.get_mut(f.pool as usize)
                && let Some(n) = pool.get_mut(usize::from(f.dip))
            {
                *n += 1;
            }
        }
        if end >= shard.slots() {
            std::mem::swap(&mut self.tally, &mut self.counted);
            self.cursor = None;
        } else {
            self.cursor = Some(end);
        }
    }
}
