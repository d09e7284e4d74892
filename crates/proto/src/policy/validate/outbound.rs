//! Pass 5: outbound rules (`[[tenant.outbound]]`) and the floating-IP option of VIPs.
//!
//! Checks what the data plane relies on for source NAT towards the Internet: every
//! source is a VM of the tenant placed on a host by a lookup record, of the address's
//! family, in at most one rule; the range holds a block for every source; and no
//! port of the range is one a VIP serves on the same address (a reply could not be
//! told from a new client's packet). Floating-IP VIPs are public and their DIPs listen
//! on the frontend port, since the LB no longer rewrites the destination.

use std::net::IpAddr;

use super::super::config::{RawOutbound, RawTenant, RawVip, S};
use super::super::ids::{TenantId, Vsid};
use super::super::model::{Dip, Host, VipPool};
use super::super::outbound::{OutboundRule, OutboundSource, blocks};
use super::{Map, Validator, family, field};

/// Defaults of an outbound rule (docs/config.md says the same).
pub(crate) const DEFAULT_PORTS: (u16, u16) = (1024, 65535);
pub(crate) const DEFAULT_PORTS_PER_DIP: u16 = 1024;
pub(crate) const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 240;

impl Validator<'_> {
    pub(super) fn outbound(
        &mut self,
        raw: &[S<RawTenant>],
        pools: &[VipPool],
    ) -> Vec<OutboundRule> {
        let mut rules = Vec::new();
        let mut names: Map<String, usize> = Map::default();
        let mut addresses: Map<IpAddr, String> = Map::default();
        let mut sources_seen: Map<(Vsid, IpAddr), String> = Map::default();
        for (ti, t) in raw.iter().enumerate() {
            let Ok(tenant) = TenantId::try_from(ti) else {
                break;
            };
            for (oi, o) in t.get_ref().outbound.iter().enumerate() {
                let base = format!("tenant[{ti}].outbound[{oi}]");
                let errors_before = self.errors.len();
                let r = o.get_ref();
                let name = self.name(&r.name, field(&base, "name"));
                if let Some(line) = names.get(&name) {
                    let msg = format!("outbound rule `{name}` is already declared at line {line}");
                    self.error(r.name.span(), field(&base, "name"), msg);
                } else {
                    names.insert(name.clone(), self.line(o.span()));
                }
                let Some(rule) = self.outbound_rule(r, &base, name, tenant, pools) else {
                    continue;
                };
                if let Some(other) = addresses.get(&rule.address) {
                    let msg = format!(
                        "{} is already the address of outbound rule `{other}`",
                        rule.address
                    );
                    self.error(r.address.span(), field(&base, "address"), msg);
                }
                for s in &rule.sources {
                    if let Some(other) = sources_seen.get(&(s.vsid, s.ca)) {
                        let msg = format!(
                            "{} in VSID {} already sends through outbound rule `{other}`",
                            s.ca, s.vsid
                        );
                        self.error(o.span(), base.clone(), msg);
                    }
                }
                if self.errors.len() != errors_before {
                    continue;
                }
                addresses.insert(rule.address, rule.name.clone());
                for s in &rule.sources {
                    sources_seen.insert((s.vsid, s.ca), rule.name.clone());
                }
                rules.push(rule);
            }
        }
        rules
    }

    fn outbound_rule(
        &mut self,
        r: &RawOutbound,
        base: &str,
        name: String,
        tenant: TenantId,
        pools: &[VipPool],
    ) -> Option<OutboundRule> {
        let address = self.ip(&r.address, field(base, "address"))?;
        if self.lookups.iter().any(|l| l.ca == address) {
            let msg = format!("{address} is a VM's CA; an outbound address is public");
            self.error(r.address.span(), field(base, "address"), msg);
        }
        let (first, last) = match &r.ports {
            Some(p) => self.port_range(p, field(base, "ports"))?,
            None => DEFAULT_PORTS,
        };
        let per = match &r.ports_per_dip {
            None => DEFAULT_PORTS_PER_DIP,
            Some(n) => match u16::try_from(*n.get_ref()) {
                Ok(p) if p != 0 => p,
                _ => {
                    let msg = format!("{} is not in 1..=65535", n.get_ref());
                    self.error(n.span(), field(base, "ports_per_dip"), msg);
                    return None;
                }
            },
        };
        let idle_timeout = match &r.idle_timeout {
            Some(d) => self.duration(d, field(base, "idle_timeout"))?,
            None => std::time::Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
        };
        let mut sources: Vec<OutboundSource> = Vec::new();
        let push = |list: &mut Vec<OutboundSource>, s: OutboundSource| {
            if !list.iter().any(|x| (x.vsid, x.ca) == (s.vsid, s.ca)) {
                list.push(s);
            }
        };
        if let Some(names) = &r.pools {
            for (i, n) in names.get_ref().iter().enumerate() {
                let path = format!("{base}.pools[{i}]");
                let Some(pool) = pools
                    .iter()
                    .find(|p| p.name == n.get_ref().trim() && p.tenant == tenant)
                else {
                    let msg = format!("`{}` is not a VIP pool of this tenant", n.get_ref());
                    self.error(n.span(), path, msg);
                    continue;
                };
                for d in pool
                    .dips
                    .iter()
                    .filter(|d| d.ca.is_ipv6() == address.is_ipv6())
                {
                    push(&mut sources, source_of(d));
                }
            }
        }
        if let Some(list) = &r.sources {
            for (i, s) in list.get_ref().iter().enumerate() {
                let path = format!("{base}.sources[{i}]");
                let sr = s.get_ref();
                let Some(vsid) = self.vsid(&sr.vsid, field(&path, "vsid")) else {
                    continue;
                };
                if !self.owned_vsid(vsid, &sr.vsid, field(&path, "vsid"), tenant) {
                    continue;
                }
                let Some(ca) = self.ip(&sr.ca, field(&path, "ca")) else {
                    continue;
                };
                if ca.is_ipv6() != address.is_ipv6() {
                    let msg = format!(
                        "{} source {ca} behind {} outbound address {address}: the balancer does not translate between families",
                        family(ca),
                        family(address)
                    );
                    self.error(sr.ca.span(), field(&path, "ca"), msg);
                    continue;
                }
                let rec = self
                    .lookup_lines
                    .get(&(vsid, ca))
                    .and_then(|&(i, _)| self.lookups.get(i))
                    .copied();
                let Some(rec) = rec else {
                    let msg = format!("{ca} has no lookup record in VSID {vsid}");
                    self.error(sr.ca.span(), field(&path, "ca"), msg);
                    continue;
                };
                push(
                    &mut sources,
                    OutboundSource {
                        vsid,
                        ca,
                        host: rec.host,
                        mac: rec.mac,
                        first_port: 0,
                        last_port: 0,
                    },
                );
            }
        }
        let span = r.address.span();
        if sources.is_empty() {
            let msg = format!(
                "no {} source: name pools with DIPs of the address's family, or sources",
                family(address)
            );
            self.error(span.clone(), base.to_owned(), msg);
            return None;
        }
        let Some(b) = blocks(first, last, per, sources.len()) else {
            let need = sources.len().saturating_mul(usize::from(per));
            let has = usize::from(last) - usize::from(first) + 1;
            let msg = format!(
                "{} sources x {per} ports_per_dip = {need} ports, but the range {first}-{last} has {has}",
                sources.len()
            );
            let (span, path) = match (&r.ports_per_dip, &r.ports) {
                (Some(n), _) => (n.span(), field(base, "ports_per_dip")),
                (None, Some(p)) => (p.span(), field(base, "ports")),
                (None, None) => (span.clone(), base.to_owned()),
            };
            self.error(span, path, msg);
            return None;
        };
        for (s, (f, l)) in sources.iter_mut().zip(b) {
            s.first_port = f;
            s.last_port = l;
        }
        // A reply to the outbound address is told from a client's packet by its port.
        for p in pools
            .iter()
            .filter(|p| p.is_public() && p.address == address)
        {
            if (first..=last).contains(&p.port) {
                let msg = format!(
                    "range {first}-{last} includes port {}, which VIP `{}` serves on this same address {address}",
                    p.port, p.name
                );
                let (span, path) = match &r.ports {
                    Some(s) => (s.span(), field(base, "ports")),
                    None => (span.clone(), field(base, "address")),
                };
                self.error(span, path, msg);
            }
        }
        Some(OutboundRule {
            name,
            tenant,
            address,
            first_port: first,
            last_port: last,
            ports_per_dip: per,
            idle_timeout,
            sources,
        })
    }

    /// Direct server return keeps the destination as the client sent it: only for a
    /// public VIP, and every DIP must listen on the frontend port.
    pub(super) fn check_floating_ip(
        &mut self,
        frontend: Vsid,
        port: u16,
        r: &RawVip,
        base: &str,
        dips: &[Dip],
    ) {
        let Some(f) = &r.floating_ip else {
            return;
        };
        if !frontend.is_public() {
            self.error(
                f.span(),
                field(base, "floating_ip"),
                "floating_ip is for public VIPs only: a CA VIP needs full NAT",
            );
        }
        for (i, d) in dips.iter().enumerate() {
            if d.port != port {
                let span = r
                    .dips
                    .get_ref()
                    .get(i)
                    .and_then(|x| x.get_ref().port.as_ref().map(|p| p.span()))
                    .unwrap_or(f.span());
                let msg = format!(
                    "DIP port {} differs from the frontend port {port}: with floating_ip the LB does not rewrite the destination",
                    d.port
                );
                self.error(span, format!("{base}.dips[{i}].port"), msg);
            }
        }
    }
}

