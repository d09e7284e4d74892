//! Creating the lab's namespaces, veths, bridge, addresses and routes from a
//! [`Topology`], with `ip`, `sysctl` and `ethtool` run as a user would.
//!
//! It must never touch a namespace outside the topology (every command names one of
//! its namespaces with `ip -n` or `ip netns exec`) and never give the LB's or a host's
//! PA-network interface an IP address or IPv6: their userspace owners answer ARP/ND,
//! and a kernel that held those addresses would answer GRE with ICMP errors.

use std::net::IpAddr;

use super::Error;
use super::cmd::{exec_in, ip, ip_in, sysctl_in};
use super::topology::{Addr, Topology};

/// Sysctls that keep a kernel silent on links a userspace program owns.
const NO_IPV6: [&str; 2] = [
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
];

/// Builds every namespace and link of `t`. `ethtool` says whether `ethtool` is
/// installed (else checksum offload stays on and the peers must complete checksums).
pub fn build(t: &Topology, ethtool: bool) -> Result<(), Error> {
    for ns in t.namespaces() {
        ip(&["netns", "add", ns])?;
        ip_in(ns, &["link", "set", "lo", "up"])?;
    }
    // The LB, the PA bridge and the hosts: userspace owns every frame, the kernel
    // must send nothing (no DAD, MLD, RS).
    sysctl_in(&t.lb, &NO_IPV6)?;
    sysctl_in(&t.pa, &NO_IPV6)?;
    for h in &t.hosts {
        sysctl_in(&h.netns, &NO_IPV6)?;
    }
    sysctl_in(
        &t.router,
        &["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"],
    )?;
    for vm in &t.vms {
        // The VMs' kernels are the real TCP peers; no router advertisements to learn.
        sysctl_in(
            &vm.netns,
            &[
                "net.ipv6.conf.all.accept_ra=0",
                "net.ipv6.conf.default.accept_ra=0",
            ],
        )?;
    }
    build_internet_side(t)?;
    build_pa_network(t)?;
    for vm in &t.vms {
        build_vm(t, vm)?;
    }
    if ethtool {
        // Kernel senders whose frames a userspace program reads must compute complete
        // checksums: the client (through the router, to the LB) and every VM.
        exec_in(&t.client, "ethtool", &["-K", "cl0", "tx", "off"])?;
        exec_in(&t.router, "ethtool", &["-K", "rt-lb", "tx", "off"])?;
        for vm in &t.vms {
            exec_in(&vm.netns, "ethtool", &["-K", "eth0", "tx", "off"])?;
        }
    }
    Ok(())
}

pub(super) fn add_addr(ns: &str, dev: &str, a: &Addr) -> Result<(), Error> {
    let cidr = a.cidr();
    let mut args = vec!["addr", "add", cidr.as_str(), "dev", dev];
    if a.addr.is_ipv6() {
        // No duplicate address detection: the address is usable at once, and nothing
        // else in the lab can hold it.
        args.push("nodad");
    }
    ip_in(ns, &args).map(drop)
}

pub(super) fn add_default_route(ns: &str, gateway: IpAddr) -> Result<(), Error> {
    let family = if gateway.is_ipv6() { "-6" } else { "-4" };
    let gw = gateway.to_string();
    ip_in(ns, &[family, "route", "add", "default", "via", &gw]).map(drop)
}

