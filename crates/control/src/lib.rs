//! The control plane's state: the declared policy, what health checks and reloads laid
//! over it, and the snapshot the data plane runs.
//!
//! Every change goes through [`Control`], which rebuilds the effective snapshot (see
//! `Snapshot::overlay`) and publishes it in the [`PolicyCell`] the workers poll. It
//! must never publish an unvalidated policy: a file that fails validation leaves the
//! running policy as it was, and the error names file, line and field.

pub mod api;
pub mod health;
pub mod metrics;
pub mod persist;
pub mod policy_file;

// The packet logic and the data plane, under the names the modules here were
// written with.
use nvlb_io as dataplane;
#[cfg(test)]
use nvlb_proto::craft;
use nvlb_proto::{engine, maglev, policy, wire};

/// The cell the workers read policy from lives with them (nvlb-io); it is re-exported
/// here, where it is written.
pub use nvlb_io::cell;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::maglev::MaglevError;
use crate::policy::{CompileOptions, ConfigError, Dip, DipKey, DipState, RemovedDips, Snapshot};

pub use cell::PolicyCell;

/// A DIP that a reload removed, kept (without new flows) until `until`.
#[derive(Clone, Debug)]
struct Ghost {
    pool: String,
    dip: Dip,
    host: String,
    until: Instant,
}

/// What a reload (or any policy change) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub generation: u64,
    /// DIPs the new policy has that the old one did not.
    pub added: usize,
    /// DIPs the old policy had that the new one does not.
    pub removed: usize,
    /// Removed DIPs that keep their flows until the drain timeout.
    pub draining: usize,
}

/// Why a policy change was refused; the running policy is untouched in every case.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("the policy validated, but a Maglev table could not be built: {0}")]
    Maglev(#[from] MaglevError),
}

struct State {
    path: PathBuf,
    declared: Arc<Snapshot>,
    /// DIPs failing their health checks, by pool name.
    down: HashSet<(String, DipKey)>,
    ghosts: Vec<Ghost>,
    reloads: Reloads,
}

/// Outcomes of re-reading the policy file (SIGHUP, `nvlb reload`), for metrics and
/// alerts: a failed reload leaves the old policy running, which nobody sees otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reloads {
    pub ok: u64,
    pub failed: u64,
    /// The last attempt: whether it applied, and when (seconds since the Unix epoch).
    pub last: Option<(bool, f64)>,
}

/// The control plane's single source of truth; share it behind an `Arc`.
pub struct Control {
    /// What every load of the file (start, reload, API edit) is compiled for.
    options: CompileOptions,
    cell: Arc<PolicyCell>,
    state: Mutex<State>,
    /// Held for a whole read-edit-write-install of the policy file (a reload, an API
    /// change), so that two of them never interleave and lose an update.
    edits: Mutex<()>,
}

impl Control {
    /// Loads and validates `path` with the default options; nothing runs if it is bad.
    pub fn open(path: &Path) -> Result<Control, ConfigError> {
        Control::open_with(path, CompileOptions::default())
    }

    /// Loads and validates `path` for `options` (`nvlb run --instance`), which every
    /// later reload and API edit compiles with too.
    pub fn open_with(path: &Path, options: CompileOptions) -> Result<Control, ConfigError> {
        let declared = Arc::new(policy_file::read(path, &options)?);
        Ok(Control {
            options,
            cell: Arc::new(PolicyCell::new(declared.clone())),
            state: Mutex::new(State {
                path: path.to_path_buf(),
                declared,
                down: HashSet::new(),
                ghosts: Vec::new(),
                reloads: Reloads::default(),
            }),
            edits: Mutex::new(()),
        })
    }

    /// What every load of the policy is compiled for.
    pub fn options(&self) -> &CompileOptions {
        &self.options
    }

    /// The cell the workers poll.
    pub fn cell(&self) -> Arc<PolicyCell> {
        self.cell.clone()
    }

    /// The snapshot the data plane runs (declared policy + health + draining).
    pub fn policy(&self) -> Arc<Snapshot> {
        self.cell.load()
    }

