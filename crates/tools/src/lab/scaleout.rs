//! `nvlb lab --instances N`: the scale-out lab (docs/scale-out.md). N LB namespaces
//! run `nvlb run --instance iK` on one shared policy; one router namespace sits in
//! front of them on both sides: toward the Internet client (the VIPs) and toward the
//! PA bridge of the hosts (the anycast gateway PA, and each instance's own PA). Every
//! instance runs BIRD, which announces its routes to the router's BIRD over a small
//! kernel-addressed BGP link while the instance is healthy; the router installs them
//! as kernel multipath routes with L4 hashing.
//!
//! Data links carry no kernel address on the instance's side: the router reaches an
//! instance's data side through a permanent neighbour entry (the instance's MAC), and
//! BIRD announces that neighbour address as next hop. The instance sends everything
//! to the router's MAC on each link (`balancer.external.gateway_mac`,
//! `balancer.provider.gateway_mac`). The router's port on the PA bridge wears the
//! provider MAC that hosts already send the LB's traffic to.
//!
//! It must never touch a namespace without its prefix, and never signal a process it
//! did not start (killing an instance signals only that instance's own daemons).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::policy::{MacAddr, Snapshot};

use super::Error;
use super::bgp::{self, Peer};
use super::cmd::{available, exec_in, ip, ip_in, sysctl_in};
use super::netns::{add_addr, add_default_route, build_vm};
use super::procs::{self, Daemon};
use super::teardown::{self, Guard};
use super::topology::{Addr, CLIENT_V4, CLIENT_V6, ROUTER_CLIENT_V4, ROUTER_CLIENT_V6, Topology};

/// The router's MAC on every instance's PA link, written into the policy as
/// `balancer.provider.gateway_mac` when the policy has none.
pub const PA_GATEWAY_MAC: MacAddr = MacAddr([2, 0, 0, 0, 6, 1]);
/// Most instances the lab builds (interface names and address plans fit 16).
pub const MAX_INSTANCES: usize = 16;
/// The last octet of instance i's own PA is this plus i (in the shared PA's /24).
const OWN_PA_BASE: u8 = 30;
/// Instance i's SNAT CA is the shared SNAT CA minus this plus i.
const SNAT_OFFSET: u32 = 32;

/// The name of instance `i` (1-based) in the policy and on `nvlb run --instance`.
pub fn instance_name(i: usize) -> String {
    format!("i{i}")
}

/// The shared policy text made ready for `n` instances: `balancer.provider.gateway_mac`
/// set (the router), and one `[[balancer.instance]]` per instance with its own PA (in
/// the shared IPv4 PA's /24) and its own SNAT CA beside every shared one.
pub fn policy_text(text: &str, policy: &Snapshot, n: usize) -> Result<String, Error> {
    if !(2..=MAX_INSTANCES).contains(&n) {
        return Err(Error::ScaleOut(format!(
            "--instances {n}: 2..={MAX_INSTANCES}"
        )));
    }
    if !policy.balancer().instances.is_empty() {
        return Err(Error::ScaleOut(
            "the policy already declares [[balancer.instance]]: give one without".into(),
        ));
    }
    let Some(pa) = policy.balancer().provider.address_v4() else {
        return Err(Error::ScaleOut(
            "the lab's router is IPv4 on the PA side: the provider port needs an IPv4 PA".into(),
        ));
    };
    let mut out = String::new();
    let has_gateway = policy.balancer().provider.gateway_mac.is_some();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        let head = line.split('#').next().unwrap_or("").trim();
        if head == "[balancer.provider]" && !has_gateway {
            let _ = writeln!(
                out,
                "gateway_mac = \"{PA_GATEWAY_MAC}\"   # set by nvlb lab --instances: the router"
            );
        }
    }
    if !has_gateway && !text.lines().any(|l| l.trim() == "[balancer.provider]") {
        return Err(Error::ScaleOut(
            "the policy has no `[balancer.provider]` table header to add gateway_mac under".into(),
        ));
    }
    for i in 1..=n {
        let o = pa.octets();
        let own = Ipv4Addr::new(o[0], o[1], o[2], own_pa_octet(i));
        let _ = write!(
            out,
            "\n[[balancer.instance]]   # added by nvlb lab --instances\nname = \"{}\"\n\
             provider_addresses = [\"{own}\"]\nsnat = [\n",
            instance_name(i)
        );
        for s in policy.subnets() {
            for (k, r) in s.snat.iter().enumerate() {
                // One CA per family: the first range of each family stands for it.
                if s.snat
                    .iter()
                    .take(k)
                    .any(|x| x.ca.is_ipv6() == r.ca.is_ipv6())
                {
                    continue;
                }
                let ca = shifted(r.ca, i);
                let _ = writeln!(
                    out,
                    "  {{ vsid = {}, ca = \"{ca}\", ports = \"{}-{}\" }},",
                    s.vsid, r.first_port, r.last_port
                );
            }
        }
        out.push_str("]\n");
    }
    Ok(out)
}

