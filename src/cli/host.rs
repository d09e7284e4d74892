//! `nvlb host`: one Hyper-V host of the lab (a host simulator) until SIGINT/SIGTERM.
//!
//! Checks the policy, the host name and every `--vm` (and `--vm-file` line) against the
//! lookup records before opening any socket, opens all sockets before printing `ready`
//! (so a bad interface or missing privilege exits 1 at once, naming it), and on a stop
//! signal prints its counters on stdout and exits 0.
//!
//! SIGHUP re-reads the policy file and the VM file and validates both fully; only then
//! is the new view swapped in (`nvlb: host NAME reloaded ...` on stderr). A refused
//! reload prints every finding (file:line) and keeps the old view serving. After a
//! reload a VM whose records name another host is set aside (live-migrated away), and a
//! VM placed here whose interface is not in this namespace yet is attached as soon as
//! it appears (`nvlb: host NAME attached IFNAME ...`). `--metrics ADDR` serves the
//! counters live on `/metrics`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use nvlb::dataplane::shutdown;
use nvlb::hostsim::{self, Event, HostView, Sockets, VmSpec};

/// What the simulator was started with: re-read on SIGHUP (but for `--vm`, fixed).
struct Inputs<'a> {
    config: &'a Path,
    name: &'a str,
    pa: &'a str,
    vms: &'a [VmSpec],
    vm_file: Option<&'a Path>,
}

impl Inputs<'_> {
    /// The policy and every VM, or why not (already printed on stderr).
    fn read(&self, reload: bool) -> Option<HostView> {
        let policy = match nvlb::control::policy_file::read(self.config, &Default::default()) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                super::print_config_error(&e);
                return None;
            }
        };
        for w in policy.warnings() {
            eprintln!("warning: {w}");
        }
        let mut specs = self.vms.to_vec();
        if let Some(file) = self.vm_file {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("nvlb: {}: cannot read: {e}", file.display());
                    return None;
                }
            };
            match hostsim::parse_vm_file(&text, &file.display().to_string()) {
                Ok(more) => specs.extend(more),
                Err(e) => {
                    eprintln!("{e}");
                    return None;
                }
            }
        }
        let view = if reload {
            HostView::reload(policy, self.name, self.pa, &specs)
        } else {
            HostView::new(policy, self.name, self.pa, &specs)
        };
        match view {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("nvlb: {}: {e}", self.config.display());
                None
            }
        }
    }
}

pub fn run(
    config: &Path,
    name: &str,
    pa: &str,
    vms: &[VmSpec],
    vm_file: Option<&Path>,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let inputs = Inputs {
        config,
        name,
        pa,
        vms,
        vm_file,
    };
    let Some(view) = inputs.read(false) else {
        return Ok(ExitCode::from(1));
    };
    shutdown::install()?;
    let sockets = Sockets::open(&view, pa)?;
    let published = match metrics {
        Some(addr) => {
            let m = Arc::new(nvlb::hostsim::metrics::HostMetrics::new(name));
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
    let mut reload = |_: &HostView| {
        let next = inputs.read(true);
        if next.is_none() {
            eprintln!("nvlb: host {name}: reload refused, the running policy stays");
        }
        next
    };
    let mut log = |event: Event| match event {
        Event::Reloaded { view, waiting } => {
            let mut line = format!(
                "nvlb: host {name} reloaded {}: {} VM(s) here",
                config.display(),
                view.vms().len()
            );
            let names: Vec<&str> = waiting
                .iter()
                .filter_map(|&i| view.vm(i).map(|vm| vm.ifname.as_str()))
                .collect();
            if !names.is_empty() {
                line.push_str(&format!(
                    " ({} waiting for their interface: {})",
                    names.len(),
                    names.join(", ")
                ));
            }
            for a in view.away() {
                line.push_str(&format!(
                    "; {} ({},{}) away, now on {}",
                    a.spec.ifname,
                    a.spec.vsid,
                    a.spec.mac,
                    a.now_on.as_deref().unwrap_or("no host")
                ));
            }
            eprintln!("{line}");
        }
        Event::Attached { view, vm } => {
            if let Some(vm) = view.vm(vm) {
                eprintln!(
                    "nvlb: host {name} attached {} ({},{})",
                    vm.ifname, vm.vsid, vm.mac
                );
            }
        }
    };
    let counters = hostsim::run::serve(view, sockets, &mut reload, &mut log, published.as_deref());
    print!(
        "nvlb: host {name} stopped after {:.3} s\n{}",
        started.elapsed().as_secs_f64(),
        counters.render()
    );
    Ok(ExitCode::SUCCESS)
}
