//! What the lab builds, derived from a policy snapshot and the fixed Internet-side
//! addresses of LAB.md: namespace and interface names, MACs, addresses, routes, which
//! VM serves which ports, and from where each VIP is tried.
//!
//! Pure: no commands run here, so every name and address can be checked in a unit
//! test. It must never invent a MAC or a CA the policy does not declare (the host
//! simulator and the LB only know the policy), and never make an interface name longer
//! than the kernel's 15 characters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::policy::{MacAddr, Snapshot, Vsid};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// The Internet client's addresses and its router's on the client link (LAB.md).
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0x100);
pub const ROUTER_CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const ROUTER_CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);

/// One address with its prefix length and the next hop for everything else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Addr {
    pub addr: IpAddr,
    pub len: u8,
    pub gateway: Option<IpAddr>,
}

impl Addr {
    /// `ADDRESS/LEN` as `ip addr add` takes it.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.addr, self.len)
    }
}

/// A VM: one MAC in one VSID, with its CAs (at most one per family here).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Vm {
    /// `blue-5`: tenant and the last part of its CA; what its HTTP server answers.
    pub name: String,
    pub tenant: String,
    pub vsid: Vsid,
    pub mac: MacAddr,
    /// Index into [`Topology::hosts`].
    pub host: usize,
    pub netns: String,
    /// The veth end in the host namespace, handed to `nvlb host --vm`.
    pub host_if: String,
    pub v4: Option<Addr>,
    pub v6: Option<Addr>,
    /// TCP ports its server listens on: every DIP port a pool names for it.
    pub ports: BTreeSet<u16>,
}

impl Vm {
    pub fn ca(&self, v6: bool) -> Option<IpAddr> {
        if v6 { self.v6 } else { self.v4 }.map(|a| a.addr)
    }
}

/// A Hyper-V host: its namespace, its PA-network veth and the bridge port it hangs on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HostNode {
    pub name: String,
    pub netns: String,
    pub mac: MacAddr,
    /// Its veth end on the PA bridge, `pa-h1`...
    pub bridge_port: String,
}

/// Where a VIP is tried from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    /// The Internet client (public VIPs).
    Client,
    /// A VM of the VIP's own VSID (CA VIPs), by index into [`Topology::vms`].
    Vm(usize),
}

/// One backend of a VIP as the lab sees it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DipPlan {
    /// Its index in the pool's DIPs: what the pool's Maglev table answers.
    pub index: usize,
    pub ca: IpAddr,
    pub port: u16,
    pub weight: u32,
    /// The VM holding this CA in the DIP's VSID, by index into [`Topology::vms`].
    pub vm: usize,
}

/// A VIP pool and how the lab exercises it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PoolPlan {
    /// Its index in the snapshot's pools: the pool whose Maglev table picks its DIPs.
    pub index: usize,
    pub name: String,
    pub tenant: String,
    pub public: bool,
    pub address: IpAddr,
    pub port: u16,
    pub dips: Vec<DipPlan>,
    /// `None` when no namespace of the lab can reach it (e.g. a CA VIP whose VSID has
    /// no VM of its family, or a public VIP of a family the LB has no address for).
    pub source: Option<Source>,
}

impl PoolPlan {
    /// `http://ADDRESS:PORT` with brackets around IPv6.
    pub fn base_url(&self) -> String {
        match self.address {
            IpAddr::V4(a) => format!("http://{a}:{}", self.port),
            IpAddr::V6(a) => format!("http://[{a}]:{}", self.port),
        }
    }
}

/// Names of the fixed namespaces and interfaces.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Topology {
    pub prefix: String,
    pub client: String,
    pub router: String,
    pub lb: String,
    pub pa: String,
    pub hosts: Vec<HostNode>,
    pub vms: Vec<Vm>,
    pub pools: Vec<PoolPlan>,
    pub external_mac: MacAddr,
    pub gateway_mac: MacAddr,
    pub provider_mac: MacAddr,
    pub provider_mtu: u16,
    /// The router's addresses on the LB link, one per family the LB has.
    pub router_lb: Vec<Addr>,
    /// Host routes in the router: each public VIP via the LB's external address.
    pub vip_routes: Vec<(IpAddr, IpAddr)>,
}

