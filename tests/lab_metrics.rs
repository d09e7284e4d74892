//! Metrics end to end: `nvlb lab --prometheus --keep` with traffic, the real Prometheus
//! (Debian's) scraping the LB and the host simulators every second, then:
//! - every `expr` of every panel of every dashboard in dashboards/ (variables
//!   substituted) returns data from Prometheus's HTTP API;
//! - every alert rule is loaded and healthy, and with nothing broken none fires (each
//!   rule's expression returns nothing, no alert is pending or firing);
//! - the overview and tenant dashboards render to PNG from that data
//!   (dashboards/render.py; into docs/ when NVLB_DOCS_PNG=1);
//! - killing the LB (so its /metrics) makes exactly the scrape alert's expression
//!   return the LB target.
//!
//! The DIP-kill case: the health checks take a killed VM's DIPs down, NvlbDipDown's
//! expression holds for them and no other rule's (`dip_kill_case`). Skips (and passes) when not root, without `ip netns` or without prometheus.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

const NVLB: &str = env!("CARGO_BIN_EXE_nvlb");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PROM: &str = "http://127.0.0.1:9090";

fn nvlb(args: &[&str]) -> Output {
    Command::new(NVLB).args(args).output().expect("run nvlb")
}

/// Removes the lab whatever happens to the test.
struct Lab {
    prefix: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = nvlb(&["lab", "--down", "--prefix", &self.prefix]);
    }
}

impl Lab {
    fn mon(&self) -> String {
        format!("{}mon", self.prefix)
    }

