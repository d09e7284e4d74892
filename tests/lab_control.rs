//! Policy changes on the real lab (`nvlb lab --keep`: namespaces, the real LB with its
//! management API, host simulators, kernel TCP in the VMs, curl), as a user would make
//! them, under continuous load from the Internet client through blue-web:
//!
//! - live migration: Blue 10.0.0.6 (blue-6) moves from host2 to host3 — its veth into
//!   host3's namespace, its lookup records through `nvlb ctl lookup set`, both hosts'
//!   VM files and a SIGHUP to every host. No request fails, blue-6 answers new
//!   connections afterwards (only host3 can reach it then), and slow downloads from it
//!   that were in flight during the move complete intact;
//! - a new DIP under load: blue-tier-2 VMs added to blue-web, once through `nvlb ctl
//!   dip add` and once by editing the policy file and `nvlb reload`. No request fails,
//!   each new DIP answers, and slow downloads from the other DIPs are untouched.
//!
//! Each test uses its own namespace prefix (the two run one after the other) and checks
//! that nothing with it is left. Skips (and passes) when not root or without `ip netns`.

mod common;

use common::Slow;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nvlb::lab::topology::Topology;
use nvlb::lab::traffic;

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const VIP_URL: &str = "http://203.0.113.10:80";
/// One lab at a time: the machine is shared and small.
static SERIAL: Mutex<()> = Mutex::new(());

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A kept lab; removed when dropped (also after a failed assertion).
struct Lab {
    prefix: String,
    topo: Topology,
    gone: bool,
}

impl Lab {
    fn up(tag: &str) -> Lab {
        let prefix = format!("{tag}{}-", std::process::id() % 10_000);
        let policy = nvlb::control::policy_file::read(
            std::path::Path::new(common::EXAMPLE),
            &Default::default(),
        )
        .unwrap();
        let lab = Lab {
            topo: Topology::from_snapshot(&policy, &prefix),
            prefix,
            gone: false,
        };
        let out = nvlb(&["lab", "--keep", "--prefix", &lab.prefix, "--requests", "40"]);
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

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn dir(&self) -> PathBuf {
        nvlb::lab::run_dir(&self.prefix)
    }

    fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{label}.err"))).unwrap_or_default()
    }

