//! Hyper-V hosts played by Open vSwitch instead of `nvlb host` (`nvlb lab --ovs-hosts
//! N`): a real NVGRE peer nobody here wrote, so that the LB's encapsulation is checked
//! against someone else's reading of RFC 7637.
//!
//! Each OVS host runs its own `ovsdb-server` and `ovs-vswitchd --disable-system` (the
//! userspace datapath) as plain processes inside the host's namespace, with every file
//! and socket in `<run dir>/ovs-<host>/`. Two netdev bridges:
//! - `br-pa` owns the PA veth `pa0`; its internal port carries the host's MAC and its
//!   IPv4 PA (/32, with host routes to the LB and the other hosts), which is what OVS's
//!   native tunnelling needs to terminate GRE. Peers' MACs are pinned with
//!   `tnl/neigh/set` (the policy knows them), so OVS never has to ARP.
//! - `br-int` holds the VM veths and one `type=gre` port (`key=flow`, `remote_ip=flow`).
//!   OpenFlow rules do Hyper-V's job: frames from a VM to its subnet's LB MAC get
//!   `tun_id = VSID << 8 | FlowID` (FlowID from OVS's `multipath` hash of the 5-tuple)
//!   and the LB's PA; frames to a VM of the same VSID on another host get that host's
//!   PA; tunnelled frames are delivered by (`tun_id & 0xffffff00`, inner dst MAC).
//!
//! OVS does not answer ARP/ND for a VSID the way Hyper-V does, so the VMs on OVS hosts
//! get static neighbour entries instead (gateway, CA VIPs, SNAT CAs -> the subnet's LB
//! MAC; other VMs of the VSID -> their MACs), all taken from the policy.
//!
//! It must never start OVS outside a host namespace of the lab, never use the system's
//! OVS database or sockets (everything is under the run dir), and never invent an
//! address or MAC the policy does not declare.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Error;
use super::cmd::{self, ip_in};
use super::procs::Daemon;
use super::teardown::Guard;
use super::topology::Topology;
use crate::policy::{MacAddr, Snapshot};

/// The programs an OVS host needs (Debian's openvswitch-switch).
pub const TOOLS: [&str; 6] = [
    "ovsdb-tool",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
];

/// Where Debian (and a source install) put the database schema.
const SCHEMAS: [&str; 2] = [
    "/usr/share/openvswitch/vswitch.ovsschema",
    "/usr/local/share/openvswitch/vswitch.ovsschema",
];

/// The GRE port on `br-int`.
pub const GRE_PORT: &str = "nvgre0";

/// Flow cookies, so that the counters can tell the rules apart in `dump-flows`.
const COOKIE_DROP: u64 = 0;
const COOKIE_ENCAP: u64 = 1;
const COOKIE_DECAP: u64 = 2;
const COOKIE_LOCAL: u64 = 3;

/// Mask of the VSID part of an NVGRE key (the low byte is the FlowID).
const VSID_MASK: u32 = 0xffff_ff00;

/// The first OVS tool that cannot be started, if any.
pub fn missing_tool() -> Option<&'static str> {
    TOOLS.into_iter().find(|t| !cmd::available(t))
}

/// A static neighbour entry for a VM on an OVS host.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Neighbour {
    pub netns: String,
    pub addr: IpAddr,
    pub mac: MacAddr,
}

/// Everything one OVS host is configured with, derived from the policy alone.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Plan {
    /// Index into [`Topology::hosts`].
    pub host: usize,
    pub name: String,
    pub netns: String,
    pub mac: MacAddr,
    /// The host's PA (the tunnel's local address).
    pub pa: Ipv4Addr,
    /// Length of the shortest prefix of `pa` that covers every peer: OVS routes a
    /// tunnel only through a bridge with an address on the peer's subnet, and the
    /// policy names PAs, not the PA network's prefix.
    pub pa_len: u8,
    /// Every other PA on the PA network with its MAC: the LB first, then the hosts.
    pub peers: Vec<(Ipv4Addr, MacAddr)>,
    /// The host ends of the VM veths (ports of `br-int`).
    pub vm_ports: Vec<String>,
    /// OpenFlow rules for `br-int`, one per line in `ovs-ofctl add-flows` syntax.
    pub flows: Vec<String>,
    pub neighbours: Vec<Neighbour>,
}