impl Topology {
    /// Every namespace the lab creates, fixed ones first.
    pub fn namespaces(&self) -> Vec<&str> {
        let mut v = vec![
            self.client.as_str(),
            self.router.as_str(),
            self.lb.as_str(),
            self.pa.as_str(),
        ];
        v.extend(self.hosts.iter().map(|h| h.netns.as_str()));
        v.extend(self.vms.iter().map(|m| m.netns.as_str()));
        v
    }

    /// The namespace a pool is tried from.
    pub fn source_netns(&self, s: Source) -> &str {
        match s {
            Source::Client => &self.client,
            Source::Vm(i) => self.vms.get(i).map(|v| v.netns.as_str()).unwrap_or(""),
        }
    }

    pub fn vms_on(&self, host: usize) -> impl Iterator<Item = &Vm> {
        self.vms.iter().filter(move |v| v.host == host)
    }

    /// Derives the whole lab from the policy. `prefix` must already be valid
    /// (see [`valid_prefix`]).
    pub fn from_snapshot(s: &Snapshot, prefix: &str) -> Topology {
        let ns = |name: &str| format!("{prefix}{}", sanitize(name));
        let hosts: Vec<HostNode> = s
            .hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| HostNode {
                name: h.name.clone(),
                netns: ns(&h.name),
                mac: h.mac,
                bridge_port: format!("pa-h{}", i + 1),
            })
            .collect();
        let vms = derive_vms(s, prefix);
        let pools = derive_pools(s, &vms);
        let ext = &s.balancer().external;
        let mut router_lb = Vec::new();
        let mut vip_routes = Vec::new();
        for lb_addr in [
            ext.address_v4().map(IpAddr::V4),
            ext.address_v6().map(IpAddr::V6),
        ]
        .into_iter()
        .flatten()
        {
            let (addr, len) = neighbour_on_link(lb_addr);
            router_lb.push(Addr {
                addr,
                len,
                gateway: None,
            });
            for p in s.pools().iter().filter(|p| p.is_public()) {
                if p.address.is_ipv6() == lb_addr.is_ipv6()
                    && !vip_routes.iter().any(|(v, _)| *v == p.address)
                {
                    vip_routes.push((p.address, lb_addr));
                }
            }
        }
        let mut vms = vms;
        for p in &pools {
            for d in &p.dips {
                if let Some(vm) = vms.get_mut(d.vm) {
                    vm.ports.insert(d.port);
                }
            }
        }
        for vm in &mut vms {
            if vm.ports.is_empty() {
                vm.ports.insert(80);
            }
        }
        Topology {
            prefix: prefix.to_string(),
            client: format!("{prefix}client"),
            router: format!("{prefix}router"),
            lb: format!("{prefix}lb"),
            pa: format!("{prefix}pa"),
            hosts,
            vms,
            pools,
            external_mac: ext.mac,
            gateway_mac: ext.gateway_mac.unwrap_or(MacAddr([2, 0, 0, 0, 1, 1])),
            provider_mac: s.balancer().provider.mac,
            provider_mtu: s.balancer().provider.mtu,
            router_lb,
            vip_routes,
        }
    }
}

