//! `nvlb run`: the load balancer on real interfaces until SIGINT/SIGTERM.
//!
//! Loads the policy as `nvlb check` does, opens every socket before printing `ready`
//! (so a bad interface or missing privilege exits 1 at once, naming it), runs the
//! workers, and on a stop signal prints the summed counters on stdout and exits 0.
//! SIGHUP re-reads the file: a valid one is swapped in (printed as `nvlb: reloaded`),
//! an invalid one is refused with its errors and the running policy stays. A health
//! thread probes the DIPs of pools that declare `health` and logs each state change
//! (`nvlb: health: POOL DIP down (N x CAUSE)`). The management API (`--api`) and, with
//! `--metrics ADDR`, the Prometheus endpoint (docs/metrics.md) are bound before `ready`,
//! so that a bad or busy address exits 1 at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvlb::control::api::{FlowCounts, FlowStats};
use nvlb::control::{ChangeError, Control, Reloads};
use nvlb::dataplane::{self, Options, Report, shutdown};
use nvlb::engine::DropReason;
use nvlb::health::{Checker, HealthStatus};
use nvlb::metrics::{ControlStats, LbMetrics};
use nvlb::policy::{CompileOptions, DipKey};

/// How often the main thread looks for signals, ends drains and brings the metrics'
/// view of the control plane up to date.
const TICK: Duration = Duration::from_millis(200);

/// `nvlb run --instance NAME`: every policy this process loads is that instance's view.
pub fn run_as(
    instance: Option<&str>,
    config: &Path,
    api: super::ctl::ApiOptions,
    opts: Options,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let mut compile = CompileOptions::default();
    if let Some(name) = instance {
        compile = compile.for_instance(name);
    }
    run(config, compile, api, opts, metrics)
}

