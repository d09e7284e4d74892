//! Lab helpers of the reliability tests (tests/lab_flood.rs, tests/lab_faults.rs): a
//! kept `nvlb lab` with a policy of the test's own, the LB restarted with the lab's own
//! command line (plus `--metrics` on the LB namespace's loopback, which the lab does
//! not serve by itself), `/metrics` samples, the LB's resident memory, slow downloads
//! that stay in flight while the test breaks something, and teardown that leaves
//! nothing with the test's prefix behind (also after a failed assertion).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nvlb::lab::topology::Topology;
use nvlb::policy::Snapshot;

use crate::common;

pub const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
/// Where the restarted LB serves /metrics, inside its own namespace.
pub const METRICS: &str = "127.0.0.1:9187";

pub fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The example policy with `[balancer.flows]` replaced by `flows` (the TOML lines of
/// that table's keys).
pub fn example_with_flows(flows: &str) -> String {
    let example = std::fs::read_to_string(common::EXAMPLE).unwrap();
    let start = example.find("[balancer.flows]\n").expect("flows table");
    let end = start
        + example[start..]
            .find("\n\n")
            .expect("end of the flows table");
    format!(
        "{}[balancer.flows]\n{}{}",
        &example[..start],
        flows,
        &example[end..]
    )
}

/// A kept lab; removed when dropped.
pub struct Lab {
    pub prefix: String,
    pub topo: Topology,
    pub config: PathBuf,
    pub policy: Snapshot,
    gone: bool,
    restarts: usize,
}

impl Lab {
    /// `nvlb lab --keep` with `policy_text`; every request of its own check answered.
    pub fn up(prefix: String, policy_text: &str) -> Lab {
        let config = std::env::temp_dir().join(format!("{prefix}policy.toml"));
        std::fs::write(&config, policy_text).unwrap();
        let policy = nvlb::control::policy_file::read(&config, &Default::default())
            .expect("the test's policy validates");
        let lab = Lab {
            topo: Topology::from_snapshot(&policy, &prefix),
            prefix,
            config,
            policy,
            gone: false,
            restarts: 0,
        };
        let cfg = lab.config.display().to_string();
        let out = nvlb(&[
            "lab",
            "--keep",
            "--prefix",
            &lab.prefix,
            "--config",
            &cfg,
            "--requests",
            "40",
        ]);
        let stdout = text(&out.stdout);
        println!("nvlb lab --keep:\n{stdout}");
        assert!(
            out.status.success(),
            "nvlb lab exited {}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
        lab
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn dir(&self) -> PathBuf {
        nvlb::lab::run_dir(&self.prefix)
    }

    /// The pids and command lines of the processes in namespace `ns`.
    pub fn processes(&self, ns: &str) -> Vec<(u32, Vec<String>)> {
        let out = common::run("ip", &["netns", "pids", ns]);
        text(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter_map(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args = raw
                    .split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                Some((pid, args))
            })
            .collect()
    }

    /// The `nvlb run` process: pid and command line.
    pub fn lb(&self) -> (u32, Vec<String>) {
        self.processes(&self.topo.lb)
            .into_iter()
            .find(|(_, a)| a.get(1).is_some_and(|s| s == "run"))
            .expect("nvlb run in the LB namespace")
    }

    /// Stops `nvlb run` (SIGTERM) and starts it again with the same command line plus
    /// `extra` (once: `--metrics` is kept from the first restart). Returns how long no
    /// LB was running (from the signal to its `ready`).
    pub fn restart_lb(&mut self, extra: &[&str]) -> Duration {
        let (pid, mut args) = self.lb();
        for e in extra {
            if !args.iter().any(|a| a == e) {
                args.push(e.to_string());
            }
        }
        let t = Instant::now();
        common::must("kill", &["-TERM", &pid.to_string()]);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(t.elapsed() < Duration::from_secs(10), "the LB did not stop");
            thread::sleep(Duration::from_millis(10));
        }
        self.restarts += 1;
        let err = self.dir().join(format!("lb-restart{}.err", self.restarts));
        let program = args.remove(0);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.topo.lb, &program])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("restart nvlb run");
        loop {
            let log = std::fs::read_to_string(&err).unwrap_or_default();
            if log.contains("nvlb: ready") {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("the restarted LB exited {st}: {log}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "not ready after restart: {log}"
            );
            thread::sleep(Duration::from_millis(10));
        }
        let down = t.elapsed();
        // The lab's teardown stops it by namespace; nobody waits for it here.
        std::mem::forget(child);
        down
    }

    /// The restarted LB's /metrics page.
    pub fn metrics(&self) -> String {
        let url = format!("http://{METRICS}/metrics");
        let out = common::run(
            "ip",
            &[
                "netns",
                "exec",
                &self.topo.lb,
                "curl",
                "-sS",
                "-m",
                "5",
                &url,
            ],
        );
        assert!(out.status.success(), "scrape: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Scrapes /metrics every `every` until `done` holds for a page or `limit` has
    /// passed: the last page, how long it took and whether `done` held (the caller
    /// prints its figures, then asserts).
    pub fn poll_metrics(
        &self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> (String, Duration, bool) {
        let t = Instant::now();
        loop {
            let page = self.metrics();
            if done(&page) {
                return (page, t.elapsed(), true);
            }
            if t.elapsed() >= limit {
                return (page, t.elapsed(), false);
            }
            thread::sleep(every);
        }
    }

    /// Resident memory of `nvlb run` in KiB (VmRSS of /proc/PID/status).
    pub fn lb_rss_kib(&self) -> u64 {
        rss_kib(self.lb().0).expect("VmRSS of nvlb run")
    }

    /// `nvlb lab --down`: its output (the LB's counters); nothing with the prefix left.
    pub fn down(&mut self) -> String {
        let out = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        self.gone = true;
        let stdout = text(&out.stdout);
        println!("nvlb lab --down:\n{stdout}");
        assert!(out.status.success());
        let left = common::namespaces_with(&self.prefix);
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        let _ = std::fs::remove_file(&self.config);
        stdout
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.gone || !common::namespaces_with(&self.prefix).is_empty() {
            let _ = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of `name` whose labels contain each of `labels`
/// (`key="value"` strings) in a Prometheus text page; 0 when there is none (see
/// [`sample`] where a missing series must be an error).
pub fn metric(page: &str, name: &str, labels: &[&str]) -> u64 {
    sample(page, name, labels).unwrap_or(0)
}

/// Like [`metric`], but `None` when the page has no sample of `name` with `labels`: a
/// renamed metric or label then fails the caller instead of reading 0.
pub fn sample(page: &str, name: &str, labels: &[&str]) -> Option<u64> {
    let values: Vec<u64> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = match key.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (key, ""),
            };
            (n == name && labels.iter().all(|x| rest.contains(x)))
                .then(|| value.parse::<f64>().ok())?
        })
        .map(|v| v as u64)
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

pub use crate::common::Slow;

/// Failed requests over every batch, and how many were sent.
pub fn failures(batches: &[common::Batch]) -> (usize, usize, Vec<String>) {
    let mut failed = 0;
    let mut sent = 0;
    let mut why = Vec::new();
    for b in batches {
        sent += b.got.sent;
        failed += b.got.sent - b.got.answered();
        why.extend(b.got.failures.iter().cloned());
    }
    (failed, sent, why)
}