fn own_pa_octet(i: usize) -> u8 {
    OWN_PA_BASE.saturating_add(u8::try_from(i).unwrap_or(u8::MAX))
}

/// Instance i's SNAT CA beside shared CA `ca`.
fn shifted(ca: IpAddr, i: usize) -> IpAddr {
    let i = u32::try_from(i).unwrap_or(0);
    match ca {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(
            u32::from(a).wrapping_sub(SNAT_OFFSET).wrapping_add(i),
        )),
        IpAddr::V6(a) => IpAddr::V6(
            (u128::from(a)
                .wrapping_sub(u128::from(SNAT_OFFSET))
                .wrapping_add(u128::from(i)))
            .into(),
        ),
    }
}

/// One LB instance of the lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LbNode {
    pub name: String,
    pub netns: String,
    pub peer: Peer,
    pub own_pa: Ipv4Addr,
    /// The router's interfaces toward it: Internet side, PA side, BGP.
    pub rt_ext: String,
    pub rt_pa: String,
    pub rt_bgp: String,
}

/// What the scale-out lab builds.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Client, router, PA bridge, hosts, VMs and pools as in the single-LB lab (its
    /// `lb` namespace is not built).
    pub t: Topology,
    pub lbs: Vec<LbNode>,
    /// The router's address on the PA bridge.
    pub router_pa: Addr,
    pub pa_gateway_mac: MacAddr,
    pub anycast_pa: Ipv4Addr,
    /// Public IPv4 VIPs: what the instances announce (with the gateway PA).
    pub vips: Vec<Ipv4Addr>,
    /// Public IPv6 VIPs, announced over each instance's IPv6 session.
    pub vips6: Vec<Ipv6Addr>,
}

impl Plan {
    /// `policy` is the shared policy with its instances (from [`policy_text`]).
    pub fn new(policy: &Snapshot, prefix: &str) -> Result<Plan, Error> {
        let t = Topology::from_snapshot(policy, prefix);
        let b = policy.balancer();
        let anycast_pa = b
            .provider
            .address_v4()
            .ok_or_else(|| Error::ScaleOut("the provider port needs an IPv4 PA".into()))?;
        let lbs = b
            .instances
            .iter()
            .enumerate()
            .map(|(k, inst)| {
                let i = k + 1;
                let n = u8::try_from(i).unwrap_or(u8::MAX);
                let own_pa = inst
                    .provider_addresses
                    .iter()
                    .find_map(|a| match a {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .unwrap_or(anycast_pa);
                LbNode {
                    name: inst.name.clone(),
                    netns: format!("{prefix}lb{i}"),
                    peer: Peer {
                        index: i,
                        router: Ipv4Addr::new(100, 66, n, 1),
                        local: Ipv4Addr::new(100, 66, n, 2),
                        vip_next_hop: Ipv4Addr::new(100, 64, n, 2),
                        pa_next_hop: Ipv4Addr::new(100, 65, n, 2),
                        router6: Ipv6Addr::new(0xfd66, 0, 0, n.into(), 0, 0, 0, 1),
                        local6: Ipv6Addr::new(0xfd66, 0, 0, n.into(), 0, 0, 0, 2),
                        vip_next_hop6: Ipv6Addr::new(0xfd64, 0, 0, n.into(), 0, 0, 0, 2),
                    },
                    own_pa,
                    rt_ext: format!("rt-e{i}"),
                    rt_pa: format!("rt-p{i}"),
                    rt_bgp: format!("rt-b{i}"),
                }
            })
            .collect::<Vec<_>>();
        let o = anycast_pa.octets();
        let taken = |last: u8| {
            let a = IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], last));
            policy.host_by_pa(a).is_some() || b.provider.owns(a) || policy.is_instance_pa(a)
        };
        let last = [1u8, 254, 253]
            .into_iter()
            .find(|&l| !taken(l))
            .unwrap_or(1);
        let mut vips: Vec<Ipv4Addr> = Vec::new();
        let mut vips6: Vec<Ipv6Addr> = Vec::new();
        for p in policy.pools().iter().filter(|p| p.is_public()) {
            match p.address {
                IpAddr::V4(v) if !vips.contains(&v) => vips.push(v),
                IpAddr::V6(v) if !vips6.contains(&v) => vips6.push(v),
                _ => {}
            }
        }
        Ok(Plan {
            t,
            lbs,
            router_pa: Addr {
                addr: IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], last)),
                len: 24,
                gateway: None,
            },
            pa_gateway_mac: b.provider.gateway_mac.unwrap_or(PA_GATEWAY_MAC),
            anycast_pa,
            vips,
            vips6,
        })
    }

    /// Every namespace the scale-out lab creates.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut v = vec![
            self.t.client.as_str(),
            self.t.router.as_str(),
            self.t.pa.as_str(),
        ];
        v.extend(self.lbs.iter().map(|l| l.netns.as_str()));
        v.extend(self.t.hosts.iter().map(|h| h.netns.as_str()));
        v.extend(self.t.vms.iter().map(|m| m.netns.as_str()));
        v
    }
}

