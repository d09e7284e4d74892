//! Pass 4: VIP pools. Resolves each DIP through its lookup record and checks what the
//! data plane relies on: the VIP key is unique, DIPs are reachable and of the VIP's
//! family, a CA VIP stays inside its tenant's routing domain and has SNAT CAs for full NAT.

use std::net::IpAddr;

use super::super::config::{RawDip, RawTenant, RawVip, S};
use super::super::ids::{Protocol, TenantId, Vsid};
use super::super::model::{Dip, DipState, Distribution, VipPool};
use super::tenants::in_subnet;
use super::{Map, Validator, family, field};

/// Largest DIP weight. Weights are relative shares of a Maglev table of 65537 entries:
/// a ratio beyond 65535:1 would leave the lighter DIP with no entry at all, and keeping
/// weights in 16 bits keeps the weighted fill's arithmetic far from overflow.
pub const MAX_WEIGHT: i64 = 65535;

/// Where an already accepted VIP key was declared.
pub(super) struct VipSeen {
    pub(super) name: String,
    pub(super) line: usize,
}

impl Validator<'_> {
    pub(super) fn pools(&mut self, raw: &[S<RawTenant>]) -> Vec<VipPool> {
        let mut pools = Vec::new();
        let mut keys: Map<(Vsid, IpAddr, Protocol, u16), VipSeen> = Map::default();
        let mut names: Map<String, usize> = Map::default();
        let mut echo = Map::default();
        for (ti, t) in raw.iter().enumerate() {
            let Ok(tenant) = TenantId::try_from(ti) else {
                break;
            };
            for (vi, v) in t.get_ref().vip.iter().enumerate() {
                let base = format!("tenant[{ti}].vip[{vi}]");
                let Some(pool) = self.pool(v, &base, tenant, &mut names) else {
                    continue;
                };
                let r = v.get_ref();
                let key = (pool.frontend, pool.address, pool.protocol, pool.port);
                if let Some(seen) = keys.get(&key) {
                    let msg = format!(
                        "duplicate VIP: {} {} {}/{} is already served by `{}` (line {})",
                        pool.frontend, pool.address, pool.protocol, pool.port, seen.name, seen.line
                    );
                    self.error(r.address.span(), field(&base, "address"), msg);
                    continue;
                }
                let line = self.line(v.span());
                keys.insert(
                    key,
                    VipSeen {
                        name: pool.name.clone(),
                        line,
                    },
                );
                self.check_echo(&mut echo, &pool, r, &base);
                pools.push(pool);
            }
            self.inbound_nat(t.get_ref(), ti, tenant, &mut keys, &mut names, &mut pools);
        }
        pools
    }

    /// One pool, or `None` when anything in it was refused (the errors say what).
    fn pool(
        &mut self,
        v: &S<RawVip>,
        base: &str,
        tenant: TenantId,
        names: &mut Map<String, usize>,
    ) -> Option<VipPool> {
        let r = v.get_ref();
        let errors_before = self.errors.len();
        let name = self.name(&r.name, field(base, "name"));
        if let Some(line) = names.get(&name) {
            let msg = format!("VIP name `{name}` is already used at line {line}");
            self.error(r.name.span(), field(base, "name"), msg);
        } else {
            names.insert(name.clone(), self.line(v.span()));
        }
        let frontend = self.frontend(&r.frontend, field(base, "frontend"), tenant);
        let address = self.ip(&r.address, field(base, "address"));
        // protocol = "all" (every TCP and UDP port, `rules.rs`) is kept as TCP plus the flag.
        let all_ports = r.protocol.get_ref() == "all";
        let protocol = match r.protocol.get_ref().parse::<Protocol>() {
            Ok(p) => Some(p),
            Err(_) if all_ports => Some(Protocol::Tcp),
            Err(_) => {
                let msg = format!(
                    "`{}`: expected \"tcp\" or \"udp\" (or \"all\" with port = 0)",
                    r.protocol.get_ref()
                );
                self.error(r.protocol.span(), field(base, "protocol"), msg);
                None
            }
        };
        let port = if all_ports {
            self.all_ports_port(&r.port, field(base, "port"))
        } else {
            self.port(&r.port, field(base, "port"))
        };
        let distribution = match &r.distribution {
            None => Distribution::default(),
            Some(d) => Distribution::parse(d.get_ref()).unwrap_or_else(|| {
                let msg = format!(
                    "`{}` is not a distribution mode: five_tuple, source_ip_protocol or source_ip",
                    d.get_ref()
                );
                self.error(d.span(), field(base, "distribution"), msg);
                Distribution::default()
            }),
        };
        if let (Some(fe), Some(addr)) = (frontend, address) {
            self.check_ca_vip_address(fe, addr, &r.address, field(base, "address"));
        }
        let backend = match &r.backend_vsid {
            Some(b) => self.vsid(b, field(base, "backend_vsid")).filter(|&vs| {
                self.backend_ok(vs, b, field(base, "backend_vsid"), tenant, frontend)
            }),
            None => match frontend {
                Some(fe) if !fe.is_public() => Some(fe),
                Some(_) => {
                    self.error(
                        v.span(),
                        field(base, "backend_vsid"),
                        "missing: a public VIP must name the VSID its DIPs live in",
                    );
                    None
                }
                None => None,
            },
        };
        let dips = self.dips(r, base, tenant, frontend, backend, address, port);
        let rule = self.rule_options(r, base, all_ports, frontend, address);
        let (Some(frontend), Some(address), Some(protocol), Some(port), Some(dips)) =
            (frontend, address, protocol, port, dips)
        else {
            return None;
        };
        if !frontend.is_public() {
            self.check_full_nat(frontend, address, port, r, base, &dips, backend);
            self.check_vip_port_not_probe(frontend, address, port, &r.port, field(base, "port"));
        }
        let floating_ip = r.floating_ip.as_ref().is_some_and(|f| *f.get_ref());
        if floating_ip {
            self.check_floating_ip(frontend, port, r, base, &dips);
        }
        let health = match &r.health {
            Some(h) => Some(self.health(h, base, Some(protocol), &dips)?),
            None => None,
        };
        if self.errors.len() != errors_before {
            return None;
        }
        let table = match super::super::overlay::table_of(&dips, self.table_size) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    v.span(),
                    field(base, "dips"),
                    format!("cannot build the Maglev table: {e}"),
                );
                return None;
            }
        };
        Some(VipPool {
            name,
            tenant,
            frontend,
            address,
            protocol,
            port,
            distribution,
            dips,
            table,
            health,
            rule,
            floating_ip,
        })
    }

    /// `"public"` or the VSID of one of the tenant's own subnets.
    pub(super) fn frontend(
        &mut self,
        f: &S<toml::Value>,
        path: String,
        tenant: TenantId,
    ) -> Option<Vsid> {
        match f.get_ref() {
            toml::Value::String(s) if s == "public" => Some(Vsid::PUBLIC),
            toml::Value::Integer(n) => {
                let n = S::new(f.span(), *n);
                let vsid = self.vsid(&n, path.clone())?;
                self.owned_vsid(vsid, &n, path, tenant).then_some(vsid)
            }
            other => {
                let msg = format!("expected \"public\" or the VSID of a CA VIP, found {other}");
                self.error(f.span(), path, msg);
                None
            }
        }
    }

    /// A CA VIP is a CA inside its subnet, and no VM may hold it.
    pub(super) fn check_ca_vip_address(
        &mut self,
        frontend: Vsid,
        addr: IpAddr,
        s: &S<String>,
        path: String,
    ) {
        if frontend.is_public() {
            return;
        }
        let Some((_, subnet)) = self.subnet_of(frontend) else {
            return;
        };
        if !in_subnet(subnet, addr) {
            let msg = format!("CA VIP {addr} is outside the prefixes of VSID {frontend}");
            self.error(s.span(), path, msg);
        } else if let Some(&(_, line)) = self.lookup_lines.get(&(frontend, addr)) {
            let msg = format!(
                "{addr} is the CA of a VM in VSID {frontend} (lookup record at line {line})"
            );
            self.error(s.span(), path, msg);
        }
    }

    /// DIPs live in the VIP's tenant; a CA VIP's DIPs also in the frontend's routing
    /// domain (the balancer must not bridge routing domains).
    pub(super) fn backend_ok(
        &mut self,
        vsid: Vsid,
        n: &S<i64>,
        path: String,
        tenant: TenantId,
        frontend: Option<Vsid>,
    ) -> bool {
        if !self.owned_vsid(vsid, n, path.clone(), tenant) {
            return false;
        }
        let Some(fe) = frontend.filter(|f| !f.is_public()) else {
            return true;
        };
        let rd = |v: &Self, x: Vsid| v.subnet_of(x).map(|(_, s)| s.routing_domain);
        let (Some(a), Some(b)) = (rd(self, fe), rd(self, vsid)) else {
            return false;
        };
        if a != b {
            let name = |i: u32| {
                self.routing_domains
                    .get(usize::try_from(i).unwrap_or(usize::MAX))
                    .map_or("?".to_owned(), |r| r.name.clone())
            };
            let msg = format!(
                "VSID {vsid} is in routing domain `{}`, not in `{}` of the frontend VSID {fe}",
                name(b),
                name(a)
            );
            self.error(n.span(), path, msg);
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn dips(
        &mut self,
        r: &RawVip,
        base: &str,
        tenant: TenantId,
        frontend: Option<Vsid>,
        backend: Option<Vsid>,
        address: Option<IpAddr>,
        vip_port: Option<u16>,
    ) -> Option<Vec<Dip>> {
        let list = r.dips.get_ref();
        if list.is_empty() {
            self.error(
                r.dips.span(),
                field(base, "dips"),
                "a pool needs at least one DIP",
            );
            return None;
        }
        let mut dips: Vec<Dip> = Vec::with_capacity(list.len());
        let mut complete = true;
        for (i, d) in list.iter().enumerate() {
            let path = format!("{base}.dips[{i}]");
            match self.dip(
                d.get_ref(),
                &path,
                tenant,
                frontend,
                backend,
                address,
                vip_port,
            ) {
                Some(dip)
                    if dips
                        .iter()
                        .any(|x| (x.vsid, x.ca, x.port) == (dip.vsid, dip.ca, dip.port)) =>
                {
                    let msg = format!(
                        "{}:{} in VSID {} is listed twice",
                        dip.ca, dip.port, dip.vsid
                    );
                    self.error(d.span(), path, msg);
                    complete = false;
                }
                Some(dip) => dips.push(dip),
                None => complete = false,
            }
        }
        if complete && dips.iter().all(|d| d.weight == 0) {
            self.error(
                r.dips.span(),
                field(base, "dips"),
                "every DIP has weight 0: the pool could never pick one",
            );
            return None;
        }
        complete.then_some(dips)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn dip(
        &mut self,
        d: &RawDip,
        base: &str,
        tenant: TenantId,
        frontend: Option<Vsid>,
        backend: Option<Vsid>,
        address: Option<IpAddr>,
        vip_port: Option<u16>,
    ) -> Option<Dip> {
        let vsid = match &d.vsid {
            Some(n) => self
                .vsid(n, field(base, "vsid"))
                .filter(|&v| self.backend_ok(v, n, field(base, "vsid"), tenant, frontend)),
            None => backend,
        };
        let ca = self.ip(&d.ca, field(base, "ca"));
        let port = match &d.port {
            Some(p) => self.port(p, field(base, "port")),
            None => vip_port,
        };
        let weight = match &d.weight {
            None => Some(1),
            Some(w) => {
                let raw = *w.get_ref();
                if (0..=MAX_WEIGHT).contains(&raw) {
                    u32::try_from(raw).ok()
                } else {
                    let msg = format!(
                        "weight {raw} is not in 0..={MAX_WEIGHT} (Maglev weights are relative shares of a 65537-entry table)"
                    );
                    self.error(w.span(), field(base, "weight"), msg);
                    None
                }
            }
        };
        let (Some(vsid), Some(ca)) = (vsid, ca) else {
            return None;
        };
        if let Some(vip) = address.filter(|a| a.is_ipv6() != ca.is_ipv6()) {
            let msg = format!(
                "{} DIP {ca} behind {} VIP {vip}: the balancer does not translate between families",
                family(ca),
                family(vip)
            );
            self.error(d.ca.span(), field(base, "ca"), msg);
            return None;
        }
        let rec = self
            .lookup_lines
            .get(&(vsid, ca))
            .and_then(|&(i, _)| self.lookups.get(i))
            .copied();
        let Some(rec) = rec else {
            let msg = format!("{ca} has no lookup record in VSID {vsid}");
            self.error(d.ca.span(), field(base, "ca"), msg);
            return None;
        };
        Some(Dip {
            vsid,
            ca,
            port: port?,
            weight: weight?,
            host: rec.host,
            mac: rec.mac,
            state: match &d.drain {
                Some(b) if *b.get_ref() => DipState::Draining,
                _ => DipState::Active,
            },
        })
    }

    /// Full NAT of a CA VIP: the balancer answers in the frontend VSID and sources
    /// forwarded packets from its own CA in each DIP's VSID, so every one of those
    /// VSIDs needs a SNAT CA of the VIP's family, and the VIP's own port must not be
    /// one the SNAT allocator could hand out on the same address.
    #[allow(clippy::too_many_arguments)]
    fn check_full_nat(
        &mut self,
        frontend: Vsid,
        address: IpAddr,
        port: u16,
        r: &RawVip,
        base: &str,
        dips: &[Dip],
        backend: Option<Vsid>,
    ) {
        let v6 = address.is_ipv6();
        let has_snat = |v: &Self, vsid: Vsid| {
            v.subnet_of(vsid)
                .is_some_and(|(_, s)| s.snat.iter().any(|x| x.ca.is_ipv6() == v6))
        };
        if !has_snat(self, frontend) {
            let msg = format!(
                "VSID {frontend} has no {} SNAT CA of the balancer; a CA VIP needs one (full NAT)",
                family(address)
            );
            self.error(r.frontend.span(), field(base, "frontend"), msg);
        }
        let mut reported = vec![frontend];
        let raw_dips = r.dips.get_ref();
        for (i, dip) in dips.iter().enumerate() {
            if reported.contains(&dip.vsid) || has_snat(self, dip.vsid) {
                continue;
            }
            reported.push(dip.vsid);
            let (span, path) = match (
                raw_dips.get(i).and_then(|d| d.get_ref().vsid.as_ref()),
                &r.backend_vsid,
            ) {
                (Some(n), _) => (n.span(), format!("{base}.dips[{i}].vsid")),
                (None, Some(b)) if Some(dip.vsid) == backend => {
                    (b.span(), field(base, "backend_vsid"))
                }
                _ => (r.frontend.span(), field(base, "frontend")),
            };
            let msg = format!(
                "DIP VSID {} has no {} SNAT CA of the balancer; a CA VIP needs one there (full NAT)",
                dip.vsid,
                family(address)
            );
            self.error(span, path, msg);
        }
        let Some((id, subnet)) = self.subnet_of(frontend) else {
            return;
        };
        let clash = subnet
            .snat
            .iter()
            .position(|s| s.ca == address && s.contains_port(port));
        if let Some(k) = clash {
            let ports = usize::try_from(id)
                .ok()
                .and_then(|i| self.subnet_meta.get(i))
                .and_then(|m| m.snat_ports.get(k).cloned());
            if let Some((span, path)) = ports {
                let msg = format!(
                    "range includes port {port}, which CA VIP `{}` serves on this same CA {address}",
                    r.name.get_ref()
                );
                self.error(span, path, msg);
            }
        }
    }
}