    /// GET on the lab's Prometheus (inside the management namespace): the JSON answer.
    fn api(&self, path: &str, query: Option<&str>) -> Value {
        let url = format!("{PROM}{path}");
        let mut args = vec![
            "netns",
            "exec",
            &self.mon(),
            "curl",
            "-sS",
            "--max-time",
            "5",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(q) = query {
            args.extend(["-G".into(), "--data-urlencode".into(), format!("query={q}")]);
        }
        args.push(url);
        let out = Command::new("ip").args(&args).output().expect("curl");
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON from Prometheus");
        assert_eq!(v["status"], "success", "{path} {query:?}: {v}");
        v
    }

    /// The result vector of an instant query.
    fn query(&self, expr: &str) -> Vec<Value> {
        self.api("/api/v1/query", Some(expr))["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `expr` until it returns something (or `secs` pass).
    fn wait_for(&self, expr: &str, secs: u64) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.query(expr);
            if !r.is_empty() || start.elapsed() > Duration::from_secs(secs) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Alerting rules as Prometheus loaded them: (name, expression, health).
    fn alert_rules(&self) -> Vec<(String, String, String)> {
        let v = self.api("/api/v1/rules", None);
        let mut out = Vec::new();
        for g in v["data"]["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                if r["type"] == "alerting" {
                    out.push((
                        r["name"].as_str().unwrap_or("").to_string(),
                        r["query"].as_str().unwrap_or("").to_string(),
                        r["health"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        out
    }

    /// Names of the alerts Prometheus has pending or firing.
    fn active_alerts(&self) -> BTreeSet<String> {
        let v = self.api("/api/v1/alerts", None);
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["labels"]["alertname"].as_str().map(String::from))
            .collect()
    }

    /// Which alert rules' expressions return something right now.
    fn would_fire(&self) -> BTreeSet<String> {
        self.alert_rules()
            .into_iter()
            .filter(|(_, expr, _)| !self.query(expr).is_empty())
            .map(|(name, _, _)| name)
            .collect()
    }
}

/// Every (dashboard file, panel title, expr) of dashboards/*.json.
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("dashboards"))
        .expect("dashboards/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "three dashboards: {files:?}");
    let mut out = Vec::new();
    for f in files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut panels: Vec<&Value> = Vec::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            panels.push(p);
            // Panels folded into a row.
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    let title = p["title"].as_str().unwrap_or("").to_string();
                    out.push((name.clone(), title, e.to_string()));
                }
            }
        }
    }
    out
}

/// The expression as Grafana would send it with these variable values.
fn substitute(expr: &str, tenant: &str, vip: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("${tenant}", tenant)
        .replace("$tenant", tenant)
        .replace("${vip}", vip)
        .replace("$vip", vip)
}

/// `ip netns exec NS curl URL` lines of the kept lab's instructions: the traffic to
/// keep going while Prometheus scrapes.
fn curl_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w[..] {
                ["ip", "netns", "exec", ns, "curl", url] if url.starts_with("http://") => {
                    Some((ns.to_string(), url.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn render(lab: &Lab, dashboard: &str, out: &Path, vars: &[&str]) {
    let mut args: Vec<String> = [
        "netns",
        "exec",
        &lab.mon(),
        "/usr/bin/python3",
        &format!("{ROOT}/dashboards/render.py"),
        "--url",
        PROM,
        "--dashboard",
        &format!("{ROOT}/dashboards/{dashboard}"),
        "--out",
        &out.display().to_string(),
        "--window",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for v in vars {
        args.extend(["--var".to_string(), v.to_string()]);
    }
    let o = Command::new("ip").args(&args).output().expect("render.py");
    assert!(
        o.status.success(),
        "render.py {dashboard}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let len = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    assert!(len > 10_000, "{} is {len} bytes", out.display());
}

/// A DIP's web server dies: the health checks take it down (fall 2 x 1 s in the
/// example policy), `nvlb_dip_up` says so for exactly that VM's DIPs, NvlbDipDown's
/// expression holds and no other rule's does (its pools keep healthy DIPs).
fn dip_kill_case(lab: &Lab) {
    let ns = format!("{}blue-6", lab.prefix);
    let pids = common::run("ip", &["netns", "pids", &ns]);
    let pids = String::from_utf8_lossy(&pids.stdout).into_owned();
    assert!(!pids.trim().is_empty(), "no server in {ns}");
    for pid in pids.split_whitespace() {
        common::must("kill", &["-TERM", pid]);
    }
    // blue-6 is a DIP of blue-web (v4) and blue-web6 (v6), checked on their own
    // schedules: wait for both.
    lab.wait_for("count(nvlb_dip_up == 0) >= 2", 20);
    let down = lab.query("nvlb_dip_up == 0");
    let dips: BTreeSet<String> = down
        .iter()
        .map(|s| s["metric"]["dip"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        dips,
        BTreeSet::from(["10.0.0.6:80".to_string(), "[fd00:0:0:1::6]:80".to_string()]),
        "{down:?}"
    );
    assert_eq!(
        lab.would_fire(),
        BTreeSet::from(["NvlbDipDown".to_string()]),
        "only the DIP alert with one DIP down"
    );
    let healthy = lab.query("nvlb_pool_healthy_dips{vip=\"blue-web\"}");
    assert_eq!(healthy.len(), 1, "{healthy:?}");
    assert_eq!(healthy[0]["value"][1], "3", "{healthy:?}");
}

#[test]
fn lab_prometheus_sees_every_panel_and_alerts_right() {
    if common::skip_without_netns() {
        return;
    }
    if common::skip_without_program("prometheus", "tests/install.sh installs it") {
        return;
    }
    let started = Instant::now();
    let lab = Lab {
        prefix: format!("mtr{}-", std::process::id() % 100_000),
    };
    let out = nvlb(&[
        "lab",
        "--prefix",
        &lab.prefix,
        "--keep",
        "--prometheus",
        "--requests",
        "40",
        "--bulk-bytes",
        "200000",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nvlb lab: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6/6 targets up"), "{stdout}");

    // Keep traffic going on every VIP while Prometheus scrapes (rates need it).
    let targets = curl_lines(&stdout);
    assert!(targets.len() >= 7, "curl lines: {targets:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (ns, url) in &targets {
                    let _ = Command::new("ip")
                        .args(["netns", "exec", ns, "curl", "-s", "-o", "/dev/null"])
                        .args(["--max-time", "2", url])
                        .output();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_secs(20));

    // Every panel of every dashboard has data, for two sets of variable values.
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 30, "{} panel queries", exprs.len());
    let mut empty = Vec::new();
    for (tenant, vip) in [("blue", ".*"), ("red", "red-web")] {
        for (file, title, expr) in &exprs {
            let q = substitute(expr, tenant, vip);
            assert!(
                !q.contains('$'),
                "unsubstituted variable in {file}/{title}: {q}"
            );
            if lab.query(&q).is_empty() {
                empty.push(format!("{file} / {title} ({tenant}, {vip}): {q}"));
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
    assert!(
        lab.query("nvlb_no_such_metric").is_empty(),
        "the emptiness check can fail"
    );
    // Traffic really shows: the VIPs carried packets in both directions.
    let moving = lab.query("sum by (direction) (rate(nvlb_vip_packets_total[15s])) > 0");
    assert_eq!(moving.len(), 2, "{moving:?}");

    // Alert rules: all loaded and healthy; nothing is broken, so none would fire.
    let rules = lab.alert_rules();
    let names: BTreeSet<&str> = rules.iter().map(|r| r.0.as_str()).collect();
    for want in [
        "NvlbPoolNoHealthyDip",
        "NvlbDipDown",
        "NvlbDropRateHigh",
        "NvlbFlowTableNearlyFull",
        "NvlbNatPortsExhausted",
        "NvlbReloadFailed",
        "NvlbScrapeFailed",
    ] {
        assert!(names.contains(want), "{want} not loaded: {names:?}");
    }
    for (name, _, health) in &rules {
        assert_eq!(health, "ok", "{name}");
    }
    assert_eq!(lab.would_fire(), BTreeSet::new(), "alerts in a healthy lab");
    assert_eq!(
        lab.active_alerts(),
        BTreeSet::new(),
        "pending/firing alerts"
    );

    // The pictures, from this run's data.
    let dir = match std::env::var_os("NVLB_DOCS_PNG") {
        Some(_) => PathBuf::from(ROOT).join("docs"),
        None => std::env::temp_dir().join(format!("{}png", lab.prefix)),
    };
    render(
        &lab,
        "nvlb-overview.json",
        &dir.join("metrics-overview.png"),
        &[],
    );
    render(
        &lab,
        "nvlb-tenant.json",
        &dir.join("metrics-tenant.png"),
        &["tenant=blue", "vip=.*"],
    );
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();

    dip_kill_case(&lab);

    // Kill the LB: its target goes down and the scrape alert's expression says so.
    let pids = common::run("ip", &["netns", "pids", &format!("{}lb", lab.prefix)]);
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        common::must("kill", &["-TERM", pid]);
    }
    let down = lab.wait_for("up{job=\"nvlb\"} == 0", 15);
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(
        lab.would_fire(),
        BTreeSet::from(["NvlbScrapeFailed".to_string()]),
        "only the scrape alert with the LB gone"
    );
    drop(lab);
    eprintln!("took {:.0} s", started.elapsed().as_secs_f64());
}