/// Builds every namespace and link of the plan.
pub fn build(p: &Plan, ethtool: bool) -> Result<(), Error> {
    let t = &p.t;
    for ns in p.namespaces() {
        ip(&["netns", "add", ns])?;
        ip_in(ns, &["link", "set", "lo", "up"])?;
    }
    let quiet = [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ];
    for l in &p.lbs {
        sysctl_in(&l.netns, &quiet)?;
    }
    sysctl_in(&t.pa, &quiet)?;
    for h in &t.hosts {
        sysctl_in(&h.netns, &quiet)?;
    }
    sysctl_in(
        &t.router,
        &[
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
            // ECMP by 5-tuple where there are ports (TCP, UDP); GRE has none, so the
            // PA side hashes on addresses and protocol only.
            "net.ipv4.fib_multipath_hash_policy=1",
            "net.ipv6.fib_multipath_hash_policy=1",
            // Instances answer from the anycast PA and the VIPs on any link.
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            "net.ipv4.conf.all.send_redirects=0",
        ],
    )?;
    for vm in &t.vms {
        sysctl_in(
            &vm.netns,
            &[
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
            ],
        )?;
    }
    // The Internet client.
    ip_in(
        &t.client,
        &[
            "link", "add", "cl0", "type", "veth", "peer", "name", "rt-cl", "netns", &t.router,
        ],
    )?;
    let on_link = |addr: IpAddr, len| Addr {
        addr,
        len,
        gateway: None,
    };
    add_addr(&t.client, "cl0", &on_link(CLIENT_V4.into(), 24))?;
    add_addr(&t.client, "cl0", &on_link(CLIENT_V6.into(), 64))?;
    add_addr(&t.router, "rt-cl", &on_link(ROUTER_CLIENT_V4.into(), 24))?;
    add_addr(&t.router, "rt-cl", &on_link(ROUTER_CLIENT_V6.into(), 64))?;
    ip_in(&t.client, &["link", "set", "cl0", "up"])?;
    ip_in(&t.router, &["link", "set", "rt-cl", "up"])?;
    add_default_route(&t.client, ROUTER_CLIENT_V4.into())?;
    add_default_route(&t.client, ROUTER_CLIENT_V6.into())?;
    // Each instance: three links to the router.
    let mtu = t.provider_mtu.to_string();
    let gw = t.gateway_mac.to_string();
    let ext = t.external_mac.to_string();
    let pmac = t.provider_mac.to_string();
    let pgw = p.pa_gateway_mac.to_string();
    for l in &p.lbs {
        let r = &t.router;
        ip_in(
            r,
            &[
                "link", "add", &l.rt_ext, "address", &gw, "type", "veth", "peer", "name", "lb-ext",
                "address", &ext, "netns", &l.netns,
            ],
        )?;
        ip_in(
            r,
            &[
                "link", "add", &l.rt_pa, "address", &pgw, "mtu", &mtu, "type", "veth", "peer",
                "name", "lb-pa", "address", &pmac, "mtu", &mtu, "netns", &l.netns,
            ],
        )?;
        ip_in(
            r,
            &[
                "link", "add", &l.rt_bgp, "type", "veth", "peer", "name", "lb-bgp", "netns",
                &l.netns,
            ],
        )?;
        let peer = &l.peer;
        let hop_net = |hop: Ipv4Addr| {
            let o = hop.octets();
            on_link(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 1)), 24)
        };
        add_addr(r, &l.rt_ext, &hop_net(peer.vip_next_hop))?;
        add_addr(r, &l.rt_pa, &hop_net(peer.pa_next_hop))?;
        add_addr(r, &l.rt_bgp, &on_link(peer.router.into(), 24))?;
        add_addr(&l.netns, "lb-bgp", &on_link(peer.local.into(), 24))?;
        // IPv6 only on the BGP link of the instance (its data links stay silent).
        sysctl_in(&l.netns, &["net.ipv6.conf.lb-bgp.disable_ipv6=0"])?;
        add_addr(r, &l.rt_bgp, &on_link(peer.router6.into(), 64))?;
        add_addr(&l.netns, "lb-bgp", &on_link(peer.local6.into(), 64))?;
        let o = peer.vip_next_hop6.segments();
        let hop6 = Ipv6Addr::new(o[0], o[1], o[2], o[3], 0, 0, 0, 1);
        add_addr(r, &l.rt_ext, &on_link(hop6.into(), 64))?;
        for dev in [&l.rt_ext, &l.rt_pa, &l.rt_bgp] {
            ip_in(r, &["link", "set", dev, "up"])?;
        }
        for dev in ["lb-ext", "lb-pa", "lb-bgp"] {
            ip_in(&l.netns, &["link", "set", dev, "up"])?;
        }
        // The instance's data side has no kernel: the router knows its MACs.
        for (hop, mac, dev) in [
            (IpAddr::V4(peer.vip_next_hop), &ext, &l.rt_ext),
            (IpAddr::V6(peer.vip_next_hop6), &ext, &l.rt_ext),
            (IpAddr::V4(peer.pa_next_hop), &pmac, &l.rt_pa),
        ] {
            let hop = hop.to_string();
            ip_in(
                r,
                &[
                    "neigh",
                    "replace",
                    &hop,
                    "lladdr",
                    mac,
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            )?;
        }
    }
    build_pa_side(p, &mtu, &pmac)?;
    for vm in &t.vms {
        build_vm(t, vm)?;
    }
    if ethtool {
        exec_in(&t.client, "ethtool", &["-K", "cl0", "tx", "off"])?;
        for l in &p.lbs {
            exec_in(&t.router, "ethtool", &["-K", &l.rt_ext, "tx", "off"])?;
        }
        for vm in &t.vms {
            exec_in(&vm.netns, "ethtool", &["-K", "eth0", "tx", "off"])?;
        }
    }
    Ok(())
}

