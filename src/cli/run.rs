//! `nvlb run`: the load balancer on real interfaces until SIGINT/SIGTERM.
//!
//! Loads the policy as `nvlb check` does, opens every socket before printing `ready`
//! (so a bad interface or missing privilege exits 1 at once, naming it), runs the
//! workers, and on a stop signal prints the summed counters on stdout and exits 0.
//! SIGHUP re-reads the file: a valid one is swapped in (printed as `nvlb: reloaded`),
//! an invalid one is refused with its errors and the running policy stays. A health
//! thread probes the DIPs of pools that declare `health` and logs each state change
//! (`nvlb: health: POOL DIP down (N x CAUSE)`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nvlb::control::{ChangeError, Control};
use nvlb::dataplane::{self, Options, Report, shutdown};
use nvlb::engine::DropReason;
use nvlb::health::Checker;

/// How often the main thread looks for signals and ends drains.
const TICK: Duration = Duration::from_millis(200);

pub fn run(config: &Path, api: super::ctl::ApiOptions, opts: Options) -> anyhow::Result<ExitCode> {
    let control = match Control::open(config) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    for w in control.declared().warnings() {
        eprintln!("warning: {w}");
    }
    if let Err(e) = super::ctl::start_api(&control, &api) {
        eprintln!("nvlb: {e}");
        return Ok(ExitCode::from(1));
    }
    shutdown::install()?;
    let started = Instant::now();
    // Health probes' replies go from the workers to the health thread (Verdict::Local).
    let (replies_tx, replies) = dataplane::local_queue();
    let running = dataplane::start_with(control.cell(), &opts, Some(replies_tx))?;
    let health = match Checker::start(control.clone(), &opts.provider, replies) {
        Ok(h) => h,
        Err(e) => {
            shutdown::request();
            let _ = running.wait();
            return Err(e.into());
        }
    };
    eprintln!(
        "nvlb: ready: {} worker(s), {:?} backend, external {}, provider {}",
        opts.workers, opts.backend, opts.external, opts.provider
    );
    while !shutdown::requested() {
        std::thread::sleep(TICK);
        if shutdown::take_hangup() {
            reload(&control);
        }
        if let Err(e) = control.expire_drains(Instant::now()) {
            eprintln!("nvlb: ending a drain failed: {e}");
        }
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
