//! `nvlb lab`: builds the guide's datacenter in network namespaces, runs the LB and the
//! host simulators in it, drives traffic as a user would and prints what happened
//! (see `nvlb::lab`). Also the hidden `nvlb lab-serve`, the web server it runs in VMs.
//!
//! Exit status: 0 every request answered by the DIP that its pool's Maglev table picks
//! for it; 1 otherwise, or when the lab could not be built (always torn down first).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nvlb::dataplane::shutdown;
use nvlb::lab::{self, Options};
use nvlb::policy::Snapshot;

pub struct Args {
    pub config: Option<PathBuf>,
    pub keep: bool,
    pub down: bool,
    pub prefix: String,
    pub requests: usize,
    pub without_hosts: bool,
    pub ovs_hosts: usize,
    pub pa_mtu: Option<u16>,
    pub upload: bool,
    pub capture: Option<PathBuf>,
    pub bulk_bytes: usize,
    pub prometheus: bool,
    /// `--instances N`: the scale-out lab (`nvlb::lab::scaleout`).
    pub instances: Option<usize>,
    /// The LB's receive backend, when given on the command line.
    pub backend: Option<nvlb::dataplane::Backend>,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("nvlb lab: needs root (it creates network namespaces and veths)");
        return Ok(ExitCode::from(1));
    }
    if a.down {
        let (removed, lb) = lab::down(&a.prefix)?;
        if let Some(lb) = lb {
            print!("{lb}");
        }
        eprintln!(
            "nvlb lab: removed {} namespace(s) with prefix {}",
            removed.len(),
            a.prefix
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (text, origin) = match &a.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            lab::EXAMPLE_POLICY.to_string(),
            "lb-config/example.toml (built in)".to_string(),
        ),
    };
    let text = match a.pa_mtu {
        Some(mtu) => lab::overrides::with_provider_mtu(&text, mtu)?,
        None => text,
    };
    let policy = match Snapshot::from_toml(&text, &origin) {
        Ok(p) => p,
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    // Ctrl-C and SIGTERM set the stop flag; the lab notices it, tears down and exits.
    shutdown::install()?;
    if let Some(n) = a.instances {
        if a.ovs_hosts > 0
            || a.upload
            || a.capture.is_some()
            || a.prometheus
            || a.without_hosts
            || a.backend.is_some()
        {
            eprintln!(
                "nvlb lab: --instances does not combine with --ovs-hosts, --upload, --capture, \
                 --prometheus, --without-hosts or --backend"
            );
            return Ok(ExitCode::from(2));
        }
        let opts = lab::scaleout::Options {
            prefix: a.prefix,
            instances: n,
            nvlb: std::env::current_exe()?,
            base_policy: text,
            bulk_bytes: a.bulk_bytes,
        };
        let outcome = lab::scaleout::run(&opts, a.requests, a.keep, &mut |m| {
            eprintln!("nvlb lab: {m}")
        })?;
        return Ok(finish(&outcome));
    }
    let opts = Options {
        prefix: a.prefix,
        requests: a.requests,
        keep: a.keep,
        nvlb: std::env::current_exe()?,
        policy_text: text,
        without_hosts: a.without_hosts,
        ovs_hosts: a.ovs_hosts,
        bulk_bytes: a.bulk_bytes,
        upload: a.upload,
        capture: a.capture,
        prometheus: a.prometheus,
        backend: match a.backend {
            Some(b) => b,
            None => match backend_from_env() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("nvlb lab: {e}");
                    return Ok(ExitCode::from(2));
                }
            },
        },
    };
    let outcome = lab::run(&policy, &opts, &mut |m| eprintln!("nvlb lab: {m}"))?;
    Ok(finish(&outcome))
}

/// The backend NVLB_LAB_BACKEND names (socket when unset): the lab tests run once per
/// backend without each test passing it (tests/run.sh). The scale-out lab ignores it.
fn backend_from_env() -> Result<nvlb::dataplane::Backend, String> {
    use nvlb::dataplane::Backend;
    match std::env::var("NVLB_LAB_BACKEND").as_deref() {
        Err(_) | Ok("") => Ok(Backend::Socket),
        Ok(v) => [Backend::Socket, Backend::Ring, Backend::Xdp]
            .into_iter()
            .find(|b| b.name() == v)
            .ok_or_else(|| format!("NVLB_LAB_BACKEND={v:?}: expected socket, ring or xdp")),
    }
}

/// Prints a lab's report and says whether everything was answered.
fn finish(outcome: &lab::Outcome) -> ExitCode {
    print!("{}", outcome.report);
    if let Some(k) = &outcome.kept {
        print!("\n{k}");
    }
    if outcome.problems.is_empty() {
        println!("OK: every request answered by the DIP that its pool's Maglev table picks");
        ExitCode::SUCCESS
    } else {
        println!("FAILED:");
        for p in &outcome.problems {
            println!("  {p}");
        }
        ExitCode::from(1)
    }
}

/// `nvlb lab-serve`: the VMs' web server.
pub fn serve(name: &str, ports: &[u16], bulk: &Path) -> anyhow::Result<ExitCode> {
    lab::servers::serve(name, ports, bulk)?;
    Ok(ExitCode::SUCCESS)
}
