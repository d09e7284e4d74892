//! `nvlb run`: the load balancer on real interfaces until SIGINT/SIGTERM.
//!
//! Loads the policy as `nvlb check` does, opens every socket before printing `ready`
//! (so a bad interface or missing privilege exits 1 at once, naming it), runs the
//! workers, and on a stop signal prints the summed counters on stdout and exits 0.
//! With `--metrics ADDR` it also serves them live on `/metrics` (docs/metrics.md),
//! bound before `ready` so that a bad address exits 1 at once.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use nvlb::dataplane::{self, Options, Report, shutdown};
use nvlb::engine::DropReason;
use nvlb::metrics::{ControlStats, LbMetrics};
use nvlb::policy::Snapshot;

pub fn run(
    config: &Path,
    opts: Options,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let policy = match Snapshot::from_file(config) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    for w in policy.warnings() {
        eprintln!("warning: {w}");
    }
    shutdown::install()?;
    let lb_metrics = match metrics {
        Some(addr) => Some(serve_metrics(addr, &policy, opts.workers)?),
        None => None,
    };
    let started = Instant::now();
    let running = dataplane::start_observed(policy, &opts, lb_metrics.as_deref())?;
    eprintln!(
        "nvlb: ready: {} worker(s), {:?} backend, external {}, provider {}",
        opts.workers, opts.backend, opts.external, opts.provider
    );
    let (report, panicked) = running.wait();
    print!("{}", render(&report, started.elapsed().as_secs_f64()));
    if panicked > 0 {
        eprintln!("nvlb: {panicked} worker(s) panicked");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `/metrics` on `addr`: the policy loaded at start is generation 1, loaded
/// successfully.
fn serve_metrics(
    addr: std::net::SocketAddr,
    policy: &Arc<Snapshot>,
    workers: usize,
) -> anyhow::Result<Arc<LbMetrics>> {
    let control = Arc::new(ControlStats::new());
    control.set_generation(1);
    control.reload_result(true, nvlb::metrics::control::unix_now());
    let m = Arc::new(LbMetrics::new(policy.clone(), workers, control));
    let page = m.clone();
    let server = nvlb::metrics::http::serve(addr, Arc::new(move || page.render()))
        .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))?;
    eprintln!("nvlb: metrics on http://{}/metrics", server.local_addr());
    Ok(m)
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
