//! Command-line interface: one module per subcommand.

mod check;
mod ctl;
#[path = "gen.rs"]
mod gen_cmd;
mod host;
mod lab;
mod manual;
mod replay;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nvlb::hostsim::VmSpec;
use nvlb::policy::ConfigError;

/// The crate version and the git revision it was built from (build.rs), e.g.
/// `0.1.0 (10ebc39)`; "unknown" outside a git checkout.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("NVLB_GIT_REVISION"),
    ")"
);

/// An NVGRE-aware, multi-tenant L4 load balancer.
#[derive(Parser, Debug)]
#[command(name = "nvlb", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a policy file and print a summary of tenants, subnets and VIP pools.
    Check {
        /// The TOML policy file (see lb-config/example.toml).
        file: PathBuf,
        /// Print the validated policy as JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Run frames from a pcap through the engine as the LB would receive them and
    /// write what it emits to another pcap, printing one verdict per input frame.
    Replay {
        /// The TOML policy file.
        #[arg(long)]
        config: PathBuf,
        /// Input pcap (Ethernet link type).
        input: PathBuf,
        /// Output pcap: the frames the LB sends (forwarded and replies), in order.
        output: PathBuf,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the load balancer on real interfaces until SIGINT or SIGTERM.
    ///
    /// Opens AF_PACKET sockets on both interfaces (one per worker, spread by
    /// PACKET_FANOUT), answers ARP/ND for the LB's addresses and VIPs itself, and on a
    /// stop signal prints the final counters on stdout. The interfaces should carry no
    /// IP addresses of the LB's: the kernel must not answer for them.
    #[command(after_help = "Exit status:\n  0  stopped by SIGINT/SIGTERM\n  \
        1  bad config, missing interface, missing privileges (needs CAP_NET_RAW), \
        or a worker failed\n  2  usage error")]
    Run {
        /// The TOML policy file.
        #[arg(long)]
        config: PathBuf,
        /// The Internet-side interface (plain IP).
        #[arg(long, value_name = "IFNAME")]
        external: String,
        /// The PA-network interface (NVGRE); may be the same as --external.
        #[arg(long, value_name = "IFNAME")]
        provider: String,
        /// Worker threads, each with its own flow shard (1-64).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        workers: u16,
        /// How workers receive: `socket` (one recvmsg per frame), `ring` (a
        /// TPACKET_V3 ring per socket, a block of frames at a time) or `xdp` (nvlb's XDP
        /// program and an AF_XDP socket per port and queue, one worker per queue; the
        /// host keeps the traffic the LB does not own on the same ports).
        #[arg(long, value_enum, default_value_t = BackendArg::Socket)]
        backend: BackendArg,
        /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9181); off
        /// when not given.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// Where the management API listens (ADDRESS:PORT), or `off`.
        #[arg(long = "api", value_name = "ADDR", default_value = nvlb::control::api::DEFAULT_ADDR,
              value_parser = ctl::parse_api_addr)]
        api: ctl::ApiAddr,
        /// The API's tokens file ([[token]] name, scope, sha256; see docs/api.md).
        #[arg(long, value_name = "FILE")]
        api_tokens: Option<PathBuf>,
        /// Run as this `[[balancer.instance]]` of a scale-out group: its own PA and SNAT
        /// CAs, the shared pools (docs/scale-out.md).
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
    },
    /// Ask a running `nvlb run` to re-read its policy file (through its API, operator
    /// token); prints what changed, or every error with file:line (and the old policy
    /// keeps running).
    #[command(
        after_help = "Exit status:\n  0  reloaded\n  1  refused (errors printed) \
        or the API could not be reached\n  2  usage error"
    )]
    Reload {
        #[command(flatten)]
        conn: ctl::Conn,
    },
    /// The management API's client: list tenants, VIPs, pools, health and flows; add,
    /// remove, drain DIPs and change weights; lookup records and subnets (operator).
    #[command(
        after_help = "Exit status:\n  0  done\n  1  refused by the API (errors \
        printed), or the API could not be reached\n  2  usage error\n\
        Token: --token, --token-file FILE or $NVLB_TOKEN; address: --api or $NVLB_API."
    )]
    Ctl {
        #[command(flatten)]
        conn: ctl::Conn,
        #[command(subcommand)]
        cmd: ctl::Ctl,
    },
    /// Build the guide's datacenter (Figures 4 and 6) in network namespaces and test
    /// it as a user would.
    ///
    /// Internet client, router, LB (`nvlb run`), PA bridge, one `nvlb host` per
    /// Hyper-V host, one VM namespace per lookup-record MAC with a web server that
    /// answers with the VM's name. Then curl to every public VIP from the client and to
    /// every CA VIP from a VM of its VSID (many connections, v4 and v6), and one bulk
    /// transfer per VIP with its sha256 compared. Prints a table per VIP and the LB's
    /// counters. Everything is removed on exit, also on failure and Ctrl-C.
    #[command(
        after_help = "Exit status:\n  0  every request answered by the DIP its pool's \
        Maglev table picks\n  1  a request failed or reached another DIP, or the lab could \
        not be built\n  2  usage error\nNeeds root, iproute2 and curl (ethtool recommended)."
    )]
    Lab {
        /// The policy (default: the built-in lb-config/example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Leave the lab running and print how to use and remove it.
        #[arg(long, conflicts_with = "down")]
        keep: bool,
        /// Stop and remove a lab left by --keep (or by a crash), then exit.
        #[arg(long)]
        down: bool,
        /// Prefix of every namespace name (2-16 of a-z 0-9 -, ending in '-').
        #[arg(long, default_value = nvlb::lab::DEFAULT_PREFIX)]
        prefix: String,
        /// Requests (new connections) per VIP.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=5000))]
        requests: u32,
        /// Debugging the lab itself: start no host simulators.
        #[arg(long, hide = true)]
        without_hosts: bool,
        /// Run the first N hosts (host1..hostN) as Open vSwitch userspace bridges, a real
        /// NVGRE peer, instead of `nvlb host` (needs openvswitch-switch installed).
        #[arg(long, value_name = "N", default_value_t = 0)]
        ovs_hosts: usize,
        /// Set the PA network's MTU (the policy's balancer.provider.mtu and every PA
        /// link: LB, bridge ports, hosts); the client, router and VMs keep 1500.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1280..))]
        pa_mtu: Option<u16>,
        /// Also upload (HTTP PUT) the bulk file through every VIP; the DIP checks it.
        #[arg(long)]
        upload: bool,
        /// Capture the PA network (the bridge's port to the LB) with dumpcap into this pcap
        /// file while traffic runs.
        #[arg(long, value_name = "FILE")]
        capture: Option<PathBuf>,
        /// Size of the bulk download (and upload) per VIP.
        #[arg(long, default_value_t = nvlb::lab::BULK_BYTES as u64,
              value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        bulk_bytes: u64,
        /// Also run Prometheus (Debian's `prometheus`) on a management network, scraping
        /// the LB's and the host simulators' /metrics every second with the alert rules
        /// of dashboards/; the report adds what it saw. With --keep it keeps running.
        #[arg(long)]
        prometheus: bool,
        /// Scale-out: N (2-16) LB instances of one policy behind a router with ECMP and
        /// BIRD (BGP), each announcing the VIPs and the gateway PA while it is healthy
        /// (docs/scale-out.md; needs bird2).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(2..=16))]
        instances: Option<u8>,
        /// The LB's receive backend (`nvlb run --backend`). Default: the environment
        /// variable NVLB_LAB_BACKEND (socket, ring or xdp; how tests/run.sh runs the lab
        /// tests once per backend), else socket. Not with --instances.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
    },
    /// The lab's web server (run inside a VM namespace by `nvlb lab`).
    #[command(name = "lab-serve", hide = true)]
    LabServe {
        #[arg(long)]
        name: String,
        #[arg(long, required = true)]
        port: Vec<u16>,
        #[arg(long)]
        bulk: PathBuf,
    },
    /// Simulate one Hyper-V host of the lab until SIGINT or SIGTERM.
    ///
    /// Decapsulates NVGRE addressed to the host's PA into its VMs' veths (after
    /// checking VSID, outer source, inner MAC and CA against the lookup records),
    /// answers the VMs' ARP and Neighbor Solicitations from policy (the gateway and any
    /// address no VM holds resolve to the subnet's lb_mac), and encapsulates what the
    /// VMs send toward the destination VM's host or the LB. The interfaces should
    /// carry no IP addresses: the simulator owns the PA in userspace. SIGHUP re-reads
    /// the policy and --vm-file (a bad one is refused, the old one keeps serving): VMs
    /// whose records moved away are no longer served, VMs moved here are attached as
    /// soon as their interface is in the namespace.
    #[command(after_help = "Exit status:\n  0  stopped by SIGINT/SIGTERM\n  \
        1  bad config, unknown host name, a --vm that the lookup records do not place \
        on this host, missing interface, missing privileges (needs CAP_NET_RAW)\n  \
        2  usage error")]
    Host {
        /// The TOML policy file.
        #[arg(long)]
        config: PathBuf,
        /// This host's name in the policy ([[host]] name).
        #[arg(long)]
        name: String,
        /// The PA-network interface (NVGRE).
        #[arg(long, value_name = "IFNAME")]
        pa: String,
        /// A VM behind this host: its VSID, its MAC (as in its lookup records) and the
        /// host-side interface of its veth. Repeat for each VM.
        #[arg(long = "vm", value_name = "VSID,MAC,IFNAME")]
        vms: Vec<VmSpec>,
        /// Serve this host's counters as Prometheus metrics on http://ADDR/metrics;
        /// off when not given.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        /// A file of more VMs, one VSID,MAC,IFNAME a line (# comments), re-read with the
        /// policy on SIGHUP: how VMs live-migrate in and out (docs/operations.md).
        #[arg(long, value_name = "FILE")]
        vm_file: Option<PathBuf>,
    },
    /// Print a shell completion script on stdout.
    ///
    /// bash: `nvlb completions bash > /etc/bash_completion.d/nvlb`;
    /// zsh: `nvlb completions zsh > "${fpath[1]}/_nvlb"`;
    /// fish: `nvlb completions fish > ~/.config/fish/completions/nvlb.fish`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page nvlb(1) on stdout, or write one page per subcommand.
    ///
    /// `nvlb man | man -l -` reads it; `nvlb man --dir /usr/local/share/man/man1`
    /// installs nvlb.1 and nvlb-SUBCOMMAND.1.
    Man {
        /// Write nvlb.1 and nvlb-SUBCOMMAND.1 into this existing directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Load-test a load balancer: NVGRE/plain traffic to the policy's VIPs, with
    /// `--reflect` the other end (every Hyper-V host at once); see docs/gen.md.
    #[command(
        after_help = "Exit status:\n  0  run completed (no wrong-tenant delivery, \
        thresholds met)\n  1  bad config, missing interface or privileges, a wrong-tenant \
        delivery, or --max-loss/--max-deviation exceeded\n  2  usage error"
    )]
    Gen(Box<gen_cmd::Args>),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum BackendArg {
    Socket,
    Ring,
    Xdp,
}