impl Validator<'_> {
    /// A floating-IP DIP's replies leave its host straight for the Internet, so the
    /// host needs a next hop there (`gateway_mac`); without one they would reach the LB,
    /// which holds no binding for a reply from the VIP.
    pub(super) fn check_floating_hosts(
        &mut self,
        raw: &[S<RawTenant>],
        pools: &[VipPool],
        hosts: &[Host],
    ) {
        for (ti, t) in raw.iter().enumerate() {
            for (vi, v) in t.get_ref().vip.iter().enumerate() {
                let r = v.get_ref();
                let Some(f) = r.floating_ip.as_ref().filter(|f| *f.get_ref()) else {
                    continue;
                };
                let Some(pool) = pools.iter().find(|p| p.name == r.name.get_ref().trim()) else {
                    continue;
                };
                let missing: Vec<&str> = pool
                    .dips
                    .iter()
                    .filter_map(|d| hosts.get(usize::from(d.host)))
                    .filter(|h| h.gateway_mac.is_none())
                    .map(|h| h.name.as_str())
                    .collect();
                if let Some(first) = missing.first() {
                    let msg = format!(
                        "host `{first}` of a DIP has no gateway_mac: with floating_ip its replies go straight to the Internet and need a next hop off the PA network"
                    );
                    self.error(f.span(), format!("tenant[{ti}].vip[{vi}].floating_ip"), msg);
                }
            }
        }
    }
}

