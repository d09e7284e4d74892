//! Health checks on the real lab (`nvlb lab --keep`: namespaces, the real LB with the
//! example policy's health checks, host simulators, kernel TCP in the VMs, curl), as a
//! user would see them:
//!
//! - under continuous load through blue-web, blue-6's HTTP server is killed: the LB
//!   logs 10.0.0.6:80 down within fall x interval (+ slack); every request started
//!   after that line is answered, none by blue-6; slow bulk downloads started before,
//!   served by other DIPs, complete intact;
//! - the server is started again with the lab's own command line: the LB logs it up
//!   within rise x interval (+ slack) and blue-6 answers again.
//!
//! Uses its own namespace prefix and checks that nothing with it is left. Skips (and
//! passes) when not root or without `ip netns`.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nvlb::lab::traffic;

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const VIP_URL: &str = "http://203.0.113.10:80";
const VICTIM_VM: &str = "blue-6";
const VICTIM_DIP: &str = "blue-web 10.0.0.6:80";
/// Slack on top of fall x interval + timeout: scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

/// A kept lab; removed when dropped (also after a failed assertion).
struct Lab {
    prefix: String,
    gone: bool,
}

impl Lab {
    fn up(prefix: String) -> Lab {
        let lab = Lab {
            prefix,
            gone: false,
        };
        let out = nvlb(&["lab", "--keep", "--prefix", &lab.prefix, "--requests", "20"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("nvlb lab --keep:\n{stdout}");
        assert!(
            out.status.success(),
            "nvlb lab exited {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("\nOK: every request answered"), "{stdout}");
        lab
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn dir(&self) -> std::path::PathBuf {
        nvlb::lab::run_dir(&self.prefix)
    }

    /// The LB's stderr so far.
    fn lb_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("lb.err")).unwrap_or_default()
    }

    /// Waits for a line of the LB's log containing `needle`; when it appeared.
    fn wait_log(&self, needle: &str, limit: Duration) -> Instant {
        let t = Instant::now();
        loop {
            if self.lb_log().contains(needle) {
                return Instant::now();
            }
            assert!(
                t.elapsed() < limit,
                "no {needle:?} in the LB's log within {limit:?}:\n{}",
                self.lb_log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) -> String {
        let out = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        self.gone = true;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("nvlb lab --down:\n{stdout}");
        assert!(out.status.success());
        let left = common::namespaces_with(&self.prefix);
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
        stdout
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.gone || !common::namespaces_with(&self.prefix).is_empty() {
            let _ = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        }
    }
}

/// The processes in a namespace, with their command lines.
fn processes_in(ns: &str) -> Vec<(u32, Vec<String>)> {
    let out = common::run("ip", &["netns", "pids", ns]);
    String::from_utf8_lossy(&out.stdout)
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

/// A slow bulk download through the VIP (10 MiB at 2 MB/s: about 5 s), in the background.
fn slow_bulk(lab: &Lab, i: usize) -> (Child, std::path::PathBuf) {
    let file = lab.dir().join(format!("slow{i}.bin"));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("client"),
            "curl",
            "--silent",
            "--limit-rate",
            "2M",
            "--max-time",
            "60",
            "--output",
            &file.display().to_string(),
            "--write-out",
            "%{http_code}\t%{exitcode}\t%{size_download}\t%header{x-served-by}\n",
            &format!("{VIP_URL}/bulk"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl");
    (child, file)
}

#[test]
fn a_killed_dip_goes_down_new_flows_avoid_it_and_it_rejoins() {
    if common::skip_without_netns() {
        return;
    }
    let policy = nvlb::control::policy_file::read(
        std::path::Path::new(common::EXAMPLE),
        &Default::default(),
    )
    .unwrap();
    let check = policy
        .pool_named("blue-web")
        .unwrap()
        .1
        .health
        .clone()
        .expect("the example checks blue-web");
    let mut lab = Lab::up(format!("nvh{}-", std::process::id() % 100_000));
    assert!(
        !lab.lb_log().contains("nvlb: health:"),
        "every DIP stays up in a healthy lab:\n{}",
        lab.lb_log()
    );
    let bulk_sha = traffic::sha256(&lab.dir().join("bulk.bin")).unwrap();

    // Long-lived connections first, then load, then the kill.
    let slow: Vec<_> = (0..4).map(|i| slow_bulk(&lab, i)).collect();
    thread::sleep(Duration::from_millis(500));
    let stop = Arc::new(AtomicBool::new(false));
    let loader = common::load_batches(lab.ns("client"), VIP_URL, 8, 5, lab.dir(), stop.clone());
    thread::sleep(Duration::from_secs(1));
    let victim_ns = lab.ns(VICTIM_VM);
    let server = processes_in(&victim_ns)
        .into_iter()
        .find(|(_, args)| args.iter().any(|a| a == "lab-serve"))
        .expect("the VM's lab-serve");
    common::must("kill", &["-KILL", &server.0.to_string()]);
    let killed = Instant::now();
    let down_at = lab.wait_log(
        &format!("nvlb: health: {VICTIM_DIP} down"),
        Duration::from_secs(15),
    );
    let took = down_at - killed;
    let bound = check.interval * check.fall + check.timeout + SLACK;
    println!("down after {took:?} (bound {bound:?})");
    assert!(took <= bound, "down after {took:?}, more than {bound:?}");
    // Load goes on for a few seconds after the DIP is down.
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let batches = loader.join().unwrap();
    let after: Vec<&common::Batch> = batches.iter().filter(|b| b.started > down_at).collect();
    assert!(!after.is_empty(), "no load after the DIP went down");
    for b in &after {
        assert!(
            b.got.failures.is_empty(),
            "new connections failed: {:?}",
            b.got.failures
        );
        assert_eq!(b.got.answered(), b.got.sent);
        assert!(
            !b.got.answers.contains_key(VICTIM_VM),
            "{:?}",
            b.got.answers
        );
    }
    let before: Vec<&common::Batch> = batches.iter().filter(|b| b.ended < killed).collect();
    for b in &before {
        assert!(
            b.got.failures.is_empty(),
            "before the kill: {:?}",
            b.got.failures
        );
    }
    println!(
        "load: {} batches, {} after the DIP went down, all answered",
        batches.len(),
        after.len()
    );

    // The slow downloads served by other DIPs complete, intact.
    let mut others = 0;
    for (mut child, file) in slow {
        let status = child.wait().unwrap();
        let mut out = String::new();
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let f: Vec<&str> = out.trim_end().split('\t').collect();
        let served_by = f.get(3).copied().unwrap_or("").trim();
        println!("slow download from {served_by}: {out:?} ({status})");
        if served_by == VICTIM_VM {
            continue; // its server died under it
        }
        others += 1;
        assert_eq!((f[0], f[1]), ("200", "0"), "{out}");
        assert_eq!(
            traffic::sha256(&file).unwrap(),
            bulk_sha,
            "from {served_by}"
        );
        let _ = std::fs::remove_file(&file);
    }
    assert!(others > 0, "no slow download went to another DIP");

    // The same server again: it rejoins.
    let mut args = server.1.clone();
    let program = args.remove(0);
    let restarted = Instant::now();
    let mut again = Command::new("ip")
        .args(["netns", "exec", &victim_ns, &program])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart lab-serve");
    let up_at = lab.wait_log(
        &format!("nvlb: health: {VICTIM_DIP} up"),
        Duration::from_secs(15),
    );
    let took = up_at - restarted;
    let bound = check.interval * (check.rise + 1) + SLACK;
    println!("up after {took:?} (bound {bound:?})");
    assert!(took <= bound, "up after {took:?}, more than {bound:?}");
    let got = traffic::requests(&lab.ns("client"), VIP_URL, 40, 5, &lab.dir(), "rejoin").unwrap();
    assert!(got.failures.is_empty(), "{:?}", got.failures);
    assert!(
        got.answers.contains_key(VICTIM_VM),
        "blue-6 takes new flows again: {:?}",
        got.answers
    );

    let counters = lab.down();
    let _ = again.kill();
    let _ = again.wait();
    let log_local = counters
        .lines()
        .find_map(|l| l.trim().strip_prefix("io.local_frames "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        log_local > 0,
        "probe replies reached the health thread:\n{counters}"
    );
}
