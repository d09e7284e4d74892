//! Removing a lab: stopping the processes inside its namespaces and deleting every
//! namespace whose name starts with the lab's prefix (which also destroys the veths and
//! the bridge in them). Used before a run (leftovers of an earlier one), after it, by
//! `--down`, and by [`Guard`] when a run fails, panics or is interrupted.
//!
//! It must never touch a namespace without the prefix (the prefix is validated to end
//! in `-` and be at least two characters), and never signal a process outside those
//! namespaces or the lab process itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Error;
use super::cmd::ip;
use super::procs::{self, Daemon};

/// How long processes get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Names of the existing namespaces that start with `prefix`.
pub fn namespaces_with(prefix: &str) -> Result<Vec<String>, Error> {
    let out = ip(&["netns", "list"])?;
    Ok(parse_netns_list(&out)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// `ip netns list` prints `name` or `name (id: N)` per line.
fn parse_netns_list(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The pids of processes in namespace `ns`, never our own.
fn pids_in(ns: &str) -> Vec<i32> {
    let own = i32::try_from(std::process::id()).unwrap_or(-1);
    ip(&["netns", "pids", ns])
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .filter(|&p| p > 1 && p != own)
                .collect()
        })
        .unwrap_or_default()
}

/// Alive and not a zombie (a zombie has left its namespace already).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid read from `ip netns pids` for a namespace of this lab,
    // with a plain signal number; a pid that has exited meanwhile gives ESRCH.
    unsafe { libc::kill(pid, sig) };
}

/// Stops every process in the namespaces with `prefix` (SIGTERM, SIGKILL after a
/// grace period) and deletes the namespaces. Returns the namespaces removed.
pub fn remove_prefix(prefix: &str) -> Result<Vec<String>, Error> {
    let names = namespaces_with(prefix)?;
    let pids: Vec<i32> = names.iter().flat_map(|n| pids_in(n)).collect();
    for &p in &pids {
        signal(p, libc::SIGTERM);
    }
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) && start.elapsed() < GRACE {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids.iter().filter(|&&p| alive(p)) {
        signal(p, libc::SIGKILL);
    }
    let mut first_err = None;
    for n in &names {
        if let Err(e) = ip(&["netns", "del", n]) {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(names),
    }
}

/// Removes the run directory (config copy, bulk file, logs).
pub fn remove_run_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Tears the lab down when dropped while armed: on an error return, a panic, or after
/// Ctrl-C made the run give up. `--keep` and an orderly end disarm it.
#[derive(Debug)]
pub struct Guard {
    pub prefix: String,
    pub run_dir: PathBuf,
    pub daemons: Vec<Daemon>,
    armed: bool,
}

impl Guard {
    pub fn new(prefix: &str, run_dir: &Path) -> Guard {
        Guard {
            prefix: prefix.to_string(),
            run_dir: run_dir.to_path_buf(),
            daemons: Vec::new(),
            armed: true,
        }
    }

    /// Hands the daemons to the caller and disarms.
    pub fn disarm(mut self) -> Vec<Daemon> {
        self.armed = false;
        std::mem::take(&mut self.daemons)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        eprintln!("nvlb lab: tearing down {}*", self.prefix);
        procs::stop_all(std::mem::take(&mut self.daemons), GRACE);
        if let Err(e) = remove_prefix(&self.prefix) {
            eprintln!("nvlb lab: teardown: {e}");
        }
        remove_run_dir(&self.run_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_names() {
        let out = "nvlab-blue-5 (id: 12)\nnvlab-lb\nother (id: 1)\n\n";
        assert_eq!(parse_netns_list(out), ["nvlab-blue-5", "nvlab-lb", "other"]);
    }

    #[test]
    fn own_process_is_alive_and_unknown_pid_is_not() {
        assert!(alive(i32::try_from(std::process::id()).unwrap()));
        assert!(!alive(i32::MAX));
    }
}
