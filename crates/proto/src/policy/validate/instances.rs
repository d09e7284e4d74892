//! Pass 5: `[[balancer.instance]]`, the own identities of the instances of a scale-out
//! group (docs/scale-out.md). Runs after subnets and lookup records are known, because
//! an instance's SNAT CAs live in declared VSIDs and must not be anybody's CA.
//!
//! It must never let two instances (or an instance and a host, or the shared provider
//! port) claim one address: the replies routed to that address would reach only one
//! of them.

use std::net::IpAddr;

use super::super::config::{RawBalancer, RawInstance, S};
use super::super::ids::Vsid;
use super::super::model::{Balancer, Host, Instance, SnatRange};
use super::{Validator, family, field};

impl Validator<'_> {
    pub(super) fn instances(
        &mut self,
        raw: &S<RawBalancer>,
        balancer: &Balancer,
        hosts: &[Host],
    ) -> Vec<Instance> {
        let mut out: Vec<Instance> = Vec::new();
        for (i, r) in raw.get_ref().instance.iter().enumerate() {
            let base = format!("balancer.instance[{i}]");
            if let Some(inst) = self.instance(r, &base, balancer, hosts, &out) {
                out.push(inst);
            }
        }
        out
    }

    fn instance(
        &mut self,
        r: &S<RawInstance>,
        base: &str,
        balancer: &Balancer,
        hosts: &[Host],
        earlier: &[Instance],
    ) -> Option<Instance> {
        let raw = r.get_ref();
        let name = self.name(&raw.name, field(base, "name"));
        if earlier.iter().any(|x| x.name == name) {
            self.error(
                raw.name.span(),
                field(base, "name"),
                format!("instance {name:?} is declared twice"),
            );
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        for (i, a) in raw.provider_addresses.get_ref().iter().enumerate() {
            let path = format!("{base}.provider_addresses[{i}]");
            let Some(ip) = self.ip(a, path.clone()) else {
                continue;
            };
            let taken = if balancer.provider.owns(ip) {
                Some("the shared provider port".to_string())
            } else if let Some(h) = hosts.iter().find(|h| h.pa(ip.is_ipv6()) == Some(ip)) {
                Some(format!("host `{}`", h.name))
            } else {
                earlier
                    .iter()
                    .find(|x| x.provider_addresses.contains(&ip))
                    .map(|x| format!("instance `{}`", x.name))
            };
            if let Some(owner) = taken {
                self.error(a.span(), path, format!("{ip} is already the PA of {owner}"));
            } else if addresses.iter().any(|x| x.is_ipv6() == ip.is_ipv6()) {
                self.error(
                    a.span(),
                    path,
                    format!("a second {} PA (one per family)", family(ip)),
                );
            } else if !balancer
                .provider
                .addresses
                .iter()
                .any(|x| x.is_ipv6() == ip.is_ipv6())
            {
                self.error(
                    a.span(),
                    path,
                    format!(
                        "the shared provider port has no {} PA, so hosts would not send to this one",
                        family(ip)
                    ),
                );
            } else {
                addresses.push(ip);
            }
        }
        if addresses.is_empty() {
            self.error(
                raw.provider_addresses.span(),
                field(base, "provider_addresses"),
                "an instance needs its own PA (replies to its SNAT CAs and probes come back there)",
            );
        }
        let mut snat: Vec<(Vsid, SnatRange)> = Vec::new();
        for (i, n) in raw.snat.iter().enumerate() {
            let path = format!("{base}.snat[{i}]");
            let nr = n.get_ref();
            let vsid = self.vsid(&nr.vsid, field(&path, "vsid"));
            let ca = self.ip(&nr.ca, field(&path, "ca"));
            let ports = self.port_range(&nr.ports, field(&path, "ports"));
            let (Some(vsid), Some(ca), Some((first_port, last_port))) = (vsid, ca, ports) else {
                continue;
            };
            let Some((_, subnet)) = self.subnet_of(vsid) else {
                self.error(
                    nr.vsid.span(),
                    field(&path, "vsid"),
                    format!("VSID {vsid} is not declared"),
                );
                continue;
            };
            let problem = if !subnet.prefixes.iter().any(|p| p.contains(ca)) {
                Some(format!("{ca} is outside the prefixes of VSID {vsid}"))
            } else if subnet.snat.iter().any(|s| s.ca == ca) {
                Some(format!(
                    "{ca} is the subnet's shared SNAT CA in VSID {vsid}"
                ))
            } else if self.lookup_lines.contains_key(&(vsid, ca)) {
                Some(format!(
                    "{ca} is a VM's CA in VSID {vsid} (a lookup record)"
                ))
            } else if let Some(x) = earlier
                .iter()
                .find(|x| x.snat.iter().any(|(v, s)| *v == vsid && s.ca == ca))
            {
                Some(format!(
                    "{ca} is already a SNAT CA of instance `{}` in VSID {vsid}",
                    x.name
                ))
            } else if snat
                .iter()
                .any(|(v, s)| *v == vsid && s.ca.is_ipv6() == ca.is_ipv6())
            {
                Some(format!(
                    "a second {} SNAT CA in VSID {vsid} (one per family)",
                    family(ca)
                ))
            } else if self.health_settings.probe_first <= last_port
                && first_port <= self.health_settings.probe_last
            {
                Some(format!(
                    "ports {first_port}-{last_port} overlap balancer.health.probe_ports"
                ))
            } else {
                None
            };
            if let Some(msg) = problem {
                self.error(nr.ca.span(), field(&path, "ca"), msg);
                continue;
            }
            snat.push((
                vsid,
                SnatRange {
                    ca,
                    first_port,
                    last_port,
                },
            ));
        }
        Some(Instance {
            name,
            provider_addresses: addresses,
            snat,
        })
    }
}
