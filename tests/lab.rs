//! `nvlb lab` end to end, as a user runs it: the guide's datacenter in namespaces with
//! the real LB, host simulators, kernel TCP stacks in the VMs and curl, on the built-in
//! example policy. Asserts on the printed tables: every DIP of both tenants' public
//! VIPs answered (v4 and v6), both tier-2 VMs answered Blue's CA VIP, every bulk
//! transfer's sha256 matched, no request failed; and that no namespace is left behind.
//! Skips (and passes) when not root or without `ip netns`.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");

/// One VIP's table: its header numbers, DIP rows (VM -> answers) and bulk line.
#[derive(Debug, Default)]
struct Table {
    requests: usize,
    answered: usize,
    failed: usize,
    dips: BTreeMap<String, usize>,
    bulk: String,
}

/// `VIP name (...) addr from ns: 40 requests, 40 answered, 0 failed` starts a table;
/// DIP rows are `  DIP VM WEIGHT ANSWERS`; `  bulk: ...` ends it.
fn parse(stdout: &str) -> BTreeMap<String, Table> {
    let mut tables = BTreeMap::new();
    let mut current: Option<(String, Table)> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("VIP ") {
            if let Some((name, t)) = current.take() {
                tables.insert(name, t);
            }
            let name = rest.split_whitespace().next().unwrap_or("").to_string();
            let mut t = Table::default();
            let nums: Vec<usize> = rest
                .rsplit(':')
                .next()
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|s| s.parse().ok())
                .collect();
            if let [r, a, f] = nums[..] {
                (t.requests, t.answered, t.failed) = (r, a, f);
            }
            current = Some((name, t));
        } else if let Some((_, t)) = current.as_mut() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if line.trim_start().starts_with("bulk:") {
                t.bulk = line.trim().to_string();
            } else if let [dip, vm, _weight, answers] = words[..]
                && dip != "DIP"
                && let Ok(n) = answers.parse()
            {
                t.dips.insert(vm.to_string(), n);
            }
        }
    }
    if let Some((name, t)) = current {
        tables.insert(name, t);
    }
    tables
}

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

#[test]
fn lab_answers_every_vip_from_every_dip() {
    if common::skip_without_netns() {
        return;
    }
    let host = nvlb(&["host", "--help"]);
    assert!(
        host.status.success(),
        "`nvlb host` (the Hyper-V host simulator) is missing from this build, so the \
         lab cannot reach any VM: {}",
        String::from_utf8_lossy(&host.stderr).trim()
    );
    let prefix = format!("nvt{}-", std::process::id());
    let out = nvlb(&["lab", "--prefix", &prefix, "--requests", "40"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = common::namespaces_with(&prefix);
    if !left.is_empty() {
        let _ = nvlb(&["lab", "--down", "--prefix", &prefix]);
    }
    println!("{stdout}");
    assert!(
        out.status.success(),
        "nvlb lab exited {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(stdout.contains("OK: every request answered"), "{stdout}");
    assert!(
        stdout.contains("LB counters (nvlb run, after SIGTERM"),
        "{stdout}"
    );

    let tables = parse(&stdout);
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
        let t = tables
            .get(vip)
            .unwrap_or_else(|| panic!("no table for {vip} in:\n{stdout}"));
        assert_eq!(
            (t.requests, t.answered, t.failed),
            (40, 40, 0),
            "{vip}: {t:?}"
        );
        let got: Vec<&str> = t.dips.keys().map(String::as_str).collect();
        let mut want = vms.to_vec();
        want.sort();
        assert_eq!(got, want, "{vip}: DIP rows");
        for (vm, n) in &t.dips {
            assert!(*n > 0, "{vip}: {vm} answered nothing: {t:?}");
        }
        assert_eq!(t.dips.values().sum::<usize>(), 40, "{vip}: {t:?}");
        assert!(t.bulk.contains("sha256 equal"), "{vip}: {}", t.bulk);
        assert!(t.bulk.contains("10485760 bytes"), "{vip}: {}", t.bulk);
        assert!(
            vms.iter().any(|vm| t.bulk.contains(&format!("from {vm} "))),
            "{vip}: bulk not served by a DIP: {}",
            t.bulk
        );
    }
}

#[test]
fn down_on_nothing_succeeds_and_bad_prefixes_are_refused() {
    if common::skip_without_netns() {
        return;
    }
    let prefix = format!("nvt{}d-", std::process::id());
    let out = nvlb(&["lab", "--down", "--prefix", &prefix]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed 0 namespace"));
    // A prefix that would match unrelated namespaces is refused before anything runs.
    for bad in ["", "n", "nvt"] {
        let out = nvlb(&["lab", "--down", "--prefix", bad]);
        assert_eq!(out.status.code(), Some(1), "prefix {bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid prefix"));
    }
}
