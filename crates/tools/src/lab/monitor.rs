//! `nvlb lab --prometheus`: the real Prometheus server (Debian's `prometheus`) scraping
//! the lab's LB and host simulators, with the alert rules of `dashboards/`.
//!
//! Layout: a management namespace `<prefix>mon` holds a bridge `br-mon`
//! (10.254.0.1/24) and Prometheus, listening on its loopback (127.0.0.1:9090, reached
//! with `ip netns exec <prefix>mon`). Each monitored namespace (the LB, every simulated
//! host) gets a veth `mon0` on that bridge with its own address; `nvlb run` and `nvlb
//! host` listen for scrapes there only. The management network is apart from the
//! Internet side and the PA network, so scrapes never cross the data plane, and the
//! interfaces the LB and the hosts own in userspace stay without addresses. It must
//! never put an address on the LB's or a host's data interfaces, nor listen outside
//! the lab's namespaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Error;
use super::cmd::{exec_in, ip, ip_in};
use super::procs::Daemon;
use super::topology::Topology;

/// The program run (Debian's package `prometheus`).
pub const PROGRAM: &str = "prometheus";
/// Label of its daemon (its logs are `prometheus.out` / `.err` in the run directory).
pub const LABEL: &str = "prometheus";
/// Where Prometheus listens inside the management namespace.
pub const LISTEN: &str = "127.0.0.1:9090";
/// Port of the LB's and the hosts' metrics endpoints on the management network.
pub const LB_PORT: u16 = 9181;
pub const HOST_PORT: u16 = 9182;
/// The alert rules, as shipped in dashboards/.
pub const RULES: &str = include_str!("../../../../dashboards/alerts/nvlb-alerts.yml");

/// The management network's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    pub netns: String,
    pub lb: Ipv4Addr,
    /// Per simulated host (topology order): its namespace, name and address.
    pub hosts: Vec<(String, String, Ipv4Addr)>,
    pub balancer: String,
}

impl Plan {
    /// The management namespace and addresses for `t`; the first `skip` hosts are not
    /// simulators (Open vSwitch) and are not scraped.
    pub fn new(t: &Topology, balancer: &str, skip: usize) -> Plan {
        Plan {
            netns: format!("{}mon", t.prefix),
            lb: Ipv4Addr::new(10, 254, 0, 2),
            hosts: t
                .hosts
                .iter()
                .enumerate()
                .skip(skip)
                .take(200)
                .map(|(i, h)| {
                    let last = u8::try_from(10 + i).unwrap_or(254);
                    (
                        h.netns.clone(),
                        h.name.clone(),
                        Ipv4Addr::new(10, 254, 0, last),
                    )
                })
                .collect(),
            balancer: balancer.to_string(),
        }
    }

    /// `--metrics` of `nvlb run` in the LB namespace.
    pub fn lb_listen(&self) -> String {
        format!("{}:{LB_PORT}", self.lb)
    }

    /// `--metrics` of the simulator of host `name`, if it is scraped.
    pub fn host_listen(&self, name: &str) -> Option<String> {
        self.hosts
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, a)| format!("{a}:{HOST_PORT}"))
    }

    /// The Prometheus configuration: a 1 s scrape and rule interval (the lab is short).
    pub fn config(&self, rules: &Path) -> String {
        let mut s = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: nvlb\n    static_configs:\n      \
             - targets: ['{}']\n        labels: {{instance: '{}'}}\n  \
             - job_name: nvlb-host\n    static_configs:\n",
            rules.display(),
            self.lb_listen(),
            self.balancer
        );
        for (_, name, addr) in &self.hosts {
            s.push_str(&format!(
                "      - targets: ['{addr}:{HOST_PORT}']\n        labels: {{instance: '{name}'}}\n"
            ));
        }
        s
    }
}