pub fn run(
    config: &Path,
    compile: CompileOptions,
    api: super::ctl::ApiOptions,
    opts: Options,
    metrics: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let control = match Control::open_with(config, compile) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    for w in control.declared().warnings() {
        eprintln!("warning: {w}");
    }
    // Workers always publish their counters (every 100 ms, into their own slot): the
    // API's flow counts come from there too, whether or not /metrics is served.
    let stats = Arc::new(ControlStats::new());
    stats.set_generation(control.generation());
    stats.reload_result(true, nvlb::metrics::control::unix_now());
    let lb = Arc::new(LbMetrics::new(
        control.policy(),
        opts.workers,
        stats.clone(),
    ));
    if let Some(addr) = metrics {
        let page = lb.clone();
        match nvlb::metrics::http::serve(addr, Arc::new(move || page.render())) {
            Ok(server) => eprintln!("nvlb: metrics on http://{}/metrics", server.local_addr()),
            Err(e) => {
                eprintln!("nvlb: metrics endpoint {addr}: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let flows: Arc<dyn FlowStats> = Arc::new(WorkerFlows(lb.clone()));
    if let Err(e) = super::ctl::start_api(&control, &api, Some(flows), stats.clone()) {
        eprintln!("nvlb: {e}");
        return Ok(ExitCode::from(1));
    }
    shutdown::install()?;
    let started = Instant::now();
    // Health probes' replies go from the workers to the health thread (Verdict::Local).
    let (replies_tx, replies) = dataplane::local_queue();
    let running =
        dataplane::start_with(control.cell(), &opts, Some(replies_tx), |i| lb.publisher(i))?;
    let health = match Checker::start(control.clone(), &opts.provider, replies) {
        Ok(h) => h,
        Err(e) => {
            shutdown::request();
            let _ = running.wait();
            return Err(e.into());
        }
    };
    for w in running.warnings() {
        eprintln!("nvlb: warning: {w}");
    }
    if let Some(modes) = running.modes() {
        eprintln!("nvlb: xdp: {modes}");
    }
    eprintln!(
        "nvlb: ready: {} worker(s), {:?} backend, external {}, provider {}",
        opts.workers, opts.backend, opts.external, opts.provider
    );
    let mut observer = Observer::new(&control);
    while !shutdown::requested() {
        std::thread::sleep(TICK);
        if shutdown::take_hangup() {
            reload(&control);
        }
        if let Err(e) = control.expire_drains(Instant::now()) {
            eprintln!("nvlb: ending a drain failed: {e}");
        }
        observer.tick(&control, &lb, &stats, &health.status());
    }
    let (report, panicked) = running.wait();
    if !health.wait() {
        eprintln!("nvlb: the health thread panicked");
    }
    print!("{}", render(&report, started.elapsed().as_secs_f64()));
    if panicked > 0 {
        eprintln!("nvlb: {panicked} worker(s) panicked");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A reload requested by SIGHUP: the outcome goes to stderr, for the operator's log.
pub(crate) fn reload(control: &Control) {
    match control.reload(Instant::now()) {
        Ok(a) => eprintln!(
            "nvlb: reloaded {}: generation {}, {} DIP(s) added, {} removed, {} draining",
            control.path().display(),
            a.generation,
            a.added,
            a.removed,
            a.draining
        ),
        Err(ChangeError::Config(e)) => {
            eprintln!("nvlb: reload refused, the running policy stays:");
            super::print_config_error(&e);
        }
        Err(e) => eprintln!("nvlb: reload refused, the running policy stays: {e}"),
    }
}

/// Active flows for the API, from the workers' published counters.
struct WorkerFlows(Arc<LbMetrics>);

impl FlowStats for WorkerFlows {
    fn flows(&self) -> Option<FlowCounts> {
        let policy = self.0.policy();
        let stats = self.0.stats(&policy);
        if !stats.iter().any(|w| w.published) {
            return None;
        }
        let mut counts = FlowCounts {
            total: stats.iter().map(|w| w.flows).sum(),
            ..FlowCounts::default()
        };
        for w in &stats {
            for (t, n) in policy.tenants().iter().zip(&w.tenant_flows) {
                *counts.per_tenant.entry(t.name.clone()).or_default() += n;
            }
            for (p, dips) in policy.pools().iter().zip(&w.dip_flows) {
                *counts.per_pool.entry(p.name.clone()).or_default() += dips.iter().sum::<u64>();
            }
        }
        Some(counts)
    }
}

/// Brings what `/metrics` shows of the control plane up to date: the policy its labels
/// come from, the generation, reload outcomes, health states and probe latencies.
struct Observer {
    generation: u64,
    reloads: Reloads,
    probes: HashMap<(String, DipKey), u64>,
}

impl Observer {
    fn new(control: &Control) -> Observer {
        Observer {
            generation: control.generation(),
            reloads: control.reloads(),
            probes: HashMap::new(),
        }
    }

    fn tick(
        &mut self,
        control: &Control,
        lb: &LbMetrics,
        stats: &ControlStats,
        health: &HealthStatus,
    ) {
        let generation = control.generation();
        if generation != self.generation {
            self.generation = generation;
            lb.set_policy(control.policy());
            stats.set_generation(generation);
        }
        let reloads = control.reloads();
        if reloads != self.reloads {
            if let Some((ok, at)) = reloads.last {
                stats.reload_result(ok, at);
            }
            self.reloads = reloads;
        }
        let policy = lb.policy();
        for d in health.snapshot() {
            let tenant = policy
                .pool_named(&d.pool)
                .and_then(|(_, p)| policy.tenant(p.tenant))
                .map(|t| t.name.clone())
                .unwrap_or_default();
            let label = SocketAddr::new(d.dip.ca, d.dip.port).to_string();
            stats.set_dip_health(&d.pool, &tenant, d.dip.vsid.get(), &label, d.up);
            let seen = self.probes.entry((d.pool.clone(), d.dip)).or_insert(0);
            if d.probes > *seen {
                *seen = d.probes;
                if d.last_result.as_deref() == Some("ok")
                    && let Some(latency) = d.last_latency
                {
                    stats.observe_probe(&d.pool, &label, latency.as_secs_f64());
                }
            }
        }
    }
}

/// The final counters: totals, each non-zero drop reason, then socket and queue events.
fn render(r: &Report, secs: f64) -> String {
    let e = &r.engine;
    let mut s = format!("nvlb: stopped after {secs:.3} s\n");
    for (name, v) in [
        ("packets_in", e.packets_in),
        ("bytes_in", e.bytes_in),
        ("forwarded", e.forwarded),
        ("replied", e.replied),
        ("bytes_out", e.bytes_out),
        ("handoffs", e.handoffs),
        ("new_flows", e.new_flows),
        ("idle_resets_sent", e.idle_resets_sent),
        ("idle_resets_unsent", e.idle_resets_unsent),
        ("dropped", e.dropped_total()),
    ] {
        s.push_str(&format!("{name} {v}\n"));
    }
    for reason in DropReason::ALL {
        let v = e.dropped(*reason);
        if v > 0 {
            s.push_str(&format!("drop.{} {v}\n", reason.name()));
        }
    }
    for (name, v) in r.io.fields() {
        s.push_str(&format!("io.{name} {v}\n"));
    }
    s
}