/// The PA bridge with the hosts and the router's port, which wears the provider MAC
/// (hosts send the LB's traffic to it) and knows every host's MAC from policy.
fn build_pa_side(p: &Plan, mtu: &str, pmac: &str) -> Result<(), Error> {
    let t = &p.t;
    ip_in(
        &t.pa,
        &[
            "link",
            "add",
            "br-pa",
            "mtu",
            mtu,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    ip_in(
        &t.router,
        &[
            "link", "add", "rt-pa", "address", pmac, "mtu", mtu, "type", "veth", "peer", "name",
            "pa-rt", "mtu", mtu, "netns", &t.pa,
        ],
    )?;
    add_addr(&t.router, "rt-pa", &p.router_pa)?;
    ip_in(&t.router, &["link", "set", "rt-pa", "up"])?;
    super::netns::bridge_hosts(t, "pa-rt", mtu)
}

/// How to run the scale-out lab.
#[derive(Clone, Debug)]
pub struct Options {
    pub prefix: String,
    pub instances: usize,
    pub nvlb: PathBuf,
    /// The shared policy text as given (without instances).
    pub base_policy: String,
    pub bulk_bytes: usize,
}

/// A running scale-out lab. Dropping it tears everything down.
#[derive(Debug)]
pub struct ScaleLab {
    pub plan: Plan,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub bulk: PathBuf,
    nvlb: PathBuf,
    tokens: PathBuf,
    /// Always `Some` until [`ScaleLab::down`] or [`ScaleLab::keep`] disarm it.
    guard: Option<Guard>,
    /// BIRDs of killed instances, frozen (SIGSTOP) so that only the hold timer tells
    /// the router; killed for good when the instance starts again or the lab ends.
    frozen: Vec<(usize, Daemon)>,
}

impl ScaleLab {
    /// Builds the lab, starts every process and waits until the router has a route
    /// through every instance.
    pub fn up(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<ScaleLab, Error> {
        for tool in ["ip", "curl", "bird", "birdc"] {
            if !available(tool) {
                return Err(Error::MissingTool(tool));
            }
        }
        if !super::topology::valid_prefix(&opts.prefix) {
            return Err(Error::Prefix(opts.prefix.clone()));
        }
        let base = Snapshot::from_toml(&opts.base_policy, "policy")
            .map_err(|e| Error::ScaleOut(e.to_string()))?;
        let text = policy_text(&opts.base_policy, &base, opts.instances)?;
        let policy = Snapshot::from_toml(&text, "scale-out policy")
            .map_err(|e| Error::ScaleOut(e.to_string()))?;
        let plan = Plan::new(&policy, &opts.prefix)?;
        let old = teardown::remove_prefix(&opts.prefix)?;
        if !old.is_empty() {
            progress(&format!("removed {} leftover namespace(s)", old.len()));
        }
        let dir = super::run_dir(&opts.prefix);
        teardown::remove_run_dir(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let guard = Guard::new(&opts.prefix, &dir);
        let config = dir.join("config.toml");
        std::fs::write(&config, &text).map_err(io_err(&config))?;
        let bulk = dir.join("bulk.bin");
        super::servers::write_bulk_file(&bulk, opts.bulk_bytes)?;
        let tokens = super::api_tokens(&dir)?;
        let mut lab = ScaleLab {
            plan,
            dir,
            config,
            bulk,
            nvlb: opts.nvlb.clone(),
            tokens,
            guard: Some(guard),
            frozen: Vec::new(),
        };
        progress(&format!(
            "building {} namespaces: client, router, PA bridge, {} LB instances, {} hosts, {} VMs",
            lab.plan.namespaces().len(),
            lab.plan.lbs.len(),
            lab.plan.t.hosts.len(),
            lab.plan.t.vms.len()
        ));
        build(&lab.plan, available("ethtool"))?;
        lab.start_fixed()?;
        for i in 1..=lab.plan.lbs.len() {
            lab.start_instance(i)?;
        }
        let n = lab.plan.lbs.len();
        let started = Instant::now();
        for v in lab.plan.vips.clone() {
            lab.wait_next_hops(v, |h| h.len() == n, Duration::from_secs(20))?;
        }
        for v in lab.plan.vips6.clone() {
            lab.wait_next_hops(v, |h| h.len() == n, Duration::from_secs(20))?;
        }
        let pa = lab.plan.anycast_pa;
        lab.wait_next_hops(pa, |h| h.len() == n, Duration::from_secs(20))?;
        progress(&format!(
            "BGP converged: every VIP and the gateway PA {pa} via {n} instances ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
        Ok(lab)
    }

    /// VM servers, the router's BIRD, the host simulators.
    fn start_fixed(&mut self) -> Result<(), Error> {
        let t = self.plan.t.clone();
        let mut servers = Vec::new();
        for vm in &t.vms {
            let mut args = vec!["lab-serve".to_string(), "--name".into(), vm.name.clone()];
            for p in &vm.ports {
                args.extend(["--port".to_string(), p.to_string()]);
            }
            args.extend(["--bulk".to_string(), self.bulk.display().to_string()]);
            let d = Daemon::spawn(
                &format!("vm-{}", vm.name),
                &vm.netns,
                &self.nvlb,
                &args,
                &self.dir,
            )?;
            servers.push(d);
        }
        for mut d in servers {
            let ready = d.wait_ready(super::servers::READY, Duration::from_secs(10));
            self.push(d);
            ready?;
        }
        let peers: Vec<Peer> = self.plan.lbs.iter().map(|l| l.peer.clone()).collect();
        let conf = self.dir.join("bird-router.conf");
        std::fs::write(&conf, bgp::router_config(&peers)).map_err(io_err(&conf))?;
        let sock = self.dir.join("bird-router.ctl");
        let args = bird_args(&conf, &sock);
        let mut d = Daemon::spawn(
            "bird-router",
            &t.router,
            Path::new("bird"),
            &args,
            &self.dir,
        )?;
        let ready = d.wait_ready("Started", Duration::from_secs(10));
        self.push(d);
        ready?;
        let config = self.config.display().to_string();
        let mut hosts = Vec::new();
        for (i, h) in t.hosts.iter().enumerate() {
            let mut args: Vec<String> = [
                "host", "--config", &config, "--name", &h.name, "--pa", "pa0",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for vm in t.vms_on(i) {
                args.push("--vm".into());
                args.push(format!("{},{},{}", vm.vsid.get(), vm.mac, vm.host_if));
            }
            hosts.push((
                h.name.clone(),
                Daemon::spawn(&h.name, &h.netns, &self.nvlb, &args, &self.dir)?,
            ));
        }
        for (name, mut d) in hosts {
            let ready = d.wait_ready(&format!("nvlb: host {name} ready"), Duration::from_secs(10));
            self.push(d);
            ready?;
        }
        Ok(())
    }

    fn node(&self, i: usize) -> Result<LbNode, Error> {
        self.plan
            .lbs
            .get(i.wrapping_sub(1))
            .cloned()
            .ok_or_else(|| Error::ScaleOut(format!("no instance {i}")))
    }

    /// Starts instance `i` (1-based): `nvlb run --instance`, its BIRD and its health
    /// hook; returns once the hook has announced (the router may need a moment more).
    pub fn start_instance(&mut self, i: usize) -> Result<(), Error> {
        let l = self.node(i)?;
        for (k, d) in std::mem::take(&mut self.frozen) {
            if k == i {
                signal(&d, libc::SIGKILL);
                let _ = d.stop(Duration::from_secs(1));
            } else {
                self.frozen.push((k, d));
            }
        }
        let config = self.config.display().to_string();
        let tokens = self.tokens.display().to_string();
        let args: Vec<String> = [
            "run",
            "--config",
            &config,
            "--external",
            "lb-ext",
            "--provider",
            "lb-pa",
            "--workers",
            "1",
            "--api-tokens",
            &tokens,
            "--instance",
            &l.name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut d = Daemon::spawn(&format!("lb{i}"), &l.netns, &self.nvlb, &args, &self.dir)?;
        let ready = d.wait_ready("nvlb: ready", Duration::from_secs(10));
        self.push(d);
        ready?;
        let conf = self.dir.join(format!("bird{i}.conf"));
        let text = bgp::instance_config(
            &l.peer,
            &self.plan.vips,
            &self.plan.vips6,
            self.plan.anycast_pa,
            l.own_pa,
        );
        std::fs::write(&conf, text).map_err(io_err(&conf))?;
        let sock = self.dir.join(format!("bird{i}.ctl"));
        let mut d = Daemon::spawn(
            &format!("bird{i}"),
            &l.netns,
            Path::new("bird"),
            &bird_args(&conf, &sock),
            &self.dir,
        )?;
        let ready = d.wait_ready("Started", Duration::from_secs(10));
        self.push(d);
        ready?;
        let url = format!("http://{}/healthz", crate::control::api::DEFAULT_ADDR);
        let args = vec![
            "-c".to_string(),
            bgp::HOOK.to_string(),
            "nvlb-bgp-hook".into(),
            sock.display().to_string(),
            url,
        ];
        let mut d = Daemon::spawn(
            &format!("hook{i}"),
            &l.netns,
            Path::new("sh"),
            &args,
            &self.dir,
        )?;
        let ready = d.wait_ready(bgp::ANNOUNCED, Duration::from_secs(10));
        self.push(d);
        ready
    }

    fn push(&mut self, d: Daemon) {
        match &mut self.guard {
            Some(g) => g.daemons.push(d),
            None => d.detach(),
        }
    }

    fn take(&mut self, label: &str) -> Option<Daemon> {
        let g = self.guard.as_mut()?;
        let k = g.daemons.iter().position(|d| d.label == label)?;
        Some(g.daemons.remove(k))
    }

    /// Instance `i` dies as a hung machine would: its data plane and hook are killed
    /// (SIGKILL) and its BIRD frozen (SIGSTOP), so that no BGP message tells the router
    /// and only the hold timer withdraws its routes. Returns when the signals are sent.
    pub fn kill_instance(&mut self, i: usize) -> Result<Instant, Error> {
        let lb = self.take(&format!("lb{i}"));
        let hook = self.take(&format!("hook{i}"));
        let bird = self.take(&format!("bird{i}"));
        let at = Instant::now();
        if let Some(b) = &bird {
            signal(b, libc::SIGSTOP);
        }
        for d in [lb, hook].into_iter().flatten() {
            signal(&d, libc::SIGKILL);
            let _ = d.stop(Duration::from_secs(1));
        }
        if let Some(b) = bird {
            self.frozen.push((i, b));
        }
        Ok(at)
    }

    /// Only instance `i`'s data plane dies (SIGKILL); its BIRD and health hook live on,
    /// so the hook withdraws the service routes. Returns when the signal is sent.
    pub fn kill_data_plane(&mut self, i: usize) -> Instant {
        let lb = self.take(&format!("lb{i}"));
        let at = Instant::now();
        if let Some(d) = lb {
            signal(&d, libc::SIGKILL);
            let _ = d.stop(Duration::from_secs(1));
        }
        at
    }

    /// Stops instance `i` in order (SIGTERM) and returns its final counters (stdout).
    pub fn stop_instance(&mut self, i: usize) -> String {
        let mut out = String::new();
        for label in [format!("hook{i}"), format!("bird{i}"), format!("lb{i}")] {
            if let Some(d) = self.take(&label) {
                let (_, o) = d.stop(Duration::from_secs(3));
                if label.starts_with("lb") {
                    out = o;
                }
            }
        }
        out
    }

    /// The instances (1-based) the router's kernel route to `dst` goes through now.
    pub fn next_hops(&self, dst: impl Into<IpAddr>) -> Result<Vec<usize>, Error> {
        let dst: IpAddr = dst.into();
        let d = dst.to_string();
        let family = if dst.is_ipv6() { "-6" } else { "-4" };
        let out = ip_in(&self.plan.t.router, &[family, "route", "show", &d])?;
        let devs: Vec<&str> = out
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w.first() == Some(&"dev"))
            .filter_map(|w| w.get(1).copied())
            .collect();
        let mut v: Vec<usize> = self
            .plan
            .lbs
            .iter()
            .filter(|l| devs.iter().any(|d| *d == l.rt_ext || *d == l.rt_pa))
            .map(|l| l.peer.index)
            .collect();
        v.sort_unstable();
        v.dedup();
        Ok(v)
    }

    /// Polls the router's route to `dst` (every 50 ms) until `want` holds; how long
    /// it took.
    pub fn wait_next_hops(
        &self,
        dst: impl Into<IpAddr>,
        want: impl Fn(&[usize]) -> bool,
        limit: Duration,
    ) -> Result<Duration, Error> {
        let dst: IpAddr = dst.into();
        let start = Instant::now();
        loop {
            let hops = self.next_hops(dst)?;
            if want(&hops) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit || super::interrupted() {
                return Err(Error::ScaleOut(format!(
                    "the router's route to {dst} is still via instances {hops:?} after {} s",
                    limit.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The router's multipath routes, as `ip route` prints them (for the report).
    pub fn routes(&self) -> String {
        let mut s = String::new();
        for family in ["-4", "-6"] {
            s.push_str(
                &ip_in(
                    &self.plan.t.router,
                    &[family, "route", "show", "proto", "bird"],
                )
                .unwrap_or_default(),
            );
        }
        s
    }

    /// Stops everything, removes the namespaces; each instance's final counters.
    pub fn down(mut self) -> Vec<(String, String)> {
        for (_, d) in std::mem::take(&mut self.frozen) {
            signal(&d, libc::SIGKILL);
            let _ = d.stop(Duration::from_secs(1));
        }
        let daemons = self.guard.take().map(Guard::disarm).unwrap_or_default();
        let stopped = procs::stop_all(daemons, Duration::from_secs(3));
        let _ = teardown::remove_prefix(&self.plan.t.prefix);
        teardown::remove_run_dir(&self.dir);
        stopped
            .into_iter()
            .filter(|(label, _, _)| label.starts_with("lb"))
            .map(|(label, _, out)| (label, out))
            .collect()
    }

    /// Leaves everything running (`--keep`).
    pub fn keep(mut self) {
        for (_, d) in std::mem::take(&mut self.frozen) {
            d.detach();
        }
        let daemons = self.guard.take().map(Guard::disarm).unwrap_or_default();
        for d in daemons {
            d.detach();
        }
    }
}

fn bird_args(conf: &Path, sock: &Path) -> Vec<String> {
    vec![
        "-f".into(),
        "-c".into(),
        conf.display().to_string(),
        "-s".into(),
        sock.display().to_string(),
    ]
}

fn signal(d: &Daemon, sig: libc::c_int) {
    if let Ok(pid) = i32::try_from(d.pid()) {
        // SAFETY: kill(2) on a pid this process spawned and has not reaped (so it cannot
        // have been reused), with a plain signal number.
        unsafe { libc::kill(pid, sig) };
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// `nvlb lab --instances N` as a user runs it: the lab up, requests to every VIP, the router's routes, each instance's counters.
pub fn run(
    opts: &Options,
    requests: usize,
    keep: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<super::Outcome, Error> {
    let lab = ScaleLab::up(opts, progress)?;
    let mut text = format!(
        "Router routes (BIRD, merged into ECMP):\n{}\n",
        lab.routes()
    );
    let mut problems = Vec::new();
    for p in &lab.plan.t.pools {
        let Some(source) = p.source else { continue };
        let ns = lab.plan.t.source_netns(source).to_string();
        progress(&format!(
            "{}: {requests} requests to {} from {ns}",
            p.name,
            p.base_url()
        ));
        let r = super::traffic::requests(&ns, &p.base_url(), requests, 5, &lab.dir, &p.name)?;
        let _ = writeln!(
            text,
            "{}: {}/{} answered, by {:?}",
            p.name,
            r.answered(),
            r.sent,
            r.answers
        );
        problems.extend(r.failures.iter().map(|f| format!("{}: {f}", p.name)));
    }
    if keep {
        let kept = format!(
            "The scale-out lab is running (prefix {}). Routes: ip -n {} route\n\
             BGP: birdc -s {} show protocols\nTear down: nvlb lab --down --prefix {}\n",
            lab.plan.t.prefix,
            lab.plan.t.router,
            lab.dir.join("bird-router.ctl").display(),
            lab.plan.t.prefix
        );
        lab.keep();
        return Ok(super::Outcome {
            report: text,
            problems,
            kept: Some(kept),
        });
    }
    for (label, out) in lab.down() {
        text.push_str(&super::report::counters(
            &format!("{label} counters (nvlb run --instance, after SIGTERM):"),
            &out,
        ));
    }
    Ok(super::Outcome {
        report: text,
        problems,
        kept: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_gets_a_router_and_instances_that_validate() {
        let base = Snapshot::from_toml(super::super::EXAMPLE_POLICY, "x").unwrap();
        let text = policy_text(super::super::EXAMPLE_POLICY, &base, 3).unwrap();
        let s = Snapshot::from_toml(&text, "x").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s.balancer().provider.gateway_mac, Some(PA_GATEWAY_MAC));
        assert_eq!(s.balancer().instances.len(), 3);
        let i2 = s.for_instance("i2").unwrap();
        assert_eq!(
            i2.balancer().provider.address_v4(),
            Some(Ipv4Addr::new(192, 168, 6, 32))
        );
        let v = crate::policy::Vsid::new(5002).unwrap();
        assert_eq!(
            i2.snat_for(v, false).unwrap().ca,
            "10.0.1.220".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            i2.snat_for(v, true).unwrap().ca,
            "fd00:0:0:2::dc".parse::<IpAddr>().unwrap()
        );
        let plan = Plan::new(&s, "nvs-").unwrap();
        assert_eq!(plan.lbs.len(), 3);
        assert_eq!(
            plan.vips,
            [
                Ipv4Addr::new(203, 0, 113, 10),
                Ipv4Addr::new(203, 0, 113, 20)
            ]
        );
        assert_eq!(
            plan.router_pa.addr,
            IpAddr::V4(Ipv4Addr::new(192, 168, 6, 1))
        );
        assert!(plan.namespaces().contains(&"nvs-lb3"));
        assert!(policy_text(super::super::EXAMPLE_POLICY, &base, 1).is_err());
        assert!(policy_text(&text, &s, 2).is_err(), "instances twice");
    }
}