    /// Waits until `label`'s stderr contains `needle`; when it was seen.
    fn wait_log(&self, label: &str, needle: &str, limit: Duration) -> Instant {
        let t = Instant::now();
        loop {
            if self.log(label).contains(needle) {
                return Instant::now();
            }
            assert!(
                t.elapsed() < limit,
                "no {needle:?} in {label}'s log within {limit:?}:\n{}",
                self.log(label)
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// `nvlb ARGS` inside the LB's namespace with the lab's operator token; must succeed.
    fn ctl(&self, args: &[&str]) -> Output {
        let out = self.ctl_any(args);
        assert!(
            out.status.success(),
            "nvlb {}: {}{}",
            args.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    fn ctl_any(&self, args: &[&str]) -> Output {
        let token = self.dir().join(nvlb::lab::API_TOKEN_FILE);
        let mut full = vec![
            "netns".to_string(),
            "exec".into(),
            self.topo.lb.clone(),
            NVLB.into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        full.push("--token-file".into());
        full.push(token.display().to_string());
        Command::new("ip")
            .args(&full)
            .output()
            .expect("ip netns exec")
    }

    /// The pid of host simulator `host` (the `nvlb host` process in its namespace).
    fn host_pid(&self, host: &str) -> String {
        let out = common::run("ip", &["netns", "pids", &self.ns(host)]);
        text(&out.stdout)
            .split_whitespace()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| c.split(|&b| b == 0).any(|a| a == b"host"))
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("no nvlb host in {host}"))
            .to_string()
    }

    /// Stops host simulator `host` (SIGTERM) and waits until it has exited: its final
    /// output (`<host>.out`: a `stopped after` line, then `name value` counters). The
    /// teardown would SIGKILL a host still busy after its grace period, which then
    /// prints nothing.
    fn stop_host(&self, host: &str, limit: Duration) -> String {
        let pid = self.host_pid(host);
        common::must("kill", &["-TERM", &pid]);
        let t = Instant::now();
        // Gone, or a zombie nobody has reaped yet (state `Z` in /proc/PID/stat).
        let exited = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |st| {
                st.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
        };
        while !exited() {
            assert!(
                t.elapsed() < limit,
                "{host} (pid {pid}) still running {limit:?} after SIGTERM"
            );
            thread::sleep(Duration::from_millis(20));
        }
        std::fs::read_to_string(self.dir().join(format!("{host}.out"))).unwrap_or_default()
    }

    fn down(&mut self) -> String {
        let out = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
        self.gone = true;
        let stdout = text(&out.stdout);
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

/// Every request of every batch answered; the answers per VM, and how many there were.
fn all_answered(batches: &[common::Batch]) -> usize {
    let mut n = 0;
    for b in batches {
        assert!(
            b.got.failures.is_empty(),
            "failed requests: {:?}",
            b.got.failures
        );
        assert_eq!(b.got.answered(), b.got.sent);
        n += b.got.sent;
    }
    n
}

/// A slow bulk download through the VIP (10 MiB at 2 MB/s: about 5 s), in flight.
fn slow(lab: &Lab, i: usize) -> Slow {
    Slow::start(&lab.dir(), &lab.topo.client, VIP_URL, "2M", 40, i)
}

/// Waits for the end of `s`: the whole file, intact.
fn check(s: Slow, sha: &str) {
    if let Err(e) = s.finish(sha) {
        panic!("slow download {e}");
    }
}

/// Slow downloads, `on` of them served by `vm` and `off` by other VMs (Maglev decides:
/// downloads landing elsewhere than needed are stopped at once).
fn slow_downloads(lab: &Lab, vm: &str, on: usize, off: usize) -> Vec<Slow> {
    let (mut to_vm, mut others) = (Vec::new(), Vec::new());
    for i in 0..60 {
        if to_vm.len() >= on && others.len() >= off {
            break;
        }
        let s = slow(lab, i);
        if s.served_by == vm && to_vm.len() < on {
            to_vm.push(s);
        } else if s.served_by != vm && others.len() < off {
            others.push(s);
        } else {
            s.stop();
        }
    }
    assert!(
        to_vm.len() == on && others.len() == off,
        "could not place slow downloads"
    );
    to_vm.extend(others);
    to_vm
}

#[test]
fn a_dip_live_migrates_to_another_host_under_load_without_a_failed_request() {
    if common::skip_without_netns() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("nvm");
    let vm = lab
        .topo
        .vms
        .iter()
        .find(|v| v.v4.is_some_and(|a| a.addr.to_string() == "10.0.0.6"))
        .expect("blue 10.0.0.6")
        .clone();
    let (from, to) = ("host2", "host3");
    assert_eq!(lab.topo.hosts[vm.host].name, from);
    let mac = vm.mac.to_string();
    let bulk_sha = traffic::sha256(&lab.dir().join("bulk.bin")).unwrap();

    // Long-lived transfers (two from the VM that moves), then load.
    let slow = slow_downloads(&lab, &vm.name, 2, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = common::load_batches(
        lab.topo.client.clone(),
        VIP_URL,
        8,
        10,
        lab.dir(),
        stop.clone(),
    );
    thread::sleep(Duration::from_millis(1500));

    // 1. The new host's VM file names the VM (nothing happens until it reloads).
    let line = format!("{},{mac},{}", vm.vsid.get(), vm.host_if);
    let to_file = nvlb::lab::vm_file(&lab.dir(), to);
    let mut list = std::fs::read_to_string(&to_file).unwrap();
    list.push_str(&format!("{line}\n"));
    std::fs::write(&to_file, list).unwrap();
    // 2. The orchestrator moves the lookup records: the LB sends to host3 at once.
    let moved = Instant::now();
    for ca in ["10.0.0.6", "fd00:0:0:1::6"] {
        lab.ctl(&["ctl", "lookup", "set", "5001", ca, to, &mac]);
    }
    let api_done = moved.elapsed();
    // 3. host3 takes the policy: the VM is placed there, its interface not yet.
    common::must("kill", &["-HUP", &lab.host_pid(to)]);
    lab.wait_log(
        to,
        &format!("waiting for their interface: {}", vm.host_if),
        Duration::from_secs(5),
    );
    // 4. The VM's veth moves into host3's namespace; host3 attaches it when it appears.
    common::must(
        "ip",
        &[
            "-n",
            &lab.ns(from),
            "link",
            "set",
            &vm.host_if,
            "netns",
            &lab.ns(to),
        ],
    );
    common::must("ip", &["-n", &lab.ns(to), "link", "set", &vm.host_if, "up"]);
    let attached = lab.wait_log(
        to,
        &format!("attached {}", vm.host_if),
        Duration::from_secs(5),
    );
    let gap = attached - moved;
    // 5. The old host drops the VM from its file; every host takes the new policy.
    let from_file = nvlb::lab::vm_file(&lab.dir(), from);
    let list = std::fs::read_to_string(&from_file).unwrap();
    let kept: String = list
        .lines()
        .filter(|l| *l != line)
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, list, "host2's file named the VM");
    std::fs::write(&from_file, kept).unwrap();
    for h in &lab.topo.hosts {
        if h.name != to {
            common::must("kill", &["-HUP", &lab.host_pid(&h.name)]);
            lab.wait_log(&h.name, "reloaded", Duration::from_secs(5));
        }
    }
    println!(
        "migration: lookup records moved in {api_done:?}; the VM was unreachable for at most \
         {gap:?} (records moved .. interface attached on {to})"
    );
    assert!(
        gap < Duration::from_secs(3),
        "gap {gap:?}: TCP would have to retransmit many times"
    );

    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let batches = loader.join().unwrap();
    let total = all_answered(&batches);
    let after: Vec<&common::Batch> = batches.iter().filter(|b| b.started > attached).collect();
    let from_vm: usize = after
        .iter()
        .map(|b| b.got.answers.get(&vm.name).copied().unwrap_or(0))
        .sum();
    let slowest = batches
        .iter()
        .map(|b| b.ended - b.started)
        .max()
        .unwrap_or_default();
    println!(
        "load: {} batches, {total} requests, 0 failed; {from_vm} answered by {} after \
         the move; slowest batch {slowest:?}",
        batches.len(),
        vm.name
    );
    // A few more, to be sure the VM answers new connections through host3.
    let got = traffic::requests(&lab.topo.client, VIP_URL, 40, 10, &lab.dir(), "after").unwrap();
    assert!(got.failures.is_empty(), "{:?}", got.failures);
    assert!(
        from_vm + got.answers.get(&vm.name).copied().unwrap_or(0) > 0,
        "{} answers after the move: {:?}",
        vm.name,
        got.answers
    );
    // Established connections survived, those to the moved VM included.
    for s in slow {
        check(s, &bulk_sha);
    }
    assert!(
        lab.log(from)
            .contains(&format!("nvlb: host {from} reloaded")),
        "{}",
        lab.log(from)
    );
    println!(
        "LB health log: {:?}",
        lab.log("lb")
            .lines()
            .filter(|l| l.contains("health:"))
            .collect::<Vec<_>>()
    );
    // The two hosts' final counters, from the hosts themselves, stopped here (not by
    // the teardown, which kills what is slow to stop). A missing counter is None.
    let to_out = lab.stop_host(to, Duration::from_secs(15));
    let from_out = lab.stop_host(from, Duration::from_secs(15));
    lab.down();
    let got = |out: &str, name: &str| common::counter(out, name);
    let (rx_pa, attached, to_reloads, waiting) = (
        got(&to_out, "rx_pa"),
        got(&to_out, "vms_attached"),
        got(&to_out, "reloads"),
        got(&to_out, "io.vm_waiting"),
    );
    let (from_reloads, away) = (got(&from_out, "reloads"), got(&from_out, "drop.vm_away"));
    println!(
        "{to}: rx_pa {rx_pa:?}, vms_attached {attached:?}, reloads {to_reloads:?}, \
         io.vm_waiting {waiting:?} (frames for the VM while it was waiting for its \
         interface); {from}: reloads {from_reloads:?}, drop.vm_away {away:?} (printed only \
         when not 0)"
    );
    assert!(
        rx_pa.is_some_and(|n| n > 0),
        "{to} received PA frames (blue-7 and blue-8 are there under load): {to_out}"
    );
    assert_eq!(
        attached,
        Some(1),
        "{to} attached the moved VM's interface, once: {to_out}"
    );
    assert_eq!(to_reloads, Some(1), "{to} took one SIGHUP: {to_out}");
    assert_eq!(from_reloads, Some(1), "{from} took one SIGHUP: {from_out}");
}

#[test]
fn a_dip_added_under_load_answers_and_established_flows_stay() {
    if common::skip_without_netns() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::up("nvd");
    let name_of = |ca: &str| {
        lab.topo
            .vms
            .iter()
            .find(|v| v.v4.is_some_and(|a| a.addr.to_string() == ca))
            .expect("VM")
            .name
            .clone()
    };
    let (new1, new2) = (name_of("10.0.1.21"), name_of("10.0.1.22"));
    let bulk_sha = traffic::sha256(&lab.dir().join("bulk.bin")).unwrap();
    let slow = slow_downloads(&lab, "", 0, 3);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = common::load_batches(
        lab.topo.client.clone(),
        VIP_URL,
        8,
        10,
        lab.dir(),
        stop.clone(),
    );
    thread::sleep(Duration::from_secs(1));

    // Through the API (persisted into the policy file).
    let t = Instant::now();
    lab.ctl(&[
        "ctl",
        "dip",
        "add",
        "blue-web",
        "10.0.1.21",
        "--port",
        "8080",
        "--vsid",
        "5002",
    ]);
    let config = lab.dir().join("config.toml");
    let policy = std::fs::read_to_string(&config).unwrap();
    assert!(policy.contains("10.0.1.21"), "persisted:\n{policy}");
    let answered = |vm: &str, limit: Duration| {
        let t = Instant::now();
        loop {
            let got =
                traffic::requests(&lab.topo.client, VIP_URL, 16, 10, &lab.dir(), "probe").unwrap();
            assert!(got.failures.is_empty(), "{:?}", got.failures);
            if got.answers.contains_key(vm) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < limit,
                "{vm} never answered: {:?}",
                got.answers
            );
        }
    };
    let first = answered(&new1, Duration::from_secs(15));
    println!(
        "{new1} added through the API in {:?}: answers after {first:?}",
        t.elapsed()
    );

    // By editing the file and `nvlb reload`.
    let anchor = "{ ca = \"10.0.0.8\", port = 80, weight = 2 },";
    assert!(policy.contains(anchor), "{policy}");
    let edited = policy.replacen(
        anchor,
        &format!("{anchor}\n  {{ ca = \"10.0.1.22\", port = 8080, vsid = 5002 }},"),
        1,
    );
    std::fs::write(&config, edited).unwrap();
    let t = Instant::now();
    let out = lab.ctl(&["reload"]);
    println!("nvlb reload: {}", text(&out.stdout));
    let second = answered(&new2, Duration::from_secs(15));
    println!(
        "{new2} added by reload in {:?}: answers after {second:?}",
        t.elapsed()
    );

    // A broken file is refused with its line, and the running policy keeps serving.
    let good = std::fs::read_to_string(&config).unwrap();
    let broken = good.replacen(
        "{ ca = \"10.0.1.22\", port = 8080,",
        "{ ca = \"10.0.1.22\", port = 99999,",
        1,
    );
    assert_ne!(broken, good);
    std::fs::write(&config, &broken).unwrap();
    let out = lab.ctl_any(&["reload"]);
    let said = text(&out.stdout) + &text(&out.stderr);
    println!("nvlb reload (broken file): {said}");
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("config.toml:") && said.contains("port"),
        "{said}"
    );
    answered(&new2, Duration::from_secs(5));
    std::fs::write(&config, good).unwrap();

    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let batches = loader.join().unwrap();
    let total = all_answered(&batches);
    println!(
        "load: {} batches, {total} requests, 0 failed",
        batches.len()
    );
    // Established connections to the other DIPs were untouched.
    for s in slow {
        check(s, &bulk_sha);
    }
    lab.down();
}