    /// The policy as the file declares it.
    pub fn declared(&self) -> Arc<Snapshot> {
        self.lock().declared.clone()
    }

    pub fn generation(&self) -> u64 {
        self.cell.generation()
    }

    pub fn path(&self) -> PathBuf {
        self.lock().path.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every field is
        // replaced whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serialises changes that read the policy file and install what they made of it:
    /// hold the guard from reading the file until `install` returned.
    pub fn edit_lock(&self) -> MutexGuard<'_, ()> {
        // Nothing is guarded but the order of edits, so a poisoned lock is still usable.
        self.edits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the file and, if it validates, makes it the declared policy.
    pub fn reload(&self, now: Instant) -> Result<Applied, ChangeError> {
        let _edit = self.edit_lock();
        let path = self.path();
        let result = policy_file::read(&path, &self.options)
            .map_err(ChangeError::from)
            .and_then(|next| self.install(next, now));
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut st = self.lock();
        if result.is_ok() {
            st.reloads.ok += 1;
        } else {
            st.reloads.failed += 1;
        }
        st.reloads.last = Some((result.is_ok(), at));
        result
    }

    /// What reloads have done so far.
    pub fn reloads(&self) -> Reloads {
        self.lock().reloads
    }

    /// Makes an already validated snapshot the declared policy (a reload, or a change
    /// made through the API). DIPs it no longer has drain or reset as it says.
    pub fn install(&self, next: Snapshot, now: Instant) -> Result<Applied, ChangeError> {
        let mut st = self.lock();
        let next = Arc::new(next);
        let old = st.declared.clone();
        let (mut added, mut removed) = (0, 0);
        let mut ghosts: Vec<Ghost> = Vec::new();
        let reload = next.balancer().reload;
        for op in old.pools() {
            let np = next.pool_named(&op.name).map(|(_, p)| p);
            for d in &op.dips {
                if np.is_some_and(|p| p.dips.iter().any(|n| n.key() == d.key())) {
                    continue;
                }
                removed += 1;
                if reload.removed_dips == RemovedDips::Drain
                    && np.is_some()
                    && let Some(h) = old.get_host(d.host)
                {
                    ghosts.push(Ghost {
                        pool: op.name.clone(),
                        dip: *d,
                        host: h.name.clone(),
                        until: now + reload.drain_timeout,
                    });
                }
            }
        }
        for np in next.pools() {
            let op = old.pool_named(&np.name).map(|(_, p)| p);
            added += np
                .dips
                .iter()
                .filter(|d| !op.is_some_and(|p| p.dips.iter().any(|o| o.key() == d.key())))
                .count();
        }
        // Earlier ghosts keep draining unless the new policy brings their DIP back.
        for g in st.ghosts.drain(..) {
            let back = next
                .pool_named(&g.pool)
                .is_some_and(|(_, p)| p.dips.iter().any(|d| d.key() == g.dip.key()));
            if !back && g.until > now && !ghosts.iter().any(|n| same_ghost(n, &g)) {
                ghosts.push(g);
            }
        }
        let effective = effective(&next, &st.down, &ghosts)?;
        let draining = ghosts.len();
        st.declared = next;
        st.ghosts = ghosts;
        let generation = self.cell.publish(Arc::new(effective));
        Ok(Applied {
            generation,
            added,
            removed,
            draining,
        })
    }

    /// Records a health check result; publishes a new snapshot only when the DIP's
    /// state changed. Returns whether it did.
    pub fn set_dip_health(&self, pool: &str, dip: DipKey, up: bool) -> Result<bool, ChangeError> {
        let mut st = self.lock();
        let key = (pool.to_string(), dip);
        let changed = if up {
            st.down.remove(&key)
        } else {
            st.down.insert(key)
        };
        if changed {
            let effective = effective(&st.declared, &st.down, &st.ghosts)?;
            self.cell.publish(Arc::new(effective));
        }
        Ok(changed)
    }

    /// Whether health checks hold `dip` of `pool` down.
    pub fn is_down(&self, pool: &str, dip: DipKey) -> bool {
        self.lock().down.contains(&(pool.to_string(), dip))
    }

    /// Ends drains whose time is up; their remaining flows are forgotten. Returns how
    /// many ended.
    pub fn expire_drains(&self, now: Instant) -> Result<usize, ChangeError> {
        let mut st = self.lock();
        let before = st.ghosts.len();
        let kept: Vec<Ghost> = st
            .ghosts
            .iter()
            .filter(|g| g.until > now)
            .cloned()
            .collect();
        let ended = before - kept.len();
        if ended > 0 {
            let effective = effective(&st.declared, &st.down, &kept)?;
            st.ghosts = kept;
            self.cell.publish(Arc::new(effective));
        }
        Ok(ended)
    }

    /// Removed DIPs still draining, as (pool, DIP).
    pub fn draining(&self) -> Vec<(String, DipKey)> {
        let st = self.lock();
        st.ghosts
            .iter()
            .map(|g| (g.pool.clone(), g.dip.key()))
            .collect()
    }
}

fn same_ghost(a: &Ghost, b: &Ghost) -> bool {
    a.pool == b.pool && a.dip.key() == b.dip.key()
}

/// The declared policy with health and drains laid over it.
fn effective(
    declared: &Snapshot,
    down: &HashSet<(String, DipKey)>,
    ghosts: &[Ghost],
) -> Result<Snapshot, MaglevError> {
    let mut extra = Vec::new();
    let mut pools: HashMap<&str, u32> = HashMap::new();
    for (id, p) in (0..).zip(declared.pools()) {
        pools.insert(p.name.as_str(), id);
    }
    for g in ghosts {
        // A ghost whose host left the policy has nowhere to send to: it ends now.
        if let (Some(&pool), Some(host)) =
            (pools.get(g.pool.as_str()), declared.host_named(&g.host))
        {
            extra.push((pool, Dip { host, ..g.dip }));
        }
    }
    declared.overlay(
        |pool, dip| {
            if dip.state != DipState::Active {
                dip.state
            } else if down.contains(&(pool.name.clone(), dip.key())) {
                DipState::Down
            } else {
                DipState::Active
            }
        },
        &extra,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const EXAMPLE: &str = include_str!("../../../lb-config/example.toml");

    /// A policy file of its own in a temp dir, removed on drop.
    struct File(PathBuf);

    impl File {
        fn new(tag: &str, text: &str) -> File {
            let dir =
                std::env::temp_dir().join(format!("nvlb-control-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("policy.toml");
            std::fs::write(&path, text).unwrap();
            File(path)
        }
        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn dip(p: &Snapshot, pool: &str, ca: &str) -> DipKey {
        let (_, pool) = p.pool_named(pool).unwrap();
        pool.dips
            .iter()
            .find(|d| d.ca.to_string() == ca)
            .unwrap()
            .key()
    }

    const WEB_6: &str = "  { ca = \"10.0.0.6\", port = 80, weight = 1 },\n";

    #[test]
    fn a_bad_file_never_replaces_a_good_one() {
        let f = File::new("bad", EXAMPLE);
        let c = Control::open(&f.0).unwrap();
        let before = c.policy();
        f.write(&EXAMPLE.replace("weight = 2", "weight = -2"));
        let err = c.reload(Instant::now()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("policy.toml:") && text.contains("weight"),
            "{text}"
        );
        assert!(Arc::ptr_eq(&before, &c.policy()));
        assert_eq!(c.generation(), 1);
    }

    #[test]
    fn a_removed_dip_drains_until_its_deadline() {
        let f = File::new("drain", EXAMPLE);
        let c = Control::open(&f.0).unwrap();
        let gone = dip(&c.policy(), "blue-web", "10.0.0.6");
        f.write(&EXAMPLE.replace(WEB_6, ""));
        let t0 = Instant::now();
        let a = c.reload(t0).unwrap();
        assert_eq!((a.generation, a.removed, a.added, a.draining), (2, 1, 0, 1));
        // Still in the running pool, without Maglev slots; gone from the declared one.
        let (_, p) = c
            .policy()
            .pool_named("blue-web")
            .map(|(i, p)| (i, p.clone()))
            .unwrap();
        let i = p.dips.iter().position(|d| d.key() == gone).unwrap();
        assert_eq!(p.dips[i].state, DipState::Draining);
        assert_eq!(p.table.slots_of(i as u16), 0);
        assert!(
            c.declared()
                .pool_named("blue-web")
                .unwrap()
                .1
                .dips
                .iter()
                .all(|d| d.key() != gone)
        );
        assert_eq!(c.expire_drains(t0 + Duration::from_secs(29)).unwrap(), 0);
        assert_eq!(c.expire_drains(t0 + Duration::from_secs(31)).unwrap(), 1);
        assert!(
            c.policy()
                .pool_named("blue-web")
                .unwrap()
                .1
                .dips
                .iter()
                .all(|d| d.key() != gone)
        );
        assert_eq!(c.generation(), 3);
    }

    #[test]
    fn reset_mode_drops_removed_dips_at_once() {
        let text = EXAMPLE.replace(
            "[balancer.flows]",
            "[balancer.reload]\nremoved_dips = \"reset\"\n\n[balancer.flows]",
        );
        let f = File::new("reset", &text);
        let c = Control::open(&f.0).unwrap();
        f.write(&text.replace(WEB_6, ""));
        let a = c.reload(Instant::now()).unwrap();
        assert_eq!((a.removed, a.draining), (1, 0));
        assert_eq!(c.policy().pool_named("blue-web").unwrap().1.dips.len(), 3);
    }

    #[test]
    fn a_dip_brought_back_stops_draining() {
        let f = File::new("back", EXAMPLE);
        let c = Control::open(&f.0).unwrap();
        f.write(&EXAMPLE.replace(WEB_6, ""));
        c.reload(Instant::now()).unwrap();
        f.write(EXAMPLE);
        let a = c.reload(Instant::now()).unwrap();
        assert_eq!((a.added, a.draining), (1, 0));
        let p = c.policy();
        let web = p.pool_named("blue-web").unwrap().1;
        assert_eq!(web.dips.len(), 4);
        assert!(web.dips.iter().all(|d| d.state == DipState::Active));
    }

    #[test]
    fn health_changes_publish_only_on_change_and_survive_reloads() {
        let f = File::new("health", EXAMPLE);
        let c = Control::open(&f.0).unwrap();
        let k = dip(&c.policy(), "blue-web", "10.0.0.7");
        assert!(c.set_dip_health("blue-web", k, false).unwrap());
        assert!(!c.set_dip_health("blue-web", k, false).unwrap());
        assert_eq!(c.generation(), 2);
        let state = |c: &Control| {
            let p = c.policy();
            let web = p.pool_named("blue-web").unwrap().1;
            web.dips.iter().find(|d| d.key() == k).unwrap().state
        };
        assert_eq!(state(&c), DipState::Down);
        c.reload(Instant::now()).unwrap();
        assert_eq!(state(&c), DipState::Down, "a reload keeps health state");
        assert!(c.set_dip_health("blue-web", k, true).unwrap());
        assert_eq!(state(&c), DipState::Active);
    }

    #[test]
    fn drain_in_the_file_takes_no_new_flows() {
        let text = EXAMPLE.replace(
            "{ ca = \"10.0.0.7\", port = 80, weight = 1 }",
            "{ ca = \"10.0.0.7\", port = 80, weight = 1, drain = true }",
        );
        let s = Snapshot::from_toml(&text, "t.toml").unwrap();
        let web = s.pool_named("blue-web").unwrap().1;
        let i = web
            .dips
            .iter()
            .position(|d| d.ca.to_string() == "10.0.0.7")
            .unwrap();
        assert_eq!(web.dips[i].state, DipState::Draining);
        assert_eq!(web.table.slots_of(i as u16), 0);
    }
}
