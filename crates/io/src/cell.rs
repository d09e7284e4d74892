//! The one place the data plane reads policy from.
//!
//! Workers must never wait on the control plane, so they do not lock anything: they
//! compare a generation number once per batch and, only when it moved, load the new
//! snapshot through arc-swap. The snapshot is stored before the generation is bumped,
//! so a worker that sees generation g always loads a snapshot at least as new as g.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::policy::Snapshot;

pub struct PolicyCell {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
}

impl PolicyCell {
    /// A cell holding `policy` as generation 1.
    pub fn new(policy: Arc<Snapshot>) -> PolicyCell {
        PolicyCell {
            current: ArcSwap::new(policy),
            generation: AtomicU64::new(1),
        }
    }

    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Bumped by every publish; cheap enough to read per batch.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `policy` current; returns its generation.
    pub fn publish(&self, policy: Arc<Snapshot>) -> u64 {
        self.current.store(policy);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}
