//! `nvlb gen` and `nvlb gen --reflect`: flags to options, policy loading, the run,
//! then the summary (table or JSON), the plot and the exit status.
//!
//! Every flag is checked before any socket opens, so a bad value or a missing
//! interface exits at once with a message that names it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nvlb::dataplane::shutdown;
use nvlb::loadgen::{self, Options, Plan, Reflector, Selection};
use nvlb::policy::{Protocol, Snapshot};

/// Set when SIGINT/SIGTERM arrived (copied from the data plane's flag by a watcher).
static STOP: AtomicBool = AtomicBool::new(false);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The TOML policy file the LB runs with (VIPs, DIPs, weights, hosts).
    #[arg(long)]
    pub config: PathBuf,
    /// Interface toward the LB's external port: public VIPs are sent here as plain IP
    /// (from the gateway MAC), and their answers come back here.
    #[arg(long, value_name = "IFNAME")]
    pub external: Option<String>,
    /// Interface on the PA network. Generator: CA VIPs are sent here as NVGRE from a
    /// client VM's host. Reflector: the LB's NVGRE toward DIPs is answered here.
    #[arg(long, value_name = "IFNAME")]
    pub provider: Option<String>,
    /// Play every Hyper-V host: answer the LB's NVGRE toward DIPs as the DIP would.
    #[arg(long, conflicts_with_all = ["external", "vip", "rate", "count", "flows", "new_flows", "sizes", "plot", "write_pcap", "family", "protocol"])]
    pub reflect: bool,
    /// With --reflect: also echo plain-IP probes back (endpoints swapped, no policy
    /// check), for a baseline where the kernel forwards instead of the LB.
    #[arg(long, requires = "reflect")]
    pub echo_plain: bool,
    /// Load only this VIP pool (by name); repeat for several. Default: every pool the
    /// given interfaces reach.
    #[arg(long, value_name = "NAME")]
    pub vip: Vec<String>,
    /// Only IPv4 or only IPv6 VIPs.
    #[arg(long, value_parser = ["4", "6"])]
    pub family: Option<String>,
    /// Only TCP or only UDP VIPs.
    #[arg(long, value_parser = ["tcp", "udp"])]
    pub protocol: Option<String>,
    /// Packets per second over all threads (default: as fast as possible).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Stop after this many packets.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this long ("10s", "500ms", "2m"). Without --count or --duration the
    /// run lasts until SIGINT/SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Concurrent flows, dealt round-robin over the selected VIPs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    pub flows: u32,
    /// Flows replaced per second by new ones (fresh source port, SYN first).
    #[arg(long, default_value_t = 0)]
    pub new_flows: u64,
    /// Frame sizes in bytes (Ethernet, no FCS; for CA VIPs the inner frame), used in
    /// turn: "128" or "64,512,1400". Raised to what carries headers and the probe.
    #[arg(long, default_value = "128", value_parser = parse_sizes)]
    pub sizes: Sizes,
    /// Sender threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Frames per sendmmsg call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub batch: u16,
    /// How long to wait for answers after the last frame.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub drain: Duration,
    /// Print the summary as JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Draw pps over time and the per-DIP distribution into this PNG (needs
    /// python3-matplotlib).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Write the frames that would be sent (--count, default 100) to this pcap and
    /// exit, without any interface.
    #[arg(long, value_name = "FILE.pcap")]
    pub write_pcap: Option<PathBuf>,
    /// Exit 1 when the loss exceeds this many percent.
    #[arg(long, value_name = "PERCENT")]
    pub max_loss: Option<f64>,
    /// Exit 1 when a DIP's share of its pool's flows deviates from its weight share by
    /// more than this many percentage points.
    #[arg(long, value_name = "PP")]
    pub max_deviation: Option<f64>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// SYN flood: every packet is the SYN of a new flow from a random (spoofed) client
    /// address (198.18.0.0/15, 2001:2::/48) and port, at public VIPs only.
    #[arg(long, conflicts_with_all = ["reflect", "provider", "new_flows"])]
    pub syn_flood: bool,
}

/// Frame sizes from `--sizes`.
#[derive(Clone, Debug)]
pub struct Sizes(pub Vec<usize>);

fn parse_sizes(s: &str) -> Result<Sizes, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let n: usize = part
            .trim()
            .parse()
            .map_err(|_| format!("{part:?} is not a size in bytes"))?;
        if !(60..=9000).contains(&n) {
            return Err(format!("{n} is outside 60..=9000"));
        }
        v.push(n);
    }
    Ok(Sizes(v))
}

