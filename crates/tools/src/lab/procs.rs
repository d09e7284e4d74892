//! The lab's long-running processes (the LB, one host simulator per host, one HTTP
//! server per VM): started inside a namespace with `ip netns exec`, their stdout and
//! stderr written to files in the run directory (so they survive `--keep`, when nobody
//! reads a pipe), readiness seen as a line on stderr, stopped with SIGTERM by pid.
//!
//! Each runs in its own process group, so a Ctrl-C on the terminal reaches only the lab,
//! which then stops them in order (and can still collect the LB's counters). This
//! module must never signal a process it did not start.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::Error;
use super::cmd::display;

/// A process the lab started and has not yet reaped.
#[derive(Debug)]
pub struct Daemon {
    pub label: String,
    child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Starts `program args` inside `ns`; output goes to `<dir>/<label>.out` / `.err`.
    pub fn spawn(
        label: &str,
        ns: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
    ) -> Result<Daemon, Error> {
        use std::os::unix::process::CommandExt;
        let stdout = dir.join(format!("{label}.out"));
        let stderr = dir.join(format!("{label}.err"));
        let create = |p: &Path| {
            File::create(p).map_err(|cause| Error::Io {
                path: p.to_path_buf(),
                cause,
            })
        };
        let mut full: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            ns.into(),
            super::cmd::locate(&program.display().to_string())
                .to_string_lossy()
                .into_owned(),
        ];
        full.extend(args.iter().cloned());
        let child = super::cmd::command("ip")
            .args(&full)
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?)
            .process_group(0)
            .spawn()
            .map_err(|cause| Error::Spawn {
                command: display("ip", &full),
                cause,
            })?;
        Ok(Daemon {
            label: label.to_string(),
            child,
            stdout,
            stderr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until its stderr contains `needle`. Fails at once when it exits first
    /// (with its stderr in the message), after `timeout`, or on a stop request.
    pub fn wait_ready(&mut self, needle: &str, timeout: Duration) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if err.contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                return Err(Error::Exited {
                    what: self.label.clone(),
                    status: status.to_string(),
                    stderr: err.trim().to_string(),
                });
            }
            if super::interrupted() {
                return Err(Error::Interrupted);
            }
            if start.elapsed() > timeout {
                return Err(Error::NotReady {
                    what: self.label.clone(),
                    secs: timeout.as_secs(),
                    stderr: err.trim().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; its exit status (None when it was killed or
    /// could not be reaped) and its stdout.
    pub fn stop(mut self, grace: Duration) -> (Option<ExitStatus>, String) {
        let status = terminate(&mut self.child, grace);
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        (status, out)
    }

    /// SIGINT (what Ctrl-C sends: capture tools finish their file on it, not on
    /// SIGTERM), then [`Daemon::stop`] if it has not exited within `grace`.
    pub fn interrupt(mut self, grace: Duration) -> (Option<ExitStatus>, String) {
        if let Ok(None) = self.child.try_wait()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            // SAFETY: kill(2) with a pid this process spawned and has not reaped yet
            // (so it cannot have been reused) and a plain signal number.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop(Duration::from_secs(1))
    }

    /// Lets it run on after the lab exits (`--keep`): nothing will reap it here.
    pub fn detach(self) {}
}

fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet (so it
        // cannot have been reused) and a plain signal number.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Stops every daemon in parallel (each gets `grace`); results in the same order.
pub fn stop_all(
    daemons: Vec<Daemon>,
    grace: Duration,
) -> Vec<(String, Option<ExitStatus>, String)> {
    let handles: Vec<_> = daemons
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                let label = d.label.clone();
                let (status, out) = d.stop(grace);
                (label, status, out)
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).collect()
}
