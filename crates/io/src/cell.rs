//! The one place the data plane reads policy from.
//!
//! Workers must never wait on the control plane, so they do not lock anything: they
//! compare a generation number once per batch and, only when it moved, load the new
//! snapshot through arc-swap. The snapshot is stored before the generation is bumped,
//! so a worker that sees generation g always loads a snapshot at least as new as g.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::policy::Snapshot;

/// Runs with each snapshot before it becomes current (the XDP backend's owned-address
/// map must know a new VIP before any worker can answer for it).
pub type BeforePublish = Box<dyn Fn(&Snapshot) + Send + Sync>;

pub struct PolicyCell {
    current: ArcSwap<Snapshot>,
    generation: AtomicU64,
    /// Publishing is the control plane's, never on a worker's path: a lock is fine.
    before_publish: Mutex<Option<BeforePublish>>,
}

impl PolicyCell {
    /// A cell holding `policy` as generation 1.
    pub fn new(policy: Arc<Snapshot>) -> PolicyCell {
        PolicyCell {
            current: ArcSwap::new(policy),
            generation: AtomicU64::new(1),
            before_publish: Mutex::new(None),
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
        // Held across the store, so that two publishers run the hook in the order
        // their snapshots become current.
        let hook = self
            .before_publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(f) = hook.as_ref() {
            f(&policy);
        }
        self.current.store(policy);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Runs `f` with every snapshot published from now on, before it is current; and
    /// once now with the current one, under the same lock, so that nothing published
    /// since the caller last looked is missed.
    pub fn set_before_publish(&self, f: BeforePublish) {
        let mut hook = self
            .before_publish
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&self.current.load());
        *hook = Some(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(vip: &str) -> Arc<Snapshot> {
        let text = include_str!("../../../lb-config/example.toml").replace("203.0.113.10", vip);
        Arc::new(Snapshot::from_toml(&text, "example.toml").expect("example loads"))
    }

    #[test]
    fn the_hook_sees_each_snapshot_before_any_worker_can() {
        let cell = Arc::new(PolicyCell::new(snapshot("203.0.113.10")));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (Arc::downgrade(&cell), seen.clone());
        cell.set_before_publish(Box::new(move |next| {
            let cell = c.upgrade().expect("cell alive");
            // Not current yet: the generation has not moved.
            s.lock().unwrap().push((
                cell.generation(),
                next.pools()
                    .iter()
                    .any(|p| p.address.to_string() == "203.0.113.99"),
            ));
        }));
        assert_eq!(cell.publish(snapshot("203.0.113.99")), 2);
        // Once at installation with the current snapshot, then before the publish.
        assert_eq!(*seen.lock().unwrap(), vec![(1, false), (1, true)]);
    }
}