/// The NVGRE key of a VSID with FlowID 0, as OVS's 64-bit `tun_id` holds it.
fn key(vsid: u32) -> u32 {
    (vsid & 0x00ff_ffff) << 8
}

/// The OVS plan of host `host` of `t`. Needs IPv4 PAs on the host and the LB (this
/// lab's OVS hosts terminate GRE on IPv4 only; the host namespaces have IPv6 off).
pub fn plan(s: &Snapshot, t: &Topology, host: usize) -> Result<Plan, Error> {
    let node = t
        .hosts
        .get(host)
        .ok_or_else(|| Error::Ovs(format!("no host #{}", host + 1)))?;
    let phost = s
        .hosts()
        .get(host)
        .ok_or_else(|| Error::Ovs(format!("no host #{} in the policy", host + 1)))?;
    let pa = phost.pa_v4.ok_or_else(|| {
        Error::Ovs(format!(
            "{}: an OVS host needs an IPv4 PA (IPv6 outer headers are not set up)",
            node.name
        ))
    })?;
    let provider = &s.balancer().provider;
    let lb_pa = provider.address_v4().ok_or_else(|| {
        Error::Ovs("an OVS host needs the LB's provider port to have an IPv4 PA".into())
    })?;
    let mut peers = vec![(lb_pa, provider.mac)];
    for (i, h) in s.hosts().iter().enumerate() {
        if let (true, Some(p)) = (i != host, h.pa_v4) {
            peers.push((p, h.mac));
        }
    }
    let host_pa = |i: usize| s.hosts().get(i).and_then(|h| h.pa_v4);

    let mut flows = vec![format!("cookie={COOKIE_DROP},priority=0,actions=drop")];
    let mut neighbours = Vec::new();
    let mut vm_ports = Vec::new();
    for vm in t.vms_on(host) {
        vm_ports.push(vm.host_if.clone());
        let Some(subnet) = s.subnet(vm.vsid) else {
            continue;
        };
        let k = key(vm.vsid.get());
        let encap = |dst_pa: Ipv4Addr| {
            format!(
                "set_field:{k:#x}->tun_id,\
                 multipath(symmetric_l4,0,modulo_n,256,0,NXM_NX_TUN_ID[0..7]),\
                 set_field:{dst_pa}->tun_dst,output:{GRE_PORT}"
            )
        };
        let from_vm = format!("priority=100,in_port={},dl_src={}", vm.host_if, vm.mac);
        flows.push(format!(
            "cookie={COOKIE_DECAP},priority=100,in_port={GRE_PORT},\
             tun_id={k:#x}/{VSID_MASK:#x},dl_dst={},actions=output:{}",
            vm.mac, vm.host_if
        ));
        flows.push(format!(
            "cookie={COOKIE_ENCAP},{from_vm},dl_dst={},actions={}",
            subnet.lb_mac,
            encap(lb_pa)
        ));
        // The LB's addresses in this VSID: the gateway, its CA VIPs, its SNAT CAs.
        let mut neigh: BTreeMap<IpAddr, MacAddr> = BTreeMap::new();
        let families = [vm.v4, vm.v6];
        for a in families.iter().flatten() {
            if let Some(gw) = a.gateway {
                neigh.insert(gw, subnet.lb_mac);
            }
        }
        let has_family = |addr: IpAddr| {
            families
                .iter()
                .flatten()
                .any(|a| a.addr.is_ipv6() == addr.is_ipv6())
        };
        for p in s.pools().iter().filter(|p| p.frontend == vm.vsid) {
            if has_family(p.address) {
                neigh.insert(p.address, subnet.lb_mac);
            }
        }
        for r in subnet.snat.iter().filter(|r| has_family(r.ca)) {
            neigh.insert(r.ca, subnet.lb_mac);
        }
        // The other VMs of the VSID: switched here or tunnelled to their host.
        for other in t
            .vms
            .iter()
            .filter(|o| o.vsid == vm.vsid && o.mac != vm.mac)
        {
            let action = if other.host == host {
                Some((COOKIE_LOCAL, format!("output:{}", other.host_if)))
            } else {
                host_pa(other.host).map(|p| (COOKIE_ENCAP, encap(p)))
            };
            let Some((cookie, action)) = action else {
                continue;
            };
            flows.push(format!(
                "cookie={cookie},{from_vm},dl_dst={},actions={action}",
                other.mac
            ));
            for ca in [other.v4, other.v6].iter().flatten().map(|a| a.addr) {
                if has_family(ca) {
                    neigh.insert(ca, other.mac);
                }
            }
        }
        for own in families.iter().flatten() {
            neigh.remove(&own.addr);
        }
        neighbours.extend(neigh.into_iter().map(|(addr, mac)| Neighbour {
            netns: vm.netns.clone(),
            addr,
            mac,
        }));
    }
    Ok(Plan {
        host,
        name: node.name.clone(),
        netns: node.netns.clone(),
        mac: node.mac,
        pa,
        pa_len: covering_len(pa, peers.iter().map(|p| p.0)),
        peers,
        vm_ports,
        flows,
        neighbours,
    })
}