fn build_internet_side(t: &Topology) -> Result<(), Error> {
    ip_in(
        &t.client,
        &[
            "link", "add", "cl0", "type", "veth", "peer", "name", "rt-cl", "netns", &t.router,
        ],
    )?;
    let gw = t.gateway_mac.to_string();
    let ext = t.external_mac.to_string();
    let queues = super::LB_WORKERS.to_string();
    ip_in(
        &t.router,
        &[
            "link",
            "add",
            "rt-lb",
            "address",
            &gw,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "type",
            "veth",
            "peer",
            "name",
            "lb-ext",
            "address",
            &ext,
            "netns",
            &t.lb,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
        ],
    )?;
    use super::topology::{CLIENT_V4, CLIENT_V6, ROUTER_CLIENT_V4, ROUTER_CLIENT_V6};
    let on_link = |addr: IpAddr, len| Addr {
        addr,
        len,
        gateway: None,
    };
    add_addr(&t.client, "cl0", &on_link(CLIENT_V4.into(), 24))?;
    add_addr(&t.client, "cl0", &on_link(CLIENT_V6.into(), 64))?;
    add_addr(&t.router, "rt-cl", &on_link(ROUTER_CLIENT_V4.into(), 24))?;
    add_addr(&t.router, "rt-cl", &on_link(ROUTER_CLIENT_V6.into(), 64))?;
    for a in &t.router_lb {
        add_addr(&t.router, "rt-lb", a)?;
    }
    ip_in(&t.client, &["link", "set", "cl0", "up"])?;
    ip_in(&t.router, &["link", "set", "rt-cl", "up"])?;
    ip_in(&t.router, &["link", "set", "rt-lb", "up"])?;
    ip_in(&t.lb, &["link", "set", "lb-ext", "up"])?;
    add_default_route(&t.client, ROUTER_CLIENT_V4.into())?;
    add_default_route(&t.client, ROUTER_CLIENT_V6.into())?;
    for (vip, via) in &t.vip_routes {
        let (vip, via) = (vip.to_string(), via.to_string());
        ip_in(&t.router, &["route", "add", &vip, "via", &via])?;
    }
    Ok(())
}

fn build_pa_network(t: &Topology) -> Result<(), Error> {
    let mtu = t.provider_mtu.to_string();
    ip_in(
        &t.pa,
        &[
            "link",
            "add",
            "br-pa",
            "mtu",
            &mtu,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ],
    )?;
    let pmac = t.provider_mac.to_string();
    let queues = super::LB_WORKERS.to_string();
    ip_in(
        &t.lb,
        &[
            "link",
            "add",
            "lb-pa",
            "address",
            &pmac,
            "mtu",
            &mtu,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "type",
            "veth",
            "peer",
            "name",
            "pa-lb",
            "mtu",
            &mtu,
            "numtxqueues",
            &queues,
            "numrxqueues",
            &queues,
            "netns",
            &t.pa,
        ],
    )?;
    ip_in(&t.lb, &["link", "set", "lb-pa", "up"])?;
    bridge_hosts(t, "pa-lb", &mtu)
}

/// Every host's PA leg (`pa0`, MAC from policy) on the PA bridge `br-pa`, with `uplink`
/// (the LB's or the router's end, already in the PA namespace) as one more port. Shared
/// by the single-LB lab and the scale-out lab, whose hosts hang on the bridge alike.
pub(super) fn bridge_hosts(t: &Topology, uplink: &str, mtu: &str) -> Result<(), Error> {
    let mut ports = vec![uplink.to_string()];
    for h in &t.hosts {
        let mac = h.mac.to_string();
        ip_in(
            &h.netns,
            &[
                "link",
                "add",
                "pa0",
                "address",
                &mac,
                "mtu",
                mtu,
                "type",
                "veth",
                "peer",
                "name",
                &h.bridge_port,
                "mtu",
                mtu,
                "netns",
                &t.pa,
            ],
        )?;
        ip_in(&h.netns, &["link", "set", "pa0", "up"])?;
        ports.push(h.bridge_port.clone());
    }
    for p in &ports {
        ip_in(&t.pa, &["link", "set", p, "master", "br-pa"])?;
        ip_in(&t.pa, &["link", "set", p, "up"])?;
    }
    ip_in(&t.pa, &["link", "set", "br-pa", "up"]).map(drop)
}

pub(super) fn build_vm(t: &Topology, vm: &super::topology::Vm) -> Result<(), Error> {
    let Some(host) = t.hosts.get(vm.host) else {
        return Ok(());
    };
    let mac = vm.mac.to_string();
    ip_in(
        &host.netns,
        &[
            "link",
            "add",
            &vm.host_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            &mac,
            "netns",
            &vm.netns,
        ],
    )?;
    ip_in(&host.netns, &["link", "set", &vm.host_if, "up"])?;
    for a in [vm.v4, vm.v6].iter().flatten() {
        add_addr(&vm.netns, "eth0", a)?;
    }
    ip_in(&vm.netns, &["link", "set", "eth0", "up"])?;
    for gw in [vm.v4, vm.v6].iter().flatten().filter_map(|a| a.gateway) {
        add_default_route(&vm.netns, gw)?;
    }
    Ok(())
}
