//! Passes 2 and 3: tenants, routing domains, virtual subnets with the balancer's SNAT
//! CAs, then the lookup records that place each CA on a host.

use std::net::IpAddr;

use super::super::config::{RawSubnet, RawTenant, S};
use super::super::ids::{TenantId, Vsid};
use super::super::model::{LookupRecord, RoutingDomain, SnatRange, Tenant, VirtualSubnet};
use super::super::prefix::IpPrefix;
use super::{Map, SubnetMeta, Validator, family, field};
use crate::wire::MacAddr;

impl Validator<'_> {
    pub(super) fn subnets(&mut self, raw: &[S<RawTenant>]) {
        let mut tenant_lines: Map<String, usize> = Map::default();
        for (ti, t) in raw.iter().enumerate() {
            let base = format!("tenant[{ti}]");
            let Ok(tenant) = TenantId::try_from(ti) else {
                self.error(t.span(), base, "more than 65536 tenants");
                break;
            };
            let r = t.get_ref();
            let name = self.name(&r.name, field(&base, "name"));
            if let Some(line) = tenant_lines.get(&name) {
                let msg = format!("tenant `{name}` is already declared at line {line}");
                self.error(r.name.span(), field(&base, "name"), msg);
            } else {
                tenant_lines.insert(name.clone(), self.line(t.span()));
            }
            self.tenants.push(Tenant { name, id: tenant });
            let mut rd_lines: Map<String, usize> = Map::default();
            for (ri, rd) in r.routing_domain.iter().enumerate() {
                let rd_base = format!("{base}.routing_domain[{ri}]");
                let rr = rd.get_ref();
                let rd_name = self.name(&rr.name, field(&rd_base, "name"));
                if let Some(line) = rd_lines.get(&rd_name) {
                    let msg =
                        format!("routing domain `{rd_name}` is already declared at line {line}");
                    self.error(rr.name.span(), field(&rd_base, "name"), msg);
                } else {
                    rd_lines.insert(rd_name.clone(), self.line(rd.span()));
                }
                let Ok(rd_index) = u32::try_from(self.routing_domains.len()) else {
                    break;
                };
                self.routing_domains.push(RoutingDomain {
                    name: rd_name,
                    tenant,
                });
                for (si, s) in rr.subnet.iter().enumerate() {
                    let path = format!("{rd_base}.subnet[{si}]");
                    self.subnet(s, path, tenant, rd_index);
                }
            }
        }
        self.check_prefix_overlaps();
    }

    fn subnet(&mut self, s: &S<RawSubnet>, base: String, tenant: TenantId, rd: u32) {
        let r = s.get_ref();
        let vsid = self.vsid(&r.vsid, field(&base, "vsid"));
        let mut prefixes = Vec::new();
        let mut prefix_spans = Vec::new();
        if r.prefixes.get_ref().is_empty() {
            self.error(
                r.prefixes.span(),
                field(&base, "prefixes"),
                "a virtual subnet needs at least one prefix",
            );
        }
        for (i, p) in r.prefixes.get_ref().iter().enumerate() {
            match p.get_ref().trim().parse::<IpPrefix>() {
                Ok(prefix) => {
                    prefixes.push(prefix);
                    prefix_spans.push((p.span(), i));
                }
                Err(e) => {
                    let msg = format!("`{}` is not a prefix: {e}", p.get_ref());
                    self.error(p.span(), format!("{base}.prefixes[{i}]"), msg);
                }
            }
        }
        let lb_mac = self
            .mac(&r.lb_mac, field(&base, "lb_mac"))
            .unwrap_or(MacAddr([0; 6]));
        let mut snat: Vec<SnatRange> = Vec::new();
        let mut snat_ports: Vec<(core::ops::Range<usize>, String)> = Vec::new();
        for (i, n) in r.snat.iter().enumerate() {
            let path = format!("{base}.snat[{i}]");
            let nr = n.get_ref();
            let ca = self.ip(&nr.ca, field(&path, "ca"));
            let ports = self.port_range(&nr.ports, field(&path, "ports"));
            let (Some(ca), Some((first_port, last_port))) = (ca, ports) else {
                continue;
            };
            if !prefixes.is_empty() && !prefixes.iter().any(|p| p.contains(ca)) {
                let msg = format!("{ca} is outside the subnet's prefixes");
                self.error(nr.ca.span(), field(&path, "ca"), msg);
                continue;
            }
            if let Some(other) = snat
                .iter()
                .find(|x| x.ca.is_ipv6() == ca.is_ipv6() && x.ca != ca)
            {
                let msg = format!(
                    "the balancer already has {} as its {} SNAT CA in this subnet (one CA per family)",
                    other.ca,
                    family(ca)
                );
                self.error(nr.ca.span(), field(&path, "ca"), msg);
                continue;
            }
            let range = SnatRange {
                ca,
                first_port,
                last_port,
            };
            let overlap = snat.iter().zip(&snat_ports).find(|(x, _)| {
                x.ca == ca && x.first_port <= last_port && first_port <= x.last_port
            });
            if let Some((x, (span, _))) = overlap {
                let msg = format!(
                    "ports {first_port}-{last_port} of {ca} overlap {}-{} (line {})",
                    x.first_port,
                    x.last_port,
                    self.lines.line_of(span.start)
                );
                self.error(nr.ports.span(), field(&path, "ports"), msg);
                continue;
            }
            snat.push(range);
            snat_ports.push((nr.ports.span(), field(&path, "ports")));
        }
        let Some(vsid) = vsid else {
            return;
        };
        if let Some((_, other)) = self.subnet_of(vsid) {
            let owner = self.tenant_name(other.tenant).to_owned();
            let line = self
                .subnet_by_vsid
                .get(&vsid)
                .and_then(|&id| self.subnet_meta.get(usize::try_from(id).ok()?))
                .map_or(0, |m| m.line);
            let msg = format!("VSID {vsid} is already declared (tenant `{owner}`, line {line})");
            self.error(r.vsid.span(), field(&base, "vsid"), msg);
            return;
        }
        let Ok(id) = u32::try_from(self.subnets.len()) else {
            return;
        };
        self.subnet_by_vsid.insert(vsid, id);
        let line = self.line(r.vsid.span());
        self.subnet_meta.push(SubnetMeta {
            line,
            path: base,
            prefix_spans,
            snat_ports,
        });
        self.subnets.push(VirtualSubnet {
            vsid,
            tenant,
            routing_domain: rd,
            prefixes,
            lb_mac,
            snat,
        });
    }

    /// Within a routing domain CAs are routed between subnets, so their prefixes must
    /// not overlap; across routing domains (and tenants) overlap is the normal case.
    fn check_prefix_overlaps(&mut self) {
        let mut found = Vec::new();
        for (i, s) in self.subnets.iter().enumerate() {
            for (pi, p) in s.prefixes.iter().enumerate() {
                let earlier = self
                    .subnets
                    .iter()
                    .take(i.saturating_add(1))
                    .enumerate()
                    .filter(|(_, o)| o.routing_domain == s.routing_domain)
                    .flat_map(|(oi, o)| {
                        let take = if oi == i { pi } else { o.prefixes.len() };
                        o.prefixes.iter().take(take).map(move |q| (oi, q))
                    })
                    .find(|(_, q)| q.overlaps(p));
                if let Some((oi, q)) = earlier {
                    found.push((i, pi, *p, oi, *q));
                }
            }
        }
        for (i, pi, p, oi, q) in found {
            let (Some(meta), Some(other)) = (self.subnet_meta.get(i), self.subnet_meta.get(oi))
            else {
                continue;
            };
            let Some((span, written)) = meta.prefix_spans.get(pi).cloned() else {
                continue;
            };
            let msg = format!(
                "{p} overlaps {q} of {} in the same routing domain",
                other.path
            );
            let path = format!("{}.prefixes[{written}]", meta.path);
            self.error(span, path, msg);
        }
    }

    pub(super) fn lookups(&mut self, raw: &[S<RawTenant>]) {
        for (ti, t) in raw.iter().enumerate() {
            let Ok(tenant) = TenantId::try_from(ti) else {
                break;
            };
            for (li, l) in t.get_ref().lookup.iter().enumerate() {
                let base = format!("tenant[{ti}].lookup[{li}]");
                let r = l.get_ref();
                let vsid = self.vsid(&r.vsid, field(&base, "vsid"));
                let vsid =
                    vsid.filter(|&v| self.owned_vsid(v, &r.vsid, field(&base, "vsid"), tenant));
                let ca = self.ip(&r.ca, field(&base, "ca"));
                let mac = self.mac(&r.mac, field(&base, "mac"));
                let host = self.host_ref(&r.host, field(&base, "host"));
                let (Some(vsid), Some(ca)) = (vsid, ca) else {
                    continue;
                };
                let Some((_, subnet)) = self.subnet_of(vsid) else {
                    continue;
                };
                if !subnet.prefixes.iter().any(|p| p.contains(ca)) {
                    let msg = format!("{ca} is outside the prefixes of VSID {vsid}");
                    self.error(r.ca.span(), field(&base, "ca"), msg);
                    continue;
                }
                if subnet.snat.iter().any(|s| s.ca == ca) {
                    let msg = format!("{ca} is the balancer's own SNAT CA in VSID {vsid}");
                    self.error(r.ca.span(), field(&base, "ca"), msg);
                    continue;
                }
                if let Some(&(_, line)) = self.lookup_lines.get(&(vsid, ca)) {
                    let msg = format!(
                        "a lookup record for {ca} in VSID {vsid} already exists (line {line})"
                    );
                    self.error(r.ca.span(), field(&base, "ca"), msg);
                    continue;
                }
                // A record with a refused host or MAC is still indexed (with placeholders)
                // so that DIPs using it are not also reported as missing a record; the
                // errors already recorded keep the snapshot from being built.
                let host = host.unwrap_or(0);
                let mac = mac.unwrap_or(MacAddr([0; 6]));
                let line = self.line(l.span());
                self.lookup_lines
                    .insert((vsid, ca), (self.lookups.len(), line));
                self.lookups.push(LookupRecord {
                    vsid,
                    ca,
                    host,
                    mac,
                });
            }
        }
    }

    /// A host name that exists and that the provider port can reach.
    fn host_ref(&mut self, s: &S<String>, path: String) -> Option<u16> {
        let name = s.get_ref().trim();
        let Some(&(id, _)) = self.host_names.get(name) else {
            self.error(s.span(), path, format!("no [[host]] is named `{name}`"));
            return None;
        };
        match self.host_reachable.get(usize::from(id)) {
            Some(&(true, _)) => Some(id),
            Some(&(false, families)) => {
                let msg = format!(
                    "host `{name}` has {families} PA, but the balancer's provider port has no address of that family"
                );
                self.error(s.span(), path, msg);
                None
            }
            None => None,
        }
    }

    /// Whether `vsid` is a declared subnet of `tenant`; reports why not.
    pub(super) fn owned_vsid(
        &mut self,
        vsid: Vsid,
        n: &S<i64>,
        path: String,
        tenant: TenantId,
    ) -> bool {
        match self.subnet_of(vsid) {
            None => {
                self.error(
                    n.span(),
                    path,
                    format!("VSID {vsid} is not declared as a virtual subnet"),
                );
                false
            }
            Some((_, s)) if s.tenant != tenant => {
                let msg = format!(
                    "VSID {vsid} belongs to tenant `{}`, not `{}`",
                    self.tenant_name(s.tenant),
                    self.tenant_name(tenant)
                );
                self.error(n.span(), path, msg);
                false
            }
            Some(_) => true,
        }
    }
}

/// Whether an address falls inside a subnet's prefixes.
pub(super) fn in_subnet(subnet: &VirtualSubnet, a: IpAddr) -> bool {
    subnet.prefixes.iter().any(|p| p.contains(a))
}