/// The longest prefix length at which `pa` and every peer share the network part.
fn covering_len(pa: Ipv4Addr, peers: impl Iterator<Item = Ipv4Addr>) -> u8 {
    peers
        .map(|p| (u32::from(pa) ^ u32::from(p)).leading_zeros())
        .min()
        .and_then(|n| u8::try_from(n).ok())
        .unwrap_or(32)
}

/// A running OVS host: where its files and sockets are.
#[derive(Clone, Debug)]
pub struct Running {
    pub plan: Plan,
    pub dir: PathBuf,
}

impl Running {
    fn db(&self) -> String {
        format!("--db=unix:{}", self.dir.join("db.sock").display())
    }

    fn ctl(&self) -> String {
        self.dir.join("ovs-vswitchd.ctl").display().to_string()
    }

    fn bridge(&self, name: &str) -> String {
        format!("unix:{}", self.dir.join(format!("{name}.mgmt")).display())
    }

    fn vsctl(&self, args: &[&str]) -> Result<String, Error> {
        let db = self.db();
        let mut all = vec![db.as_str(), "--timeout=20"];
        all.extend_from_slice(args);
        cmd::run("ovs-vsctl", &all)
    }

    fn appctl(&self, args: &[&str]) -> Result<String, Error> {
        let ctl = self.ctl();
        let mut all = vec!["-t", ctl.as_str()];
        all.extend_from_slice(args);
        cmd::run("ovs-appctl", &all)
    }

