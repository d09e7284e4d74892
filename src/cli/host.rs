//! `nvlb host`: one Hyper-V host of the lab (a host simulator) until SIGINT/SIGTERM.
//!
//! Checks the policy, the host name and every `--vm` against the lookup records
//! before opening any socket, opens all sockets before printing `ready` (so a bad
//! interface or missing privilege exits 1 at once, naming it), and on a stop signal
//! prints its counters on stdout and exits 0. `--metrics ADDR` serves them live on
//! `/metrics` as well.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use nvlb::dataplane::shutdown;
use nvlb::hostsim::{self, HostView, Sockets, VmSpec};
use nvlb::policy::Snapshot;

pub fn run(
    config: &Path,
    name: &str,
    pa: &str,
    vms: &[VmSpec],
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
    let view = match HostView::new(policy, name, pa, vms) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("nvlb: {}: {e}", config.display());
            return Ok(ExitCode::from(1));
        }
    };
    shutdown::install()?;
    let sockets = Sockets::open(&view, pa)?;
    let published = match metrics {
        Some(addr) => {
            let m = Arc::new(nvlb::metrics::HostMetrics::new(name));
            let page = m.clone();
            let server = nvlb::metrics::http::serve(addr, Arc::new(move || page.render()))
                .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))?;
            eprintln!("nvlb: metrics on http://{}/metrics", server.local_addr());
            Some(m)
        }
        None => None,
    };
    let started = Instant::now();
    eprintln!("nvlb: host {name} ready");
    let counters = hostsim::run::run_published(&view, &sockets, published.as_deref());
    print!(
        "nvlb: host {name} stopped after {:.3} s\n{}",
        started.elapsed().as_secs_f64(),
        counters.render()
    );
    Ok(ExitCode::SUCCESS)
}
