//! `nvlb lab`: the guide's Figure 4 + Figure 6 datacenter in network namespaces, built
//! from a policy, run with the real `nvlb run` and one `nvlb host` per Hyper-V host,
//! and exercised as a user would: curl from the Internet client to every public VIP,
//! curl from a tier-1 VM to every CA VIP, a bulk download through each, checked answers.
//!
//! Modules: `topology` derives what to build (pure), `netns` builds it, `procs` runs the
//! LB, hosts and servers, `servers` is the VMs' HTTP responder, `traffic` drives curl,
//! `report` judges and prints, `teardown` removes everything; `upload` (PUT through each
//! VIP), `capture` (tshark on the PA bridge), `monitor` (Prometheus on a management
//! network) and `overrides` (policy changes such as the PA MTU) serve the optional flags. The lab only ever sends to
//! addresses inside namespaces it made itself, and it never leaves a namespace behind
//! unless asked to (`--keep`): errors, panics and Ctrl-C all tear down.

pub mod bgp;
pub mod capture;
pub mod cmd;
pub mod internet;
pub mod monitor;
pub mod netns;
pub mod overrides;
pub mod ovs;
pub mod procs;
pub mod report;
pub mod scaleout;
pub mod servers;
pub mod teardown;
pub mod topology;
pub mod traffic;
pub mod upload;

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::policy::Snapshot;

use procs::Daemon;
use report::PoolResult;
use teardown::Guard;
use topology::Topology;

/// The policy the lab runs when none is given: the guide's example.
pub const EXAMPLE_POLICY: &str = include_str!("../../../../lb-config/example.toml");
/// Workers of the lab's LB; its veths have this many queues each, one per worker
/// (what `--backend xdp` needs).
pub const LB_WORKERS: usize = 2;
/// The default namespace prefix.
pub const DEFAULT_PREFIX: &str = "nvlab-";
/// Size of the bulk file each path carries (10 MiB, more than 10 MB).
pub const BULK_BYTES: usize = 10 * 1024 * 1024;

/// Why a lab run could not be carried out (as opposed to traffic that failed, which
/// is a finding in the report).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run `{command}`: {cause}")]
    Spawn { command: String, cause: io::Error },
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },
    #[error("{what} exited ({status}) before it was ready; its stderr:\n{stderr}")]
    Exited {
        what: String,
        status: String,
        stderr: String,
    },
    #[error("{what} was not ready within {secs} s; its stderr so far:\n{stderr}")]
    NotReady {
        what: String,
        secs: u64,
        stderr: String,
    },
    #[error(
        "this nvlb has no `nvlb host` (the Hyper-V host simulator), so no VM can be \
         reached: build a version that has it"
    )]
    NoHostSimulator,
    #[error(
        "`{0}` is not installed: `apt-get install {pkg}` (or `bash tests/install.sh`, which \
         installs everything the lab and the tests use)",
        pkg = package_of(.0)
    )]
    MissingTool(&'static str),
    #[error(
        "invalid prefix {0:?}: 2-16 characters of a-z, 0-9 and '-', starting with a \
         letter and ending with '-'"
    )]
    Prefix(String),
    #[error("interrupted")]
    Interrupted,
    #[error("Open vSwitch host: {0}")]
    Ovs(String),
    #[error("scale-out lab: {0}")]
    ScaleOut(String),
}

/// A stop was requested (Ctrl-C, SIGTERM): the data plane's process-wide flag.
pub fn interrupted() -> bool {
    crate::dataplane::shutdown::requested()
}

/// How to run the lab.
#[derive(Clone, Debug)]
pub struct Options {
    pub prefix: String,
    /// Requests per VIP.
    pub requests: usize,
    /// Leave everything running.
    pub keep: bool,
    /// The nvlb binary run as LB, host simulator and web server.
    pub nvlb: PathBuf,
    /// The policy text, as written for the LB and the hosts.
    pub policy_text: String,
    /// Build without host simulators (debugging the lab itself: VIPs cannot answer).
    pub without_hosts: bool,
    pub bulk_bytes: usize,
    /// The first this many hosts run Open vSwitch instead of `nvlb host` (see [`ovs`]).
    pub ovs_hosts: usize,
    /// Also PUT the bulk file through every VIP (the client's large segments).
    pub upload: bool,
    /// Capture the PA bridge into this pcap file while the traffic runs.
    pub capture: Option<PathBuf>,
    /// Run Prometheus on a management network scraping the LB and the simulated hosts
    /// (see [`monitor`]).
    pub prometheus: bool,
    /// How the LB receives (`nvlb run --backend`).
    pub backend: crate::dataplane::Backend,
}

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    /// The tables and counters.
    pub report: String,
    /// Empty when every request was answered by the DIP that its pool's Maglev table
    /// picks for it (`report::problems`).
    pub problems: Vec<String>,
    /// With `--keep`: how to use and remove the running lab.
    pub kept: Option<String>,
}