    /// Waits until OVS's own routing table sends `peer` through br-pa.
    fn wait_route(&self, peer: Ipv4Addr) -> Result<(), Error> {
        let peer = peer.to_string();
        let start = std::time::Instant::now();
        loop {
            let out = self.appctl(&["ovs/route/lookup", &peer]);
            if let Ok(o) = &out
                && o.contains("br-pa")
            {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(Error::Ovs(format!(
                    "{}: OVS has no route to {peer} through br-pa: {out:?}",
                    self.plan.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One line for the report: what its OpenFlow rules matched.
    pub fn counters(&self) -> String {
        let label = format!("{} (Open vSwitch)", self.plan.name);
        match cmd::run("ovs-ofctl", &["dump-flows", &self.bridge("br-int")]) {
            Ok(out) => counters_line(&label, &out),
            Err(e) => format!("  {label}: no counters ({e})\n"),
        }
    }
}

/// Sums `n_packets` of a `dump-flows` listing by cookie.
fn counters_line(label: &str, dump: &str) -> String {
    let mut sums = [0u64; 4];
    for line in dump.lines() {
        let field = |name: &str| {
            line.split([',', ' '])
                .find_map(|w| w.trim().strip_prefix(name))
                .map(str::to_string)
        };
        let Some(n) = field("n_packets=").and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        let cookie = field("cookie=")
            .and_then(|c| u64::from_str_radix(c.trim_start_matches("0x"), 16).ok())
            .unwrap_or(COOKIE_DROP);
        if let Some(slot) = usize::try_from(cookie).ok().and_then(|c| sums.get_mut(c)) {
            *slot = slot.saturating_add(n);
        }
    }
    let [drop, encap, decap, local] = sums;
    format!(
        "  {label}: encapsulated {encap}, decapsulated to VMs {decap}, switched locally \
         {local}, dropped {drop}\n"
    )
}

fn schema() -> Result<&'static str, Error> {
    SCHEMAS
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            Error::Ovs(format!(
                "no OVS database schema at {}",
                SCHEMAS.join(" or ")
            ))
        })
}

/// Starts OVS in the host's namespace and configures it as `plan` says. Its daemons go
/// into `guard` (so a failure tears them down with the lab); logs and sockets go to
/// `<dir>/ovs-<host>/`.
pub fn start(plan: &Plan, dir: &Path, guard: &mut Guard) -> Result<Running, Error> {
    let odir = dir.join(format!("ovs-{}", plan.name));
    std::fs::create_dir_all(&odir).map_err(|cause| Error::Io {
        path: odir.clone(),
        cause,
    })?;
    let run = Running {
        plan: plan.clone(),
        dir: odir.clone(),
    };
    let p = |name: &str| odir.join(name).display().to_string();
    let db = p("conf.db");
    cmd::run("ovsdb-tool", &["create", &db, schema()?])?;
    let env: Vec<String> = ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"]
        .iter()
        .map(|v| format!("{v}={}", odir.display()))
        .collect();
    let with_env = |program: &str, args: Vec<String>| {
        let mut v = env.clone();
        v.push(program.to_string());
        v.extend(args);
        v
    };
    let server = with_env(
        "ovsdb-server",
        vec![
            db.clone(),
            format!("--remote=punix:{}", p("db.sock")),
            format!("--pidfile={}", p("ovsdb-server.pid")),
            format!("--unixctl={}", p("ovsdb-server.ctl")),
            format!("--log-file={}", p("ovsdb-server.log")),
        ],
    );
    let env_prog = Path::new("env");
    let mut d = Daemon::spawn(
        &format!("ovsdb-{}", plan.name),
        &plan.netns,
        env_prog,
        &server,
        dir,
    )?;
    let ready = d.wait_ready("ovsdb-server (Open vSwitch)", Duration::from_secs(10));
    guard.daemons.push(d);
    ready?;
    cmd::run(
        "ovs-vsctl",
        &[&run.db(), "--retry", "--timeout=10", "--no-wait", "init"],
    )?;
    let switch = with_env(
        "ovs-vswitchd",
        vec![
            format!("unix:{}", p("db.sock")),
            "--disable-system".into(),
            format!("--pidfile={}", p("ovs-vswitchd.pid")),
            format!("--unixctl={}", p("ovs-vswitchd.ctl")),
            format!("--log-file={}", p("ovs-vswitchd.log")),
        ],
    );
    let mut d = Daemon::spawn(
        &format!("ovs-{}", plan.name),
        &plan.netns,
        env_prog,
        &switch,
        dir,
    )?;
    let ready = d.wait_ready("ovs-vswitchd (Open vSwitch)", Duration::from_secs(10));
    guard.daemons.push(d);
    ready?;
    configure(&run)?;
    Ok(run)
}

/// The `ovs-vsctl` transaction that builds both bridges: one command line of
/// `--`-separated commands, applied atomically.
fn bridges_command(plan: &Plan) -> Vec<String> {
    let mut cmds: Vec<String> = vec![
        "add-br br-pa".into(),
        format!(
            "set bridge br-pa datapath_type=netdev other-config:hwaddr={}",
            plan.mac
        ),
        "add-port br-pa pa0".into(),
        "add-br br-int".into(),
        "set bridge br-int datapath_type=netdev fail-mode=secure".into(),
        format!("add-port br-int {GRE_PORT}"),
        format!(
            "set interface {GRE_PORT} type=gre options:remote_ip=flow options:key=flow \
             options:local_ip={}",
            plan.pa
        ),
    ];
    cmds.extend(plan.vm_ports.iter().map(|p| format!("add-port br-int {p}")));
    cmds.iter()
        .flat_map(|c| std::iter::once("--").chain(c.split_whitespace()))
        .map(str::to_string)
        .collect()
}

fn configure(run: &Running) -> Result<(), Error> {
    let plan = &run.plan;
    let args = bridges_command(plan);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run.vsctl(&refs)?;

    let ns = plan.netns.as_str();
    // The kernel of the host namespace now holds the PA (on br-pa, for OVS). Frames
    // also reach it straight from pa0, where it would answer GRE with ICMP protocol
    // unreachable (OVS reads pa0 with a packet socket, before routing): everything
    // arriving on pa0 is routed into a blackhole, ahead of the local table.
    ip_in(ns, &["rule", "add", "pref", "100", "lookup", "local"])?;
    ip_in(ns, &["rule", "del", "pref", "0"])?;
    ip_in(
        ns,
        &["rule", "add", "pref", "10", "iif", "pa0", "blackhole"],
    )?;
    let pa = format!("{}/{}", plan.pa, plan.pa_len);
    ip_in(ns, &["addr", "add", &pa, "dev", "br-pa"])?;
    ip_in(ns, &["link", "set", "br-pa", "up"])?;
    for (peer, mac) in &plan.peers {
        run.appctl(&[
            "tnl/neigh/set",
            "br-pa",
            &peer.to_string(),
            &mac.to_string(),
        ])?;
    }
    // OVS learns the prefix route from the kernel asynchronously (netlink).
    for (peer, _) in &plan.peers {
        run.wait_route(*peer)?;
    }
    let flows = run.dir.join("br-int.flows");
    let mut text = String::new();
    for f in &plan.flows {
        let _ = writeln!(text, "{f}");
    }
    std::fs::write(&flows, text).map_err(|cause| Error::Io {
        path: flows.clone(),
        cause,
    })?;
    cmd::run(
        "ovs-ofctl",
        &[
            "add-flows",
            &run.bridge("br-int"),
            &flows.display().to_string(),
        ],
    )?;
    for n in &plan.neighbours {
        let addr = n.addr.to_string();
        let mac = n.mac.to_string();
        ip_in(
            &n.netns,
            &[
                "neigh",
                "replace",
                &addr,
                "lladdr",
                &mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    fn plan_of(host: usize) -> Plan {
        let s = Snapshot::from_toml(EXAMPLE, "example.toml").expect("example loads");
        let t = Topology::from_snapshot(&s, "nvlab-");
        plan(&s, &t, host).expect("plan")
    }

    #[test]
    fn key_keeps_flow_id_byte_free() {
        assert_eq!(key(5001), 0x0013_8900);
        assert_eq!(key(0x00ff_fffe), 0xffff_fe00);
        assert_eq!(key(5001) & !VSID_MASK, 0);
    }

    #[test]
    fn host1_tunnels_blue_5_to_the_lb_and_back() {
        let p = plan_of(0);
        assert_eq!(p.pa, Ipv4Addr::new(192, 168, 6, 11));
        assert_eq!(p.vm_ports, ["vm-b5"]);
        assert_eq!(
            p.peers.first(),
            Some(&(
                Ipv4Addr::new(192, 168, 6, 10),
                "02:00:00:00:06:0a".parse().unwrap()
            ))
        );
        assert_eq!(p.peers.len(), 5, "LB + 4 other hosts: {:?}", p.peers);
        let decap = p
            .flows
            .iter()
            .find(|f| f.contains("in_port=nvgre0"))
            .expect("decap flow");
        assert!(decap.contains("tun_id=0x138900/0xffffff00"), "{decap}");
        assert!(decap.contains("dl_dst=00:1d:d8:b7:1c:01"), "{decap}");
        assert!(decap.ends_with("actions=output:vm-b5"), "{decap}");
        let to_lb = p
            .flows
            .iter()
            .find(|f| f.contains("dl_dst=02:00:00:b1:00:fe"))
            .expect("flow to the LB");
        assert!(
            to_lb.contains("in_port=vm-b5,dl_src=00:1d:d8:b7:1c:01"),
            "{to_lb}"
        );
        assert!(to_lb.contains("set_field:0x138900->tun_id"), "{to_lb}");
        assert!(to_lb.contains("set_field:192.168.6.10->tun_dst"), "{to_lb}");
    }

    #[test]
    fn host3_switches_blue_locally_and_tunnels_to_other_hosts() {
        let p = plan_of(2);
        assert_eq!(p.vm_ports, ["vm-b7", "vm-b8", "vm-r6"]);
        // blue-7 -> blue-8 on the same host: no tunnel.
        assert!(p.flows.iter().any(|f| f.contains("in_port=vm-b7")
            && f.contains("dl_dst=00:1d:d8:b7:1c:04")
            && f.ends_with("actions=output:vm-b8")));
        // blue-7 -> blue-5 on host1: tunnelled to host1's PA.
        assert!(p.flows.iter().any(|f| f.contains("in_port=vm-b7")
            && f.contains("dl_dst=00:1d:d8:b7:1c:01")
            && f.contains("->tun_dst")
            && f.contains("192.168.6.11")));
        // Red's VM never reaches Blue's MACs.
        assert!(
            !p.flows
                .iter()
                .any(|f| f.contains("in_port=vm-r6") && f.contains("00:1d:d8:b7:"))
        );
        let red: Vec<_> = p.flows.iter().filter(|f| f.contains("vm-r6")).collect();
        assert!(
            red.iter().any(|f| f.contains("0x177100/0xffffff00")),
            "{red:?}"
        );
    }

    #[test]
    fn vms_get_the_lbs_addresses_of_their_vsid_only() {
        let p = plan_of(1);
        let of = |ns: &str, a: &str| {
            p.neighbours
                .iter()
                .find(|n| n.netns == ns && n.addr == a.parse::<IpAddr>().unwrap())
                .map(|n| n.mac.to_string())
        };
        let blue = Some("02:00:00:b1:00:fe".to_string());
        let red = Some("02:00:00:e1:00:fe".to_string());
        assert_eq!(of("nvlab-blue-6", "10.0.0.1"), blue);
        assert_eq!(of("nvlab-blue-6", "fd00:0:0:1::1"), blue);
        assert_eq!(of("nvlab-blue-6", "10.0.0.100"), blue);
        assert_eq!(of("nvlab-blue-6", "10.0.0.250"), blue);
        assert_eq!(of("nvlab-red-5", "10.0.0.100"), red);
        assert_eq!(of("nvlab-red-5", "fd00:0:0:1::fa"), red);
        // Other VMs by their own MAC; a VM never gets an entry for itself.
        assert_eq!(
            of("nvlab-blue-6", "10.0.0.5"),
            Some("00:1d:d8:b7:1c:01".to_string())
        );
        assert_eq!(of("nvlab-blue-6", "10.0.0.6"), None);
        assert_eq!(
            of("nvlab-red-5", "10.0.0.6"),
            Some("00:1d:d8:e0:1c:02".to_string())
        );
        // Blue tier 2 is another VSID: not a neighbour of tier 1.
        assert_eq!(of("nvlab-blue-6", "10.0.1.21"), None);
    }

    #[test]
    fn bridges_are_one_transaction_with_every_vm_port() {
        let args = bridges_command(&plan_of(2)).join(" ");
        assert!(args.starts_with("-- add-br br-pa -- set bridge br-pa datapath_type=netdev other-config:hwaddr=02:00:00:00:06:13 -- add-port br-pa pa0 --"), "{args}");
        assert!(
            args.contains(
                "type=gre options:remote_ip=flow options:key=flow options:local_ip=192.168.6.13"
            ),
            "{args}"
        );
        assert!(
            args.ends_with(
                "-- add-port br-int vm-b7 -- add-port br-int vm-b8 -- add-port br-int vm-r6"
            ),
            "{args}"
        );
    }

    #[test]
    fn pa_prefix_covers_every_peer() {
        let p = plan_of(0);
        assert_eq!(
            p.pa_len, 29,
            "192.168.6.11 and .10, .12-.15 share 192.168.6.8/29"
        );
        let a = Ipv4Addr::new(10, 0, 0, 1);
        assert_eq!(
            covering_len(a, [Ipv4Addr::new(10, 0, 0, 2)].into_iter()),
            30
        );
        assert_eq!(
            covering_len(a, [Ipv4Addr::new(138, 0, 0, 1)].into_iter()),
            0
        );
        assert_eq!(covering_len(a, std::iter::empty()), 32);
    }

    #[test]
    fn counters_sum_by_cookie() {
        let dump = "NXST_FLOW reply (xid=0x4):\n \
            cookie=0x1, duration=1.0s, table=0, n_packets=7, n_bytes=1, priority=100 actions=x\n \
            cookie=0x1, duration=1.0s, table=0, n_packets=3, n_bytes=1, priority=100 actions=x\n \
            cookie=0x2, duration=1.0s, table=0, n_packets=9, n_bytes=1, priority=100 actions=x\n \
            duration=1.0s, table=0, n_packets=4, n_bytes=1, priority=0 actions=drop\n";
        assert_eq!(
            counters_line("host1", dump),
            "  host1: encapsulated 10, decapsulated to VMs 9, switched locally 0, dropped 4\n"
        );
    }
}