fn source_of(d: &Dip) -> OutboundSource {
    OutboundSource {
        vsid: d.vsid,
        ca: d.ca,
        host: d.host,
        mac: d.mac,
        first_port: 0,
        last_port: 0,
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::Snapshot;

    fn example() -> String {
        include_str!("../../../../../lb-config/example.toml").to_string()
    }

    /// The example with `extra` appended (it lands in the last tenant, Red).
    fn with(extra: &str) -> String {
        format!("{}\n{extra}", example())
    }

    fn errors(text: &str) -> String {
        match Snapshot::from_toml(text, "t.toml") {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    const RULE: &str = r#"
[[tenant.outbound]]
name = "red-out"
address = "203.0.113.30"
pools = ["red-web"]
"#;

    #[test]
    fn defaults_and_blocks() {
        let s = Snapshot::from_toml(&with(RULE), "t.toml").unwrap();
        let r = &s.outbound_rules()[0];
        assert_eq!(
            (r.first_port, r.last_port, r.ports_per_dip),
            (1024, 65535, 1024)
        );
        assert_eq!(r.idle_timeout.as_secs(), 240);
        let blocks: Vec<(u16, u16)> = r
            .sources
            .iter()
            .map(|x| (x.first_port, x.last_port))
            .collect();
        assert_eq!(blocks, vec![(1024, 2047), (2048, 3071)]);
        assert_eq!(
            s.outbound_source(r.sources[1].vsid, r.sources[1].ca),
            Some((0, 1))
        );
        // Explicit sources come after the pools' DIPs; a DIP named twice counts once.
        let more = format!(
            "{RULE}sources = [{{ vsid = 6002, ca = \"10.0.1.21\" }}, {{ vsid = 6001, ca = \"10.0.0.5\" }}]\n"
        );
        let s = Snapshot::from_toml(&with(&more), "t.toml").unwrap();
        assert_eq!(s.outbound_rules()[0].sources.len(), 3);
        assert_eq!(s.outbound_rules()[0].sources[2].first_port, 3072);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                format!("{RULE}ports = \"1024-2000\"\n"),
                "ports: 2 sources x 1024 ports_per_dip = 2048 ports, but the range 1024-2000 has 977",
            ),
            (
                format!("{RULE}ports_per_dip = 0\n"),
                "ports_per_dip: 0 is not in 1..=65535",
            ),
            (
                RULE.replace("203.0.113.30", "203.0.113.20")
                    + "ports = \"1-2000\"\nports_per_dip = 10\n",
                "includes port 80, which VIP `red-web` serves on this same address",
            ),
            (
                RULE.replace("red-web\"", "blue-web\""),
                "`blue-web` is not a VIP pool of this tenant",
            ),
            (
                RULE.replace(
                    "pools = [\"red-web\"]",
                    "sources = [{ vsid = 6001, ca = \"10.0.0.9\" }]",
                ),
                "10.0.0.9 has no lookup record in VSID 6001",
            ),
            (
                RULE.replace(
                    "pools = [\"red-web\"]",
                    "sources = [{ vsid = 6001, ca = \"fd00:0:0:1::5\" }]",
                ),
                "does not translate between families",
            ),
            (
                RULE.replace(
                    "pools = [\"red-web\"]",
                    "sources = [{ vsid = 5001, ca = \"10.0.0.5\" }]",
                ),
                "VSID 5001 belongs to tenant `blue`",
            ),
            (
                RULE.replace("pools = [\"red-web\"]", "pools = [\"red-web6\"]"),
                "no IPv4 source",
            ),
            (
                format!(
                    "{RULE}{}",
                    RULE.replace("red-out", "red-out2")
                        .replace("113.30", "113.31")
                ),
                "already sends through outbound rule `red-out`",
            ),
            (
                format!("{RULE}{}", RULE.replace("red-out", "red-out2")),
                "already the address of outbound rule `red-out`",
            ),
            (
                format!("{RULE}idle_timeout = \"0s\"\n"),
                "idle_timeout: a timeout must be longer than 0",
            ),
        ];
        for (text, want) in cases {
            let e = errors(&with(&text));
            assert!(e.contains(want), "want {want:?} in\n{e}");
        }
    }

    const DSR: &str = r#"
[[tenant.vip]]
name = "red-dsr"
frontend = "public"
address = "203.0.113.21"
protocol = "tcp"
port = 80
backend_vsid = 6001
floating_ip = true
dips = [{ ca = "10.0.0.5" }]
"#;

    fn gateway(text: &str) -> String {
        text.replace(
            "mac = \"02:00:00:00:06:12\"\n",
            "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
        )
    }

    #[test]
    fn floating_ip_rules() {
        let s = Snapshot::from_toml(&gateway(&with(DSR)), "t.toml").unwrap();
        let (_, pool) = s.pool_named("red-dsr").unwrap();
        assert!(pool.floating_ip);
        assert!(!s.pool_named("red-web").unwrap().1.floating_ip);
        let dip = pool.dips[0];
        assert!(s.serves_floating_vip(dip.vsid, dip.mac, pool.address));
        assert!(!s.serves_floating_vip(dip.vsid, dip.mac, "203.0.113.20".parse().unwrap()));
        let e = errors(&with(DSR));
        assert!(
            e.contains("floating_ip: host `host2` of a DIP has no gateway_mac"),
            "{e}"
        );
        let e = errors(&gateway(&with(&DSR.replace(
            "{ ca = \"10.0.0.5\" }",
            "{ ca = \"10.0.0.5\", port = 8080 }",
        ))));
        assert!(
            e.contains("dips[0].port: DIP port 8080 differs from the frontend port 80"),
            "{e}"
        );
        let ca_vip = DSR
            .replace("frontend = \"public\"", "frontend = 6001")
            .replace("203.0.113.21", "10.0.0.101")
            .replace("backend_vsid = 6001\n", "");
        let e = errors(&gateway(&with(&ca_vip)));
        assert!(e.contains("floating_ip is for public VIPs only"), "{e}");
    }
}

#[cfg(test)]
mod summary_tests {
    use crate::policy::{Snapshot, summary};

    #[test]
    fn check_shows_outbound_blocks_and_floating_ip() {
        let text = include_str!("../../../../../lb-config/example.toml")
            .to_string()
            .replace(
                "mac = \"02:00:00:00:06:12\"\n",
                "mac = \"02:00:00:00:06:12\"\ngateway_mac = \"02:00:00:00:06:01\"\n",
            );
        let text = format!(
            "{text}\n[[tenant.vip]]\nname = \"red-dsr\"\nfrontend = \"public\"\naddress = \"203.0.113.21\"\nprotocol = \"tcp\"\nport = 80\nbackend_vsid = 6001\nfloating_ip = true\ndips = [{{ ca = \"10.0.0.5\" }}]\n\n[[tenant.outbound]]\nname = \"red-out\"\naddress = \"203.0.113.30\"\npools = [\"red-web\"]\nports_per_dip = 100\n"
        );
        let out = summary(&Snapshot::from_toml(&text, "t.toml").unwrap());
        assert!(out.contains("outbound rules (1)"), "{out}");
        let rows: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("red-out") || l.contains("1124-1223"))
            .collect();
        assert_eq!(rows.len(), 2, "{out}");
        assert!(
            rows[0].contains("203.0.113.30")
                && rows[0].contains("1024-65535")
                && rows[0].contains("1024-1123"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].contains("10.0.0.6") && rows[1].contains("host3"),
            "{}",
            rows[1]
        );
        let dsr = out.lines().find(|l| l.contains("red-dsr")).unwrap();
        assert!(dsr.contains("five_tuple floating_ip"), "{dsr}");
        let web = out.lines().find(|l| l.contains("red-web ")).unwrap();
        assert!(!web.contains("floating_ip"), "{web}");
    }
}