/// "<integer><unit>" with unit ms, s, m or h.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected <integer><unit>, unit ms, s, m or h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{s:?}: unit must be ms, s, m or h")),
    };
    Ok(d)
}

fn fail(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("nvlb gen: {msg}");
    Ok(ExitCode::from(1))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let policy = match nvlb::control::policy_file::read(&a.config, &Default::default()) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            super::print_config_error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    if a.reflect {
        return reflect(policy, &a);
    }
    let sel = Selection {
        vips: a.vip.clone(),
        v6: a.family.as_deref().map(|f| f == "6"),
        protocol: match a.protocol.as_deref() {
            Some("tcp") => Some(Protocol::Tcp),
            Some("udp") => Some(Protocol::Udp),
            _ => None,
        },
        ca_vips: a.provider.is_some() || a.write_pcap.is_some(),
        public_only: a.external.is_some() && a.provider.is_none() && a.write_pcap.is_none(),
    };
    let plan = match Plan::new(&policy, &sel, &a.sizes.0) {
        Ok(p) => Arc::new(p),
        Err(e) => return fail(e),
    };
    if let Some(path) = &a.write_pcap {
        return write_pcap(&plan, a.flows, a.count.unwrap_or(100), path);
    }
    if a.external.is_none() && a.provider.is_none() {
        return fail(
            "give --external IFNAME (public VIPs) and/or --provider IFNAME (CA VIPs), or --write-pcap FILE",
        );
    }
    let threads = a.threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = Options {
        external: a.external.clone(),
        provider: a.provider.clone(),
        rate: a.rate,
        count: a.count,
        duration: a.duration,
        flows: a.flows,
        new_flows: a.new_flows,
        threads,
        batch: usize::from(a.batch),
        drain: a.drain,
        progress: !a.quiet && !a.json,
        syn_flood: a.syn_flood,
    };
    watch_signals()?;
    let summary = match loadgen::run::run(Arc::clone(&policy), plan, &opts, &STOP) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    if let Some(png) = &a.plot
        && let Err(e) = loadgen::plot::plot(&summary, png)
    {
        return fail(e);
    }
    let mut bad = Vec::new();
    if summary.wrong_tenant > 0 {
        bad.push(format!("{} wrong-tenant deliveries", summary.wrong_tenant));
    }
    if summary.mismatched > 0 {
        bad.push(format!(
            "{} answers that do not match their flow",
            summary.mismatched
        ));
    }
    if let Some(m) = a.max_loss
        && summary.loss_percent > m
    {
        bad.push(format!("loss {:.3} % > {m} %", summary.loss_percent));
    }
    if let Some(m) = a.max_deviation
        && summary.max_deviation_pp > m
    {
        bad.push(format!(
            "distribution deviates {:.2} pp > {m} pp",
            summary.max_deviation_pp
        ));
    }
    if bad.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        fail(bad.join("; "))
    }
}

/// Copies the data plane's stop flag (set by SIGINT/SIGTERM) into STOP.
fn watch_signals() -> anyhow::Result<()> {
    shutdown::install()?;
    std::thread::spawn(|| {
        loop {
            if shutdown::requested() {
                STOP.store(true, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Ok(())
}

fn write_pcap(plan: &Plan, flows: u32, count: u64, path: &Path) -> anyhow::Result<ExitCode> {
    let file = match std::fs::File::create(path) {
        Ok(f) => f,
        Err(e) => return fail(format!("{}: {e}", path.display())),
    };
    let mut w = nvlb::pcap::Writer::new(std::io::BufWriter::new(file), 65535)?;
    let frames = loadgen::run::frames(plan, flows, count);
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64 * 1000, f)?;
    }
    w.finish()?;
    eprintln!(
        "nvlb gen: wrote {} frames over {} VIP(s) to {}",
        frames.len(),
        plan.targets.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn reflect(policy: Arc<Snapshot>, a: &Args) -> anyhow::Result<ExitCode> {
    let Some(ifname) = &a.provider else {
        return fail("--reflect needs --provider IFNAME (the PA-side interface)");
    };
    let r = match Reflector::open(policy, ifname, a.echo_plain) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    watch_signals()?;
    eprintln!("nvlb: reflector ready");
    let report = match r.run(&STOP, a.duration) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(ExitCode::SUCCESS)
}