impl From<BackendArg> for nvlb::dataplane::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Socket => nvlb::dataplane::Backend::Socket,
            BackendArg::Ring => nvlb::dataplane::Backend::Ring,
            BackendArg::Xdp => nvlb::dataplane::Backend::Xdp,
        }
    }
}

/// Prints every finding of a refused policy on stderr, one per line. A file that could
/// not be read at all has no position (line 0): it is printed as `file: message`, since
/// `file:0:0:` would send an editor nowhere.
fn print_config_error(err: &ConfigError) {
    for d in &err.errors {
        if d.line == 0 {
            eprintln!("{}: {}", d.file, d.message);
        } else {
            eprintln!("{d}");
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { file, json } => check::run(&file, json),
        Command::Replay {
            config,
            input,
            output,
            json,
        } => replay::run(&config, &input, &output, json),
        Command::Lab {
            config,
            keep,
            down,
            prefix,
            requests,
            without_hosts,
            ovs_hosts,
            pa_mtu,
            upload,
            capture,
            bulk_bytes,
            prometheus,
            instances,
            backend,
        } => lab::run(lab::Args {
            config,
            keep,
            down,
            prefix,
            requests: requests as usize,
            without_hosts,
            ovs_hosts,
            pa_mtu,
            upload,
            capture,
            bulk_bytes: usize::try_from(bulk_bytes).unwrap_or(nvlb::lab::BULK_BYTES),
            prometheus,
            instances: instances.map(usize::from),
            backend: backend.map(Into::into),
        }),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man { dir } => manual::man(dir.as_deref()),
        Command::Reload { conn } => ctl::reload(&conn),
        Command::Ctl { conn, cmd } => ctl::run(&conn, cmd),
        Command::LabServe { name, port, bulk } => lab::serve(&name, &port, &bulk),
        Command::Host {
            config,
            name,
            pa,
            vms,
            metrics,
            vm_file,
        } => host::run(&config, &name, &pa, &vms, vm_file.as_deref(), metrics),
        Command::Gen(args) => gen_cmd::run(*args),
        Command::Run {
            config,
            external,
            provider,
            workers,
            backend,
            api,
            api_tokens,
            metrics,
            instance,
        } => run::run_as(
            instance.as_deref(),
            &config,
            ctl::ApiOptions {
                addr: api.0,
                tokens: api_tokens,
            },
            nvlb::dataplane::Options {
                backend: backend.into(),
                external,
                provider,
                workers: usize::from(workers),
            },
            metrics,
        ),
    }
}
