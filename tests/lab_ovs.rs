//! Interoperability with a real NVGRE peer: `nvlb lab --ovs-hosts 3` runs host1-3 as
//! Open vSwitch userspace bridges (GRE with `key=flow`) instead of `nvlb host`, so every
//! public VIP's DIPs (Blue on host1-3, Red on host2-3) and Blue's CA VIP clients sit
//! behind OVS's encapsulation and decapsulation. Asserts that both tenants' VIPs were
//! answered by every DIP, every bulk transfer's sha256 matched, OVS's rules carried
//! traffic both ways on each OVS host, and that no namespace or OVS process remains.
//! Skips (and passes) when not root, without `ip netns`, or without ovs-vswitchd
//! (tests/install.sh installs it).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const REQUESTS: usize = 30;

/// Per VIP: (requests, answered, failed), DIP rows (VM -> answers), the bulk line.
type Table = ((usize, usize, usize), BTreeMap<String, usize>, String);

/// Tables start with `VIP name (...): R requests, A answered, F failed`, DIP rows are
/// `  DIP VM WEIGHT ANSWERS`, `  bulk: ...` ends them.
fn tables(stdout: &str) -> BTreeMap<String, Table> {
    let mut out: BTreeMap<String, Table> = BTreeMap::new();
    let mut current = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("VIP ") {
            let name = rest.split_whitespace().next().unwrap_or("").to_string();
            let nums: Vec<usize> = rest
                .rsplit(':')
                .next()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            let head = match nums[..] {
                [r, a, f] => (r, a, f),
                _ => (0, 0, 0),
            };
            out.insert(name.clone(), (head, BTreeMap::new(), String::new()));
            current = Some(name);
        } else if let Some(t) = current.as_ref().and_then(|n| out.get_mut(n)) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.trim_start().starts_with("bulk:") {
                t.2 = line.trim().to_string();
                current = None;
            } else if let [dip, vm, _weight, answers] = words[..]
                && dip != "DIP"
                && let Ok(n) = answers.parse()
            {
                t.1.insert(vm.to_string(), n);
            }
        }
    }
    out
}

/// Live (non-zombie) processes whose command line names `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in dir.flatten() {
        let path = e.path();
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let zombie = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(true);
        if cmd.contains(needle) && !zombie {
            found.push(format!("{}: {cmd}", path.display()));
        }
    }
    found
}

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

/// `counter` of the `  hostN (Open vSwitch): encapsulated E, decapsulated to VMs D, ...`
/// line.
fn ovs_counter(stdout: &str, host: &str, counter: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| {
        l.trim_start()
            .starts_with(&format!("{host} (Open vSwitch):"))
    })?;
    let rest = line.split_once(&format!("{counter} "))?.1;
    rest.split(',').next()?.trim().parse().ok()
}

#[test]
fn ovs_hosts_serve_both_tenants() {
    if common::skip_without_netns() {
        return;
    }
    if common::skip_without_program("ovs-vswitchd", "tests/install.sh installs it") {
        return;
    }
    let prefix = format!("nvo{}-", std::process::id());
    let n = REQUESTS.to_string();
    let out = nvlb(&[
        "lab",
        "--ovs-hosts",
        "3",
        "--prefix",
        &prefix,
        "--requests",
        &n,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = common::namespaces_with(&prefix);
    let procs = processes_naming(&format!("{prefix}lab/ovs-"));
    if !left.is_empty() {
        let _ = nvlb(&["lab", "--down", "--prefix", &prefix]);
    }
    println!("{stdout}");
    assert!(
        out.status.success(),
        "nvlb lab --ovs-hosts 3 exited {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(procs.is_empty(), "OVS processes left behind: {procs:?}");
    assert!(stdout.contains("OK: every request answered"), "{stdout}");

    for host in ["host1", "host2", "host3"] {
        for counter in ["encapsulated", "decapsulated to VMs"] {
            let v = ovs_counter(&stdout, host, counter);
            assert!(
                v.is_some_and(|v| v > 0),
                "{host} {counter}: {v:?}\n{stdout}"
            );
        }
        // It really was OVS, not the simulator.
        assert!(
            !stdout.contains(&format!("  {host} (exit status")),
            "{host} ran as nvlb host:\n{stdout}"
        );
    }

    let tables = tables(&stdout);
    let expect: [(&str, &[&str]); 7] = [
        ("blue-web", &["blue-5", "blue-6", "blue-7", "blue-8"]),
        ("blue-web6", &["blue-5", "blue-6", "blue-7", "blue-8"]),
        ("red-web", &["red-5", "red-6"]),
        ("red-web6", &["red-5", "red-6"]),
        ("blue-vip1", &["blue-21", "blue-22"]),
        ("blue-vip1-v6", &["blue-21", "blue-22"]),
        ("red-vip1", &["red-21"]),
    ];
    for (vip, vms) in expect {
        let (head, dips, bulk) = tables
            .get(vip)
            .unwrap_or_else(|| panic!("no table for {vip} in:\n{stdout}"));
        assert_eq!(*head, (REQUESTS, REQUESTS, 0), "{vip}");
        let got: Vec<&str> = dips.keys().map(String::as_str).collect();
        let mut want = vms.to_vec();
        want.sort();
        assert_eq!(got, want, "{vip}: DIP rows");
        for (vm, n) in dips {
            assert!(*n > 0, "{vip}: {vm} answered nothing: {dips:?}");
        }
        assert_eq!(dips.values().sum::<usize>(), REQUESTS, "{vip}: {dips:?}");
        assert!(bulk.contains("sha256 equal"), "{vip}: {bulk}");
        assert!(bulk.contains("10485760 bytes"), "{vip}: {bulk}");
    }
}

#[test]
fn too_many_ovs_hosts_is_refused_before_building() {
    if common::skip_without_netns() {
        return;
    }
    if common::skip_without_program("ovs-vswitchd", "tests/install.sh installs it") {
        return;
    }
    let prefix = format!("nvo{}x-", std::process::id());
    let out = nvlb(&["lab", "--ovs-hosts", "6", "--prefix", &prefix]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--ovs-hosts 6"), "{stderr}");
    assert!(stderr.contains("5 host"), "{stderr}");
    assert!(common::namespaces_with(&prefix).is_empty());
}