/// The directory for the run's config copy, bulk file and logs.
pub fn run_dir(prefix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{prefix}lab"))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The Debian package that brings a tool the lab runs, for the error that names it.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "ip" => "iproute2",
        "curl" => "curl",
        "sha256sum" | "timeout" => "coreutils",
        "dumpcap" => "tshark",
        "prometheus" => "prometheus",
        "ethtool" => "ethtool",
        "ovs-vsctl" | "ovsdb-server" | "ovs-vswitchd" | "ovsdb-tool" => "openvswitch-switch",
        "bird" | "birdc" => "bird2",
        _ => "the package that provides it",
    }
}

/// Whether the given nvlb binary has the `host` subcommand.
fn has_host_simulator(nvlb: &Path) -> Result<bool, Error> {
    let exe = nvlb.display().to_string();
    let out = cmd::output(&exe, &["host", "--help"])?;
    Ok(out.status.success())
}

/// Builds, runs, exercises and (unless `keep`) removes the lab.
pub fn run(
    policy: &Snapshot,
    opts: &Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Outcome, Error> {
    if !topology::valid_prefix(&opts.prefix) {
        return Err(Error::Prefix(opts.prefix.clone()));
    }
    for tool in ["ip", "curl", "sha256sum"] {
        if !cmd::available(tool) {
            return Err(Error::MissingTool(tool));
        }
    }
    if opts.capture.is_some() && !cmd::available(capture::PROGRAM) {
        return Err(Error::MissingTool(capture::PROGRAM));
    }
    if opts.prometheus && !cmd::available(monitor::PROGRAM) {
        return Err(Error::MissingTool(monitor::PROGRAM));
    }
    let ethtool = cmd::available("ethtool");
    if !ethtool {
        progress(
            "warning: ethtool is not installed: checksum offload stays on, the LB and \
             the hosts must complete partial checksums",
        );
    }
    if !opts.without_hosts && !has_host_simulator(&opts.nvlb)? {
        return Err(Error::NoHostSimulator);
    }
    if opts.ovs_hosts > 0 {
        if let Some(tool) = ovs::missing_tool() {
            return Err(Error::Ovs(format!(
                "`{tool}` is not installed (apt install openvswitch-switch)"
            )));
        }
        if opts.ovs_hosts > policy.hosts().len() {
            return Err(Error::Ovs(format!(
                "--ovs-hosts {} but the policy declares {} host(s)",
                opts.ovs_hosts,
                policy.hosts().len()
            )));
        }
    }
    let old = teardown::remove_prefix(&opts.prefix)?;
    if !old.is_empty() {
        progress(&format!("removed {} leftover namespace(s)", old.len()));
    }
    let dir = run_dir(&opts.prefix);
    teardown::remove_run_dir(&dir);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut guard = Guard::new(&opts.prefix, &dir);
    let config = dir.join("config.toml");
    std::fs::write(&config, &opts.policy_text).map_err(io_err(&config))?;
    let bulk = dir.join("bulk.bin");
    servers::write_bulk_file(&bulk, opts.bulk_bytes)?;
    let bulk_sha = traffic::sha256(&bulk)?;

    let t = Topology::from_snapshot(policy, &opts.prefix);
    let started = Instant::now();
    progress(&format!(
        "building {} namespaces: client, router, LB, PA bridge, {} hosts, {} VMs",
        t.namespaces().len(),
        t.hosts.len(),
        t.vms.len()
    ));
    netns::build(&t, ethtool)?;
    internet::build(policy, &t)?;
    let monitor = opts
        .prometheus
        .then(|| monitor::Plan::new(&t, &policy.balancer().name, opts.ovs_hosts));
    if let Some(plan) = &monitor {
        monitor::build(&t, plan)?;
    }
    check_interrupt()?;
    progress(&format!(
        "built in {:.1} s; starting servers, LB and hosts",
        started.elapsed().as_secs_f64()
    ));
    let ovs_hosts = start_processes(
        policy,
        &t,
        opts,
        &config,
        &bulk,
        &dir,
        monitor.as_ref(),
        &mut guard,
    )?;
    if let Some(plan) = &monitor {
        progress(&format!(
            "starting Prometheus in {} on {}",
            plan.netns,
            monitor::LISTEN
        ));
        guard.daemons.push(monitor::start(plan, &dir)?);
    }
    if let Some(file) = &opts.capture {
        progress(&format!(
            "capturing {} into {}",
            capture::PORT,
            capture::absolute(file).display()
        ));
        guard.daemons.push(capture::start(&t, file, &dir)?);
    }
    let upload_digest = if opts.upload {
        Some(upload::digest_file(&bulk)?)
    } else {
        None
    };

    let mut results = Vec::new();
    let mut uploads = Vec::new();
    for p in &t.pools {
        check_interrupt()?;
        let Some(source) = p.source else {
            results.push(PoolResult {
                plan: p.clone(),
                source: String::new(),
                requests: None,
                bulk: None,
            });
            continue;
        };
        let ns = t.source_netns(source).to_string();
        progress(&format!(
            "{}: {} requests to {} from {ns}, then {} bytes bulk",
            p.name,
            opts.requests,
            p.base_url(),
            opts.bulk_bytes
        ));
        let url = p.base_url();
        let req = traffic::requests(&ns, &url, opts.requests, 5, &dir, &p.name)?;
        // The upload before the download: no DIP has sent a large segment yet, so none
        // has learned a smaller path MTU to offer as MSS, and the client's full-size
        // segments must meet the LB's packet-too-big (with a lowered PA MTU).
        if let Some(d) = &upload_digest {
            check_interrupt()?;
            let u = upload::put(&ns, &url, &bulk, 120, &dir, &p.name, d)?;
            uploads.push((p.clone(), u));
        }
        check_interrupt()?;
        let b = traffic::bulk(&ns, &url, 120, &dir, &p.name, &bulk_sha)?;
        results.push(PoolResult {
            plan: p.clone(),
            source: ns,
            requests: Some(req),
            bulk: Some(b),
        });
    }
    let mut text = report::render(&t, &results);
    text.push_str(&upload::render(&uploads));
    let mut problems = report::problems(policy, &t, &results);
    problems.extend(upload::problems(&t, &uploads));
    if let Some(plan) = &monitor {
        let (summary, found) = monitor::summary(plan)?;
        text.push_str(&summary);
        problems.extend(found);
    }

    if opts.keep {
        for d in guard.disarm() {
            d.detach();
        }
        text.push_str(&format!(
            "LB counters: printed to {} when it stops (nvlb lab --down)\n",
            dir.join("lb.out").display()
        ));
        if let Some(file) = &opts.capture {
            text.push_str(&format!(
                "Capture: {} keeps writing {} until nvlb lab --down\n",
                capture::PROGRAM,
                capture::absolute(file).display()
            ));
        }
        let mut kept = keep_instructions(&t, &dir);
        if let Some(plan) = &monitor {
            kept.push_str(&format!(
                "Prometheus: ip netns exec {} curl 'http://{}/api/v1/query?query=up'
",
                plan.netns,
                monitor::LISTEN
            ));
        }
        return Ok(Outcome {
            report: text,
            problems,
            kept: Some(kept),
        });
    }
    let mut daemons = guard.disarm();
    // The capture stops first, so that it is complete before the LB goes away.
    if let (Some(file), Some(i)) = (
        &opts.capture,
        daemons.iter().position(|d| d.label == capture::LABEL),
    ) {
        text.push_str(&capture::stop(daemons.remove(i), file));
    }
    let ovs_counters: String = ovs_hosts.iter().map(ovs::Running::counters).collect();
    text.push_str(&stop_and_collect(daemons));
    if !ovs_counters.is_empty() {
        text.push_str("Open vSwitch hosts (packets matched by their OpenFlow rules):\n");
        text.push_str(&ovs_counters);
    }
    let removed = teardown::remove_prefix(&opts.prefix)?;
    teardown::remove_run_dir(&dir);
    progress(&format!("removed {} namespaces", removed.len()));
    Ok(Outcome {
        report: text,
        problems,
        kept: None,
    })
}

fn check_interrupt() -> Result<(), Error> {
    if interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Servers first (so DIPs answer from the first SYN), then the LB, then the hosts (the
/// first `opts.ovs_hosts` of them as Open vSwitch, returned). With `monitor`, the LB
/// and the simulators serve metrics on the management network.
#[allow(clippy::too_many_arguments)]
fn start_processes(
    policy: &Snapshot,
    t: &Topology,
    opts: &Options,
    config: &Path,
    bulk: &Path,
    dir: &Path,
    monitor: Option<&monitor::Plan>,
    guard: &mut Guard,
) -> Result<Vec<ovs::Running>, Error> {
    let config = config.display().to_string();
    for vm in &t.vms {
        let mut args = vec!["lab-serve".to_string(), "--name".into(), vm.name.clone()];
        for p in &vm.ports {
            args.push("--port".into());
            args.push(p.to_string());
        }
        args.push("--bulk".into());
        args.push(bulk.display().to_string());
        let d = Daemon::spawn(
            &format!("vm-{}", vm.name),
            &vm.netns,
            &opts.nvlb,
            &args,
            dir,
        )?;
        guard.daemons.push(d);
    }
    for d in guard.daemons.iter_mut() {
        d.wait_ready(servers::READY, Duration::from_secs(10))?;
    }
    let tokens = api_tokens(dir)?.display().to_string();
    let lb_args: Vec<String> = [
        "run",
        "--config",
        &config,
        "--external",
        "lb-ext",
        "--provider",
        "lb-pa",
        "--workers",
        &LB_WORKERS.to_string(),
        "--backend",
        opts.backend.name(),
        "--api-tokens",
        &tokens,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut lb_args = lb_args;
    if let Some(plan) = monitor {
        lb_args.extend(["--metrics".to_string(), plan.lb_listen()]);
    }
    let mut lb = Daemon::spawn("lb", &t.lb, &opts.nvlb, &lb_args, dir)?;
    let ready = lb.wait_ready("nvlb: ready", Duration::from_secs(10));
    guard.daemons.push(lb);
    ready?;
    if opts.without_hosts {
        return Ok(Vec::new());
    }
    let mut ovs_hosts = Vec::new();
    for i in 0..opts.ovs_hosts.min(t.hosts.len()) {
        let plan = ovs::plan(policy, t, i)?;
        ovs_hosts.push(ovs::start(&plan, dir, guard)?);
    }
    let first_host = guard.daemons.len();
    let simulated = t.hosts.get(ovs_hosts.len()..).unwrap_or(&[]);
    for (i, h) in t.hosts.iter().enumerate().skip(ovs_hosts.len()) {
        let mut args: Vec<String> = [
            "host", "--config", &config, "--name", &h.name, "--pa", "pa0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // The VMs go in a file that the host re-reads on SIGHUP, so that a VM can be
        // live-migrated to another host (docs/operations.md).
        let mut list = format!(
            "# VMs of {} (VSID,MAC,IFNAME); SIGHUP it after a change\n",
            h.name
        );
        for vm in t.vms_on(i) {
            list.push_str(&format!("{},{},{}\n", vm.vsid.get(), vm.mac, vm.host_if));
        }
        let file = vm_file(dir, &h.name);
        std::fs::write(&file, list).map_err(io_err(&file))?;
        args.push("--vm-file".into());
        args.push(file.display().to_string());
        if let Some(listen) = monitor.and_then(|m| m.host_listen(&h.name)) {
            args.extend(["--metrics".to_string(), listen]);
        }
        let d = Daemon::spawn(&h.name, &h.netns, &opts.nvlb, &args, dir)?;
        guard.daemons.push(d);
    }
    for (d, h) in guard.daemons.iter_mut().skip(first_host).zip(simulated) {
        d.wait_ready(
            &format!("nvlb: host {} ready", h.name),
            Duration::from_secs(10),
        )?;
    }
    Ok(ovs_hosts)
}

/// SIGTERM to everyone; the LB's final counters in full, the hosts' one line each.
fn stop_and_collect(daemons: Vec<Daemon>) -> String {
    let stopped = procs::stop_all(daemons, Duration::from_secs(3));
    let mut lb = String::new();
    let mut hosts = String::from("Host counters (nvlb host, after SIGTERM):\n");
    for (label, status, out) in stopped {
        if label.starts_with("vm-") || label.starts_with("ovs") || label == monitor::LABEL {
            continue;
        }
        let how = match status {
            Some(st) => st.to_string(),
            None => "killed after 3 s".to_string(),
        };
        if label == "lb" {
            let title = format!("LB counters (nvlb run, after SIGTERM, {how}):");
            lb = report::counters(&title, &out);
        } else {
            hosts.push_str(&report::counters_line(&format!("{label} ({how})"), &out));
        }
    }
    lb + &hosts
}

/// An operator token for the LB's management API (on its namespace's loopback): the
/// token in `operator.token`, its digest in `api-tokens.toml`, both in the run dir.
fn api_tokens(dir: &Path) -> Result<PathBuf, Error> {
    use crate::control::api::auth::{hash_token, hex};
    use std::io::Read as _;
    let mut raw = [0u8; 24];
    let urandom = Path::new("/dev/urandom");
    std::fs::File::open(urandom)
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(io_err(urandom))?;
    let token = hex(&raw);
    let token_file = dir.join(API_TOKEN_FILE);
    std::fs::write(&token_file, format!("{token}\n")).map_err(io_err(&token_file))?;
    let tokens = dir.join("api-tokens.toml");
    let text = format!(
        "[[token]]\nname = \"lab\"\nscope = \"operator\"\nsha256 = \"{}\"\n",
        hex(&hash_token(&token))
    );
    std::fs::write(&tokens, text).map_err(io_err(&tokens))?;
    Ok(tokens)
}

/// The VM file of host simulator `host` in run dir `dir` (`nvlb host --vm-file`): one
/// `VSID,MAC,IFNAME` per VM, re-read on SIGHUP.
pub fn vm_file(dir: &Path, host: &str) -> PathBuf {
    dir.join(format!("{host}.vms"))
}

/// The file of the run dir holding the lab's operator token for `nvlb ctl`.
pub const API_TOKEN_FILE: &str = "operator.token";

fn keep_instructions(t: &Topology, dir: &Path) -> String {
    let mut s = format!(
        "The lab is running ({} namespaces, prefix {}). For example:\n",
        t.namespaces().len(),
        t.prefix
    );
    for p in &t.pools {
        if let Some(src) = p.source {
            s.push_str(&format!(
                "  ip netns exec {} curl {}/\n",
                t.source_netns(src),
                p.base_url()
            ));
        }
    }
    s.push_str(&format!(
        "  ip netns exec {} nvlb ctl --token-file {} pools   # the LB's management API\n",
        t.lb,
        dir.join(API_TOKEN_FILE).display()
    ));
    s.push_str(&format!(
        "  ip netns exec {} bash        # a shell in the client (or any namespace below)\n\
         Namespaces: {}\n\
         Logs: {}\n\
         Tear down: nvlb lab --down --prefix {}\n",
        t.client,
        t.namespaces().join(" "),
        dir.display(),
        t.prefix
    ));
    s
}

/// `--down`: stops and removes a lab with this prefix; the LB's and the hosts'
/// counters, if a kept lab left its logs.
pub fn down(prefix: &str) -> Result<(Vec<String>, Option<String>), Error> {
    if !topology::valid_prefix(prefix) {
        return Err(Error::Prefix(prefix.to_string()));
    }
    let dir = run_dir(prefix);
    capture::finish_kept(&dir);
    let removed = teardown::remove_prefix(prefix)?;
    let lb = std::fs::read_to_string(dir.join("lb.out"))
        .ok()
        .filter(|s| !s.is_empty())
        .map(|out| report::counters("LB counters (nvlb run, after SIGTERM):", &out))
        .map(|lb| lb + &kept_host_counters(&dir));
    teardown::remove_run_dir(&dir);
    Ok((removed, lb))
}

/// The host simulators' counters a kept lab left in its run directory (`<host>.out`),
/// one line per host.
fn kept_host_counters(dir: &Path) -> String {
    let mut outs: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let label = name.strip_suffix(".out")?.to_string();
                    let other = label == "lb"
                        || label == capture::LABEL
                        || label == monitor::LABEL
                        || label.starts_with("vm-");
                    (!other).then(|| (label, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    outs.sort();
    let mut s = String::from("Host counters (nvlb host, after SIGTERM):\n");
    for (label, path) in outs {
        let out = std::fs::read_to_string(&path).unwrap_or_default();
        s.push_str(&report::counters_line(&label, &out));
    }
    s
}

#[cfg(test)]
mod missing_tool_tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        for (tool, pkg) in [
            ("ip", "iproute2"),
            (capture::PROGRAM, "tshark"),
            (monitor::PROGRAM, "prometheus"),
        ] {
            let text = Error::MissingTool(tool).to_string();
            assert!(text.contains(&format!("apt-get install {pkg}")), "{text}");
            assert!(text.starts_with(&format!("`{tool}`")), "{text}");
        }
    }
}