/// Builds the management namespace, its bridge and a `mon0` in the LB's and each
/// scraped host's namespace.
pub fn build(t: &Topology, plan: &Plan) -> Result<(), Error> {
    ip(&["netns", "add", &plan.netns])?;
    ip_in(&plan.netns, &["link", "set", "lo", "up"])?;
    ip_in(&plan.netns, &["link", "add", "br-mon", "type", "bridge"])?;
    ip_in(
        &plan.netns,
        &["addr", "add", "10.254.0.1/24", "dev", "br-mon"],
    )?;
    ip_in(&plan.netns, &["link", "set", "br-mon", "up"])?;
    let mut members = vec![(t.lb.clone(), "m-lb".to_string(), plan.lb)];
    for (i, (ns, _, addr)) in plan.hosts.iter().enumerate() {
        members.push((ns.clone(), format!("m-h{i}"), *addr));
    }
    for (ns, port, addr) in members {
        ip_in(
            &plan.netns,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "mon0", "netns", &ns,
            ],
        )?;
        ip_in(&plan.netns, &["link", "set", &port, "master", "br-mon"])?;
        ip_in(&plan.netns, &["link", "set", &port, "up"])?;
        let cidr = format!("{addr}/24");
        ip_in(&ns, &["addr", "add", &cidr, "dev", "mon0"])?;
        ip_in(&ns, &["link", "set", "mon0", "up"])?;
    }
    Ok(())
}

/// Writes the configuration and the rules into `dir`, starts Prometheus in the
/// management namespace and waits until it serves.
pub fn start(plan: &Plan, nvlb_dir: &Path) -> Result<Daemon, Error> {
    let rules = nvlb_dir.join("nvlb-alerts.yml");
    write(&rules, RULES)?;
    let config = nvlb_dir.join("prometheus.yml");
    write(&config, &plan.config(&rules))?;
    let data = nvlb_dir.join("prometheus-data");
    let args: Vec<String> = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", data.display()),
        format!("--web.listen-address={LISTEN}"),
        "--storage.tsdb.retention.time=1d".into(),
    ];
    let program = PathBuf::from(which(PROGRAM).ok_or(Error::MissingTool(PROGRAM))?);
    let mut d = Daemon::spawn(LABEL, &plan.netns, &program, &args, nvlb_dir)?;
    d.wait_ready(
        "Server is ready to receive web requests",
        Duration::from_secs(30),
    )?;
    Ok(d)
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })
}

fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// One instant query against the lab's Prometheus: the JSON answer.
pub fn query(plan: &Plan, expr: &str) -> Result<serde_json::Value, Error> {
    let url = format!("http://{LISTEN}/api/v1/query");
    let q = format!("query={expr}");
    let out = exec_in(
        &plan.netns,
        "curl",
        &["-sS", "--max-time", "5", "--data-urlencode", &q, &url],
    )?;
    serde_json::from_str(&out).map_err(|e| Error::Command {
        command: format!("curl {url} {q}"),
        status: "unreadable answer".into(),
        stderr: e.to_string(),
    })
}

/// The samples of a query's vector answer: (labels, value).
pub fn samples(answer: &serde_json::Value) -> Vec<(serde_json::Value, f64)> {
    answer["data"]["result"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let v = r["value"][1]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(f64::NAN);
                    (r["metric"].clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until every target is up (two scrapes after the traffic at least); then
/// the report's lines: targets and packets per VIP as Prometheus saw them.
pub fn summary(plan: &Plan) -> Result<(String, Vec<String>), Error> {
    let want = 1 + plan.hosts.len();
    let start = Instant::now();
    let mut up = 0;
    while start.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(2500));
        up = samples(&query(plan, "up == 1")?).len();
        if up == want {
            break;
        }
    }
    let mut text = format!(
        "Prometheus ({} in {}): {up}/{want} targets up\n",
        LISTEN, plan.netns
    );
    let mut problems = Vec::new();
    if up < want {
        problems.push(format!("Prometheus: only {up} of {want} targets up"));
    }
    let per_vip = query(
        plan,
        "sum by (vip) (nvlb_vip_packets_total{direction=\"forward\"})",
    )?;
    let mut rows = samples(&per_vip);
    rows.sort_by(|a, b| a.0["vip"].as_str().cmp(&b.0["vip"].as_str()));
    for (m, v) in rows {
        text.push_str(&format!(
            "  {:<16} {v} packets client -> DIP\n",
            m["vip"].as_str().unwrap_or("?")
        ));
    }
    Ok((text, problems))
}