/// A namespace prefix the lab accepts: 2 to 16 characters of `[a-z0-9-]`, starting with
/// a letter and ending with `-`, so that it cannot match every namespace (`--down`
/// deletes all that start with it) and names stay readable.
pub fn valid_prefix(p: &str) -> bool {
    (2..=16).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.ends_with('-')
        && p.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Policy names become namespace-name parts: anything but `[A-Za-z0-9_.-]` is `-`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The router's address on the LB's link: `.1` (or `::1`) of the LB's /24 (/64), or
/// `.254` (`::fe`) when the LB itself is `.1`.
fn neighbour_on_link(lb: IpAddr) -> (IpAddr, u8) {
    match lb {
        IpAddr::V4(a) => {
            let o = a.octets();
            let last = if o[3] == 1 { 254 } else { 1 };
            (IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], last)), 24)
        }
        IpAddr::V6(a) => {
            let network = u128::from(a) & !u128::from(u64::MAX);
            let last = if u128::from(a) == network | 1 {
                0xfe
            } else {
                1
            };
            (IpAddr::V6(Ipv6Addr::from(network | last)), 64)
        }
    }
}

/// The first host address of a prefix: the gateway every VM routes through (no VM
/// owns it; the host simulator answers for it with the subnet's LB MAC).
fn first_host(network: IpAddr) -> IpAddr {
    match network {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// What follows the tenant in a VM's name: the IPv4 CA's last octet, else the IPv6
/// CA's last group in hex.
fn short_id(v4: Option<IpAddr>, v6: Option<IpAddr>) -> String {
    match (v4, v6) {
        (Some(IpAddr::V4(a)), _) => a.octets()[3].to_string(),
        (_, Some(IpAddr::V6(a))) => format!("{:x}", a.segments()[7]),
        _ => "x".to_string(),
    }
}

/// A VM's host index and its CAs (v4, v6) while lookup records are gathered.
type VmAddrs = (usize, Option<Addr>, Option<Addr>);

/// One VM per (VSID, MAC) among the lookup records, in declaration order.
fn derive_vms(s: &Snapshot, prefix: &str) -> Vec<Vm> {
    let mut order: Vec<(Vsid, MacAddr)> = Vec::new();
    let mut cas: BTreeMap<(Vsid, MacAddr), VmAddrs> = BTreeMap::new();
    for rec in s.lookups() {
        let key = (rec.vsid, rec.mac);
        if !cas.contains_key(&key) {
            order.push(key);
        }
        let entry = cas
            .entry(key)
            .or_insert((usize::from(rec.host), None, None));
        let Some(subnet) = s.subnet(rec.vsid) else {
            continue;
        };
        let Some(prefix) = subnet.prefixes.iter().find(|p| p.contains(rec.ca)) else {
            continue;
        };
        let addr = Addr {
            addr: rec.ca,
            len: prefix.prefix_len(),
            gateway: Some(first_host(prefix.addr())),
        };
        let slot = if rec.ca.is_ipv6() {
            &mut entry.2
        } else {
            &mut entry.1
        };
        if slot.is_none() {
            *slot = Some(addr);
        }
    }
    let mut vms: Vec<Vm> = Vec::new();
    let mut names = BTreeSet::new();
    let mut ifnames: BTreeSet<(usize, String)> = BTreeSet::new();
    for (i, key) in order.iter().enumerate() {
        let Some(&(host, v4, v6)) = cas.get(key) else {
            continue;
        };
        let tenant = s
            .subnet(key.0)
            .and_then(|sub| s.tenant(sub.tenant))
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "vm".to_string());
        let id = short_id(v4.map(|a| a.addr), v6.map(|a| a.addr));
        let mut name = format!("{}-{id}", sanitize(&tenant));
        if names.contains(&name) {
            name = format!("{name}-{}", key.0);
        }
        names.insert(name.clone());
        let initial = tenant
            .chars()
            .find(|c| c.is_ascii_alphanumeric())
            .unwrap_or('v')
            .to_ascii_lowercase();
        let mut host_if = format!("vm-{initial}{id}");
        if host_if.len() > IFNAME_MAX || ifnames.contains(&(host, host_if.clone())) {
            host_if = format!("vm-{i}");
        }
        ifnames.insert((host, host_if.clone()));
        vms.push(Vm {
            netns: format!("{prefix}{name}"),
            name,
            tenant,
            vsid: key.0,
            mac: key.1,
            host,
            host_if,
            v4,
            v6,
            ports: BTreeSet::new(),
        });
    }
    vms
}

fn derive_pools(s: &Snapshot, vms: &[Vm]) -> Vec<PoolPlan> {
    let ext = &s.balancer().external;
    s.pools()
        .iter()
        .enumerate()
        // An all-ports rule has no port of its own to try (its tests pick ports).
        .filter(|(_, p)| !p.rule.all_ports)
        .map(|(index, p)| {
            let v6 = p.address.is_ipv6();
            let dips = p
                .dips
                .iter()
                .enumerate()
                .filter_map(|(index, d)| {
                    let vm = vms.iter().position(|v| {
                        v.vsid == d.vsid && v.mac == d.mac && v.ca(v6) == Some(d.ca)
                    })?;
                    Some(DipPlan {
                        index,
                        ca: d.ca,
                        port: d.port,
                        weight: d.weight,
                        vm,
                    })
                })
                .collect::<Vec<_>>();
            let source = if p.is_public() {
                let reachable = if v6 {
                    ext.address_v6().is_some()
                } else {
                    ext.address_v4().is_some()
                };
                reachable.then_some(Source::Client)
            } else {
                vms.iter()
                    .enumerate()
                    .find(|(i, v)| {
                        v.vsid == p.frontend
                            && v.ca(v6).is_some()
                            && !dips.iter().any(|d| d.vm == *i)
                    })
                    .map(|(i, _)| Source::Vm(i))
            };
            PoolPlan {
                index,
                name: p.name.clone(),
                tenant: s
                    .tenant(p.tenant)
                    .map(|t| t.name.clone())
                    .unwrap_or_default(),
                public: p.is_public(),
                address: p.address,
                port: p.port,
                dips,
                source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../lb-config/example.toml");

    fn topo() -> Topology {
        let s = Snapshot::from_toml(EXAMPLE, "example.toml").expect("example loads");
        Topology::from_snapshot(&s, "nvlab-")
    }

    fn vm<'a>(t: &'a Topology, name: &str) -> &'a Vm {
        t.vms
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no VM {name}: {:?}", t.vms))
    }

    #[test]
    fn example_has_the_guides_vms_on_their_hosts() {
        let t = topo();
        let names: Vec<&str> = t.vms.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "blue-5", "blue-6", "blue-7", "blue-8", "blue-21", "blue-22", "red-5", "red-6",
                "red-21"
            ]
        );
        let b5 = vm(&t, "blue-5");
        assert_eq!(b5.netns, "nvlab-blue-5");
        assert_eq!(b5.host_if, "vm-b5");
        assert_eq!(t.hosts[b5.host].name, "host1");
        assert_eq!(b5.mac.to_string(), "00:1d:d8:b7:1c:01");
        assert_eq!(b5.v4.unwrap().cidr(), "10.0.0.5/24");
        assert_eq!(b5.v4.unwrap().gateway, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(b5.v6.unwrap().cidr(), "fd00:0:0:1::5/64");
        assert_eq!(
            b5.v6.unwrap().gateway,
            Some("fd00:0:0:1::1".parse().unwrap())
        );
        assert_eq!(b5.ports, BTreeSet::from([80]));
        let b21 = vm(&t, "blue-21");
        assert_eq!(t.hosts[b21.host].name, "host4");
        assert_eq!(b21.ports, BTreeSet::from([8080]));
        assert_eq!(b21.v4.unwrap().gateway, Some("10.0.1.1".parse().unwrap()));
        let r5 = vm(&t, "red-5");
        assert_eq!(
            (r5.host_if.as_str(), t.hosts[r5.host].name.as_str()),
            ("vm-r5", "host2")
        );
        assert!(vm(&t, "red-21").v6.is_none());
        // Every host-side interface is unique on its host and fits the kernel's limit.
        let mut seen = BTreeSet::new();
        for v in &t.vms {
            assert!(v.host_if.len() <= IFNAME_MAX);
            assert!(seen.insert((v.host, v.host_if.clone())), "{v:?}");
        }
    }

    #[test]
    fn hosts_and_fixed_links() {
        let t = topo();
        let h: Vec<(&str, &str, String)> = t
            .hosts
            .iter()
            .map(|h| (h.netns.as_str(), h.bridge_port.as_str(), h.mac.to_string()))
            .collect();
        assert_eq!(
            h[0],
            ("nvlab-host1", "pa-h1", "02:00:00:00:06:11".to_string())
        );
        assert_eq!(h.len(), 5);
        assert_eq!(t.gateway_mac.to_string(), "02:00:00:00:01:01");
        let r: Vec<String> = t.router_lb.iter().map(Addr::cidr).collect();
        assert_eq!(r, ["198.51.100.1/24", "2001:db8:100::1/64"]);
        let routes: Vec<String> = t
            .vip_routes
            .iter()
            .map(|(v, via)| format!("{v} via {via}"))
            .collect();
        assert_eq!(
            routes,
            [
                "203.0.113.10 via 198.51.100.10",
                "203.0.113.20 via 198.51.100.10",
                "2001:db8:203::10 via 2001:db8:100::10",
                "2001:db8:203::20 via 2001:db8:100::10"
            ]
        );
        assert_eq!(t.namespaces().len(), 4 + 5 + 9);
    }

    #[test]
    fn pools_are_tried_from_the_right_place() {
        let t = topo();
        let pool = |n: &str| t.pools.iter().find(|p| p.name == n).unwrap();
        let web = pool("blue-web");
        assert_eq!(web.source, Some(Source::Client));
        assert_eq!(web.base_url(), "http://203.0.113.10:80");
        let dip_vms: Vec<&str> = web.dips.iter().map(|d| t.vms[d.vm].name.as_str()).collect();
        assert_eq!(dip_vms, ["blue-5", "blue-6", "blue-7", "blue-8"]);
        assert_eq!(web.dips[3].weight, 2);
        let red6 = pool("red-web6");
        assert_eq!(red6.base_url(), "http://[2001:db8:203::20]:80");
        let red_vms: Vec<&str> = red6
            .dips
            .iter()
            .map(|d| t.vms[d.vm].name.as_str())
            .collect();
        assert_eq!(red_vms, ["red-5", "red-6"]);
        // CA VIPs: from a tier-1 VM of the frontend VSID, over tier-2 DIPs.
        for (name, from, dips) in [
            ("blue-vip1", "blue-5", vec!["blue-21", "blue-22"]),
            ("blue-vip1-v6", "blue-5", vec!["blue-21", "blue-22"]),
            ("red-vip1", "red-5", vec!["red-21"]),
        ] {
            let p = pool(name);
            let Some(Source::Vm(i)) = p.source else {
                panic!("{name}: {:?}", p.source)
            };
            assert_eq!(t.vms[i].name, from, "{name}");
            let got: Vec<&str> = p.dips.iter().map(|d| t.vms[d.vm].name.as_str()).collect();
            assert_eq!(got, dips, "{name}");
            assert_eq!(p.port, 8080);
        }
    }

    #[test]
    fn prefixes() {
        for ok in ["nvlab-", "nvt12345-", "ab-"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in [
            "",
            "-",
            "nvlab",
            "NV-",
            "1a-",
            "a b-",
            "nv/x-",
            "abcdefghijklmnopq-",
        ] {
            assert!(!valid_prefix(bad), "{bad}");
        }
        assert_eq!(sanitize("host 1/x"), "host-1-x");
    }

    #[test]
    fn router_address_avoids_the_lbs_own() {
        assert_eq!(
            neighbour_on_link("198.51.100.1".parse().unwrap()).0,
            "198.51.100.254".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            neighbour_on_link("2001:db8::1".parse().unwrap()).0,
            "2001:db8::fe".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            neighbour_on_link("2001:db8::10".parse().unwrap()),
            ("2001:db8::1".parse().unwrap(), 64)
        );
    }
}
