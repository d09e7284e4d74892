//! Helpers shared by the tests that build network namespaces (tests/dataplane.rs,
//! tests/hostsim.rs): running commands, a guard that deletes the namespaces it made,
//! threads moved into a namespace, AF_PACKET send/capture loops, reading a child's
//! output and counters, and stopping it with SIGTERM.
//!
//! Each test binary uses only some of these.
#![allow(dead_code)]

pub mod api_lb;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nvlb::dataplane::afpacket::{Recv, Socket};
use nvlb::dataplane::netns;

pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/lb-config/example.toml");

/// Names of the existing network namespaces that start with `prefix`: what a test
/// checks is gone after a lab run.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = nvlb::lab::cmd::command("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

pub fn run(cmd: &str, args: &[&str]) -> Output {
    nvlb::lab::cmd::command(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

pub fn must(cmd: &str, args: &[&str]) {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The variable tests/run.sh sets: there every test must run, so a test that cannot
/// fails instead of skipping.
pub const MUST_RUN: &str = "NVLB_TESTS_MUST_RUN";

/// Says that the calling test cannot run here, and why. Under a plain `cargo test`
/// it prints the reason and the caller returns (the test passes without testing
/// anything); under tests/run.sh, which sets [`MUST_RUN`], it panics, because a suite
/// that counts a skipped test as passed hides exactly the machines where a feature
/// is broken or untested.
pub fn skip(why: &str) {
    if std::env::var_os(MUST_RUN).is_some() {
        panic!(
            "this test cannot run here: {why} ({MUST_RUN} is set: tests/run.sh runs every test)"
        );
    }
    eprintln!("SKIPPED (cannot run here): {why}");
}

/// True, after [`skip`], when the namespace tests cannot run here (not root, no
/// `ip netns`): the caller returns.
pub fn skip_without_netns() -> bool {
    match skip_reason() {
        Some(why) => {
            skip(&why);
            true
        }
        None => false,
    }
}

/// True, after [`skip`], when `program` cannot be started (looked up as the lab
/// looks it up: PATH, then the sbin folders); `hint` says how to get it.
pub fn skip_without_program(program: &str, hint: &str) -> bool {
    if nvlb::lab::cmd::available(program) {
        return false;
    }
    skip(&format!("{program} is not installed ({hint})"));
    true
}

/// Why the namespace tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    match Command::new("id").arg("-u").output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).trim() == "0" => {}
        Ok(_) => return Some("not root".into()),
        Err(e) => return Some(format!("cannot run id: {e}")),
    }
    match nvlb::lab::cmd::command("ip")
        .args(["netns", "list"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`ip netns` unavailable: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` unavailable: {e}")),
    }
}

/// Named network namespaces this test made; dropping the guard deletes them, also
/// after a failed assertion. Leftovers of the same names are removed first.
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Creates `names`; those with `true` get IPv6 disabled (no link-local addresses,
    /// so no kernel sends DAD/MLD/RS: the only frames there are the test's and its
    /// processes').
    pub fn create(names: &[(&str, bool)]) -> Namespaces {
        let guard = Namespaces {
            names: names.iter().map(|(n, _)| n.to_string()).collect(),
        };
        guard.remove();
        for (ns, no_ipv6) in names {
            must("ip", &["netns", "add", ns]);
            if *no_ipv6 {
                must(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ],
                );
            }
        }
        guard
    }

    fn remove(&self) {
        for ns in &self.names {
            let _ = run("ip", &["netns", "del", ns]);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Runs `f` on a fresh thread inside namespace `ns` (only that thread moves).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let ns = ns.to_string();
    thread::spawn(move || {
        netns::enter(&ns).unwrap_or_else(|e| panic!("enter {ns}: {e}"));
        f()
    })
}

/// Sends every frame, retrying briefly when the device is busy; how many went out.
pub fn send_all(sock: &Socket, frames: impl Iterator<Item = Vec<u8>>) -> u32 {
    let mut sent = 0;
    for f in frames {
        for _ in 0..1000 {
            match sock.send(&f) {
                Ok(()) => {
                    sent += 1;
                    break;
                }
                Err(_) => thread::yield_now(),
            }
        }
    }
    sent
}

/// Longest [`capture`] runs, however busy the link.
pub const CAPTURE_CAP: Duration = Duration::from_secs(30);

/// Receives frames until `enough` says stop, nothing arrives for `quiet`, or
/// [`CAPTURE_CAP`] has passed.
pub fn capture(sock: &Socket, quiet: Duration, mut enough: impl FnMut(&[u8]) -> bool) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut seen = 0;
    // Other traffic (the LB's health probes, every second) can keep a link from ever
    // being quiet: without a cap a test waiting for a frame that never came hung
    // forever instead of failing its assertion.
    let give_up = Instant::now() + CAPTURE_CAP;
    loop {
        if Instant::now() >= give_up {
            return seen;
        }
        match sock.recv(&mut buf).expect("recv") {
            Recv::Frame(n, _) => {
                seen += 1;
                if enough(&buf[..n]) {
                    return seen;
                }
            }
            Recv::Truncated(_) => seen += 1,
            Recv::Empty => {
                if !sock.wait(quiet).expect("poll") {
                    return seen;
                }
            }
        }
    }
}

/// Reads a child's stream on a thread; the channel yields its lines.
pub fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; panics with what came instead after `limit`.
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, limit: Duration) {
    let mut log = Vec::new();
    let t = Instant::now();
    while let Some(left) = limit.checked_sub(t.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                log.push(line);
                if found {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?} within {limit:?}; got: {log:?}");
}

/// The value of counter `name` in `name value` lines.
pub fn counter(stdout: &str, name: &str) -> Option<u64> {
    stdout.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok())?
    })
}

/// Sends SIGTERM and waits for the child to exit, failing after `limit`; its status
/// and how long it took.
pub fn sigterm(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    must("kill", &["-TERM", &child.id().to_string()]);
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, t.elapsed());
        }
        assert!(
            t.elapsed() < limit,
            "the process did not stop within {limit:?} of SIGTERM"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// One batch of background load on a lab VIP: when it ran and what it got.
pub struct Batch {
    pub started: std::time::Instant,
    pub ended: std::time::Instant,
    pub got: nvlb::lab::traffic::Requests,
}

/// Requests to `url` from namespace `ns`, `per_batch` new connections a batch (each
/// with `timeout_s`), batch after batch until `stop`: the load lab tests keep running
/// while they break or change something.
pub fn load_batches(
    ns: String,
    url: &'static str,
    per_batch: usize,
    timeout_s: u32,
    dir: std::path::PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<Vec<Batch>> {
    thread::spawn(move || {
        let mut batches = Vec::new();
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let started = Instant::now();
            let got = nvlb::lab::traffic::requests(
                &ns,
                url,
                per_batch,
                timeout_s,
                &dir,
                &format!("load{i}"),
            )
            .expect("curl runs");
            batches.push(Batch {
                started,
                ended: Instant::now(),
                got,
            });
            i += 1;
        }
        batches
    })
}

/// A slow bulk download (a lab's `/bulk` file at `rate`), in flight in the background
/// (tests/lab_control.rs, tests/lab_faults.rs, tests/lab_flood.rs).
pub struct Slow {
    child: Child,
    file: std::path::PathBuf,
    pub served_by: String,
}

impl Slow {
    /// Starts one from namespace `ns` (files in `dir`, at most `max_time_s` seconds) and
    /// waits for its response headers, which name the VM serving it.
    pub fn start(
        dir: &std::path::Path,
        ns: &str,
        base_url: &str,
        rate: &str,
        max_time_s: u32,
        i: usize,
    ) -> Slow {
        let file = dir.join(format!("slow{i}.bin"));
        let headers = dir.join(format!("slow{i}.hdr"));
        let _ = std::fs::remove_file(&headers);
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "curl",
                "--silent",
                "--limit-rate",
                rate,
                "--max-time",
                &max_time_s.to_string(),
                "--dump-header",
                &headers.display().to_string(),
                "--output",
                &file.display().to_string(),
                "--write-out",
                "%{http_code}\t%{exitcode}\t%{size_download}\n",
                &format!("{base_url}/bulk"),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("curl");
        let t = Instant::now();
        let served_by = loop {
            let h = std::fs::read_to_string(&headers).unwrap_or_default();
            if let Some(v) = h.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("x-served-by")
                    .then(|| v.trim().to_string())
            }) {
                break v;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no headers: {h:?}");
            thread::sleep(Duration::from_millis(20));
        };
        Slow {
            child,
            file,
            served_by,
        }
    }

    /// Stops it and removes its file.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Like [`Slow::finish`], but a download still running at `deadline` is stopped and
    /// counted as stalled.
    pub fn finish_by(mut self, sha: &str, deadline: Instant) -> Result<(), String> {
        while self.running() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let _ = std::fs::remove_file(&self.file);
                return Err(format!("from {}: stalled", self.served_by));
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.finish(sha)
    }

    /// Waits for the end; `Ok` when the whole file arrived intact, else why not.
    pub fn finish(mut self, sha: &str) -> Result<(), String> {
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        println!("slow download from {}: {out:?} ({status})", self.served_by);
        let f: Vec<&str> = out.trim_end().split('\t').collect();
        let result = if (f.first().copied(), f.get(1).copied()) != (Some("200"), Some("0")) {
            Err(format!("from {}: {out:?}", self.served_by))
        } else if nvlb::lab::traffic::sha256(&self.file).unwrap_or_default() != sha {
            Err(format!("from {}: the file differs", self.served_by))
        } else {
            Ok(())
        };
        let _ = std::fs::remove_file(&self.file);
        result
    }
}

/// The policy file at `path` without its health checks: no host answers their probes
/// in a test's own namespace, so every DIP would go down about 2.5 s after the start,
/// each change published as a new generation, while a test sends traffic or counts
/// generations.
pub fn without_health(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("health = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Writes a tokens file at `path`: one `[[token]]` per (name, scope, token), each hashed
/// by `nvlb ctl hash-token` as an operator would make it.
pub fn write_tokens(path: &std::path::Path, made_by: &str, tokens: &[(&str, &str, &str)]) {
    let mut text = format!("# made by {made_by}\n");
    for (name, scope, token) in tokens {
        let out = Command::new(env!("CARGO_BIN_EXE_nvlb"))
            .args(["ctl", "hash-token", token])
            .output()
            .expect("run nvlb ctl hash-token");
        assert!(out.status.success(), "nvlb ctl hash-token failed");
        let hash = String::from_utf8(out.stdout).unwrap();
        text.push_str(&format!(
            "[[token]]\nname = \"{name}\"\nscope = \"{scope}\"\nsha256 = \"{}\"\n",
            hash.trim()
        ));
    }
    std::fs::write(path, text).unwrap();
}
