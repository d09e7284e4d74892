//! The lab's Internet side for outbound rules and floating-IP VIPs, derived from the
//! policy: routes in the router for outbound addresses (via the LB, as the VIPs), a
//! router leg on the PA bridge for every host `gateway_mac` (the hosts' direct path
//! to the Internet for floating-IP replies), and each floating-IP VIP on the loopback
//! of its DIPs' VMs.
//!
//! Nothing is built for a policy without outbound rules, host gateways or floating-IP
//! VIPs, so the lab of such a policy is exactly what it was. It must never touch a
//! namespace outside the topology, and never give the router's PA leg an address: it
//! only forwards, so the hosts' simulators stay the only owners of the PA addresses.

use std::net::IpAddr;

use super::Error;
use super::cmd::{exec_in, ip_in, sysctl_in};
use super::topology::Topology;
use crate::policy::{MacAddr, Snapshot};

/// What [`build`] adds, computed from the policy (pure, for tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (outbound address, the LB's external address of its family) for the router.
    pub routes: Vec<(IpAddr, IpAddr)>,
    /// Router legs on the PA bridge: (router interface, bridge port, MAC).
    pub legs: Vec<(String, String, MacAddr)>,
    /// (VM namespace, VIP) to put on that VM's loopback.
    pub loopbacks: Vec<(String, IpAddr)>,
}

impl Plan {
    pub fn new(s: &Snapshot, t: &Topology) -> Plan {
        let mut plan = Plan::default();
        let ext = &s.balancer().external;
        for rule in s.outbound_rules() {
            let is_vip = t.vip_routes.iter().any(|(v, _)| *v == rule.address);
            let via = if rule.address.is_ipv6() {
                ext.address_v6().map(IpAddr::V6)
            } else {
                ext.address_v4().map(IpAddr::V4)
            };
            if let (false, Some(via)) = (is_vip, via)
                && !plan.routes.iter().any(|(a, _)| *a == rule.address)
            {
                plan.routes.push((rule.address, via));
            }
        }
        for mac in s.hosts().iter().filter_map(|h| h.gateway_mac) {
            if plan.legs.iter().any(|(_, _, m)| *m == mac) {
                continue;
            }
            let i = plan.legs.len();
            plan.legs
                .push((format!("rt-pa{i}"), format!("pa-rt{i}"), mac));
        }
        for pool in s.pools().iter().filter(|p| p.floating_ip) {
            for dip in &pool.dips {
                let vm = t
                    .vms
                    .iter()
                    .find(|v| v.vsid == dip.vsid && v.mac == dip.mac);
                if let Some(vm) = vm
                    && !plan
                        .loopbacks
                        .iter()
                        .any(|(n, a)| *n == vm.netns && *a == pool.address)
                {
                    plan.loopbacks.push((vm.netns.clone(), pool.address));
                }
            }
        }
        plan
    }
}

/// Builds the plan of `s` into the namespaces of `t` (after `netns::build`).
pub fn build(s: &Snapshot, t: &Topology) -> Result<(), Error> {
    let plan = Plan::new(s, t);
    for (addr, via) in &plan.routes {
        let (a, v) = (addr.to_string(), via.to_string());
        ip_in(&t.router, &["route", "add", &a, "via", &v])?;
    }
    if !plan.legs.is_empty() {
        // Replies from a VIP arrive on the PA leg while the VIP is routed via the LB:
        // strict reverse-path filtering would drop exactly the traffic this leg is for.
        sysctl_in(&t.router, &["net.ipv4.conf.all.rp_filter=0"])?;
    }
    for (rt, br, mac) in &plan.legs {
        let m = mac.to_string();
        // The PA MTU, like every other port of the bridge (it floods NVGRE frames here
        // too while it learns).
        let mtu = t.provider_mtu.to_string();
        ip_in(
            &t.router,
            &[
                "link", "add", rt, "address", &m, "mtu", &mtu, "type", "veth", "peer", "name", br,
                "mtu", &mtu, "netns", &t.pa,
            ],
        )?;
        sysctl_in(
            &t.router,
            &[
                &format!("net.ipv4.conf.{rt}.rp_filter=0"),
                &format!("net.ipv6.conf.{rt}.disable_ipv6=1"),
            ],
        )?;
        ip_in(&t.router, &["link", "set", rt, "up"])?;
        ip_in(&t.pa, &["link", "set", br, "master", "br-pa"])?;
        ip_in(&t.pa, &["link", "set", br, "up"])?;
        // The router only receives on this leg, so the bridge would never learn its
        // MAC and would flood every direct reply to the LB's port too: a switch of a
        // real PA network knows its gateway.
        exec_in(
            &t.pa,
            "bridge",
            &["fdb", "add", &m, "dev", br, "master", "static"],
        )?;
    }
    for (ns, vip) in &plan.loopbacks {
        let cidr = if vip.is_ipv6() {
            format!("{vip}/128")
        } else {
            format!("{vip}/32")
        };
        ip_in(ns, &["addr", "add", &cidr, "dev", "lo"])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_needs_nothing_and_a_dsr_policy_gets_legs_routes_loopbacks() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../lb-config/example.toml"
        ))
        .unwrap();
        let s = Snapshot::from_toml(&text, "example.toml").unwrap();
        let t = Topology::from_snapshot(&s, "x-");
        assert_eq!(Plan::new(&s, &t), Plan::default());

        let text = text.replace(
            "mac = \"02:00:00:00:06:12\"\n",
            "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
        ) + "\n[[tenant.vip]]\nname = \"red-dsr\"\nfrontend = \"public\"\naddress = \"203.0.113.21\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001\nfloating_ip = true\ndips = [{ ca = \"10.0.0.5\" }]\n\n[[tenant.outbound]]\nname = \"red-out\"\naddress = \"203.0.113.30\"\npools = [\"red-web\"]\n";
        let s = Snapshot::from_toml(&text, "t.toml").unwrap();
        let t = Topology::from_snapshot(&s, "x-");
        let p = Plan::new(&s, &t);
        assert_eq!(
            p.routes,
            vec![(
                "203.0.113.30".parse().unwrap(),
                "198.51.100.10".parse().unwrap()
            )]
        );
        assert_eq!(p.legs.len(), 1);
        assert_eq!(p.legs[0].2.to_string(), "02:00:00:00:06:01");
        assert_eq!(
            p.loopbacks,
            vec![("x-red-5".to_string(), "203.0.113.21".parse().unwrap())]
        );
    }
}
