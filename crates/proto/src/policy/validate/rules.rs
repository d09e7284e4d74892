//! The rule options of `[[tenant.vip]]` (all ports, idle timeout, TCP reset, ICMP
//! echo) and `[[tenant.inbound_nat]]`, each port of which becomes a pool of one DIP.
//!
//! Overlaps are refused here with the same file:line and field as every other error: a
//! NAT frontend port that another NAT rule or a load-balancing rule already serves on
//! the same address and protocol. A specific port next to an all-ports rule is no
//! overlap: the specific rule wins. This pass must never accept a rule the engine
//! could not serve exactly as written.

use std::net::IpAddr;
use std::time::Duration;

use super::super::config::{RawDip, RawInboundNat, RawTenant, RawVip, S};
use super::super::ids::{Protocol, TenantId, Vsid};
use super::super::model::{Dip, Distribution, VipPool};
use super::super::rules::{IcmpEcho, InboundNat, RuleOptions};
use super::pools::VipSeen;
use super::{Map, Validator, family, field};

/// Longest idle timeout a rule may set: far beyond the 30 minutes cloud load balancers
/// allow, short enough that a forgotten flow does not hold its slot for days.
const MAX_IDLE: Duration = Duration::from_secs(2 * 3600);

/// Maglev table size of an inbound NAT pool: it has exactly one DIP, so the smallest
/// prime that holds it does, and a range of many ports costs no 128 KiB table each.
const NAT_TABLE_SIZE: u32 = 7;

/// The (frontend, address, protocol, port) key a pool is found by.
pub(super) type VipKey = (Vsid, IpAddr, Protocol, u16);

impl Validator<'_> {
    /// `port` of an all-ports rule: must be written as 0.
    pub(super) fn all_ports_port(&mut self, n: &S<i64>, path: String) -> Option<u16> {
        if *n.get_ref() == 0 {
            return Some(0);
        }
        let msg = format!(
            "an all-ports rule (protocol = \"all\") takes port = 0, not {}",
            n.get_ref()
        );
        self.error(n.span(), path, msg);
        None
    }

    /// A rule's idle timeout: whole seconds (flows keep time in seconds), 1s..=2h.
    fn idle_timeout(&mut self, s: &Option<S<String>>, base: &str) -> Option<Duration> {
        let s = s.as_ref()?;
        let path = field(base, "idle_timeout");
        let d = self.duration(s, path.clone())?;
        if d.subsec_nanos() != 0 || d > MAX_IDLE {
            let msg = format!(
                "idle timeout {d:?} must be whole seconds between 1s and 2h (e.g. \"4m\", \"30m\", \"2s\")"
            );
            self.error(s.span(), path, msg);
            return None;
        }
        Some(d)
    }

    /// The rule options of one `[[tenant.vip]]`; errors are recorded, defaults returned.
    pub(super) fn rule_options(
        &mut self,
        r: &RawVip,
        base: &str,
        all_ports: bool,
        frontend: Option<Vsid>,
        address: Option<IpAddr>,
    ) -> RuleOptions {
        let idle_timeout = self.idle_timeout(&r.idle_timeout, base);
        let tcp_reset = r.tcp_reset.as_ref().is_some_and(|b| *b.get_ref());
        if let Some(b) = &r.tcp_reset
            && *b.get_ref()
            && r.protocol.get_ref() == "udp"
        {
            self.error(
                b.span(),
                field(base, "tcp_reset"),
                "a UDP rule has no TCP connection to reset",
            );
        }
        let icmp_echo = match &r.icmp_echo {
            None => IcmpEcho::default(),
            Some(e) => match IcmpEcho::parse(e.get_ref()) {
                Some(IcmpEcho::Forward) if frontend.is_some_and(|f| !f.is_public()) => {
                    self.error(
                        e.span(),
                        field(base, "icmp_echo"),
                        "\"forward\" is for public VIPs: a CA VIP's DIP would answer the client directly, not through the LB",
                    );
                    IcmpEcho::default()
                }
                Some(x) => x,
                None => {
                    let msg = format!(
                        "`{}` is not an echo mode: answer, forward or drop",
                        e.get_ref()
                    );
                    self.error(e.span(), field(base, "icmp_echo"), msg);
                    IcmpEcho::default()
                }
            },
        };
        if all_ports {
            for (i, d) in r.dips.get_ref().iter().enumerate() {
                if let Some(p) = &d.get_ref().port {
                    self.error(
                        p.span(),
                        format!("{base}.dips[{i}].port"),
                        "an all-ports rule keeps the packet's destination port: leave the DIP's port out",
                    );
                }
            }
            if let Some(h) = &r.health
                && h.get_ref().port.is_none()
            {
                self.error(
                    h.span(),
                    field(base, "health.port"),
                    "missing: an all-ports rule's DIPs have no port of their own, so name the port to probe",
                );
            }
            if let (Some(fe), Some(addr)) = (frontend, address)
                && !fe.is_public()
                && self
                    .subnet_of(fe)
                    .is_some_and(|(_, s)| s.snat.iter().any(|x| x.ca == addr))
            {
                self.error(
                    r.address.span(),
                    field(base, "address"),
                    format!("{addr} is a SNAT CA of the balancer: an all-ports rule would take every port of it"),
                );
            }
        }
        RuleOptions {
            all_ports,
            idle_timeout,
            tcp_reset,
            icmp_echo,
            nat: None,
        }
    }

    /// Every rule of one address that sets `icmp_echo` must set the same: echo has no
    /// port, so the address, not the rule, decides.
    pub(super) fn check_echo(
        &mut self,
        seen: &mut Map<(Vsid, IpAddr), (IcmpEcho, usize)>,
        pool: &VipPool,
        r: &RawVip,
        base: &str,
    ) {
        let Some(e) = &r.icmp_echo else {
            return;
        };
        let key = (pool.frontend, pool.address);
        let line = self.line(e.span());
        match seen.get(&key) {
            Some(&(other, at)) if other != pool.rule.icmp_echo => {
                let msg = format!(
                    "icmp_echo = \"{}\" contradicts icmp_echo = \"{}\" of the same address {} at line {at}",
                    pool.rule.icmp_echo.name(),
                    other.name(),
                    pool.address
                );
                self.error(e.span(), field(base, "icmp_echo"), msg);
            }
            Some(_) => {}
            None => {
                seen.insert(key, (pool.rule.icmp_echo, line));
            }
        }
    }

    /// A tenant's inbound NAT rules, as pools of one DIP each, appended to `pools`.
    pub(super) fn inbound_nat(
        &mut self,
        t: &RawTenant,
        ti: usize,
        tenant: TenantId,
        keys: &mut Map<VipKey, VipSeen>,
        names: &mut Map<String, usize>,
        pools: &mut Vec<VipPool>,
    ) {
        for (ni, n) in t.inbound_nat.iter().enumerate() {
            let base = format!("tenant[{ti}].inbound_nat[{ni}]");
            let Some(rule_pools) = self.nat_rule(n, &base, tenant, names) else {
                continue;
            };
            let r = n.get_ref();
            let line = self.line(n.span());
            for pool in rule_pools {
                let key = (pool.frontend, pool.address, pool.protocol, pool.port);
                if let Some(seen) = keys.get(&key) {
                    let msg = format!(
                        "frontend {} {} {}/{} overlaps `{}` (line {})",
                        pool.frontend, pool.address, pool.protocol, pool.port, seen.name, seen.line
                    );
                    self.error(r.port.span(), field(&base, "port"), msg);
                    continue;
                }
                keys.insert(
                    key,
                    VipSeen {
                        name: pool.name.clone(),
                        line,
                    },
                );
                pools.push(pool);
            }
        }
    }

    /// The frontend ports of a NAT rule: one port, or `"FIRST-LAST"`.
    fn nat_ports(&mut self, v: &S<toml::Value>, path: String) -> Option<(u16, u16)> {
        match v.get_ref() {
            toml::Value::Integer(i) => {
                let p = self.port(&S::new(v.span(), *i), path)?;
                Some((p, p))
            }
            toml::Value::String(s) => self.port_range(&S::new(v.span(), s.clone()), path),
            other => {
                let msg = format!("expected a port or \"FIRST-LAST\", found {other}");
                self.error(v.span(), path, msg);
                None
            }
        }
    }

    /// One NAT rule, expanded to its pools, or `None` when anything was refused.
    fn nat_rule(
        &mut self,
        n: &S<RawInboundNat>,
        base: &str,
        tenant: TenantId,
        names: &mut Map<String, usize>,
    ) -> Option<Vec<VipPool>> {
        let r = n.get_ref();
        let before = self.errors.len();
        let name = self.name(&r.name, field(base, "name"));
        if let Some(line) = names.get(&name) {
            let msg = format!("name `{name}` is already used at line {line}");
            self.error(r.name.span(), field(base, "name"), msg);
        } else {
            names.insert(name.clone(), self.line(n.span()));
        }
        let frontend = self.frontend(&r.frontend, field(base, "frontend"), tenant);
        let address = self.ip(&r.address, field(base, "address"));
        let protocol = match r.protocol.get_ref().parse::<Protocol>() {
            Ok(p) => Some(p),
            Err(e) => {
                let msg = format!("`{}`: {e}", r.protocol.get_ref());
                self.error(r.protocol.span(), field(base, "protocol"), msg);
                None
            }
        };
        let ports = self.nat_ports(&r.port, field(base, "port"));
        if let (Some(fe), Some(addr)) = (frontend, address) {
            self.check_ca_vip_address(fe, addr, &r.address, field(base, "address"));
        }
        let backend = match (&r.backend_vsid, frontend) {
            (Some(b), _) => self.vsid(b, field(base, "backend_vsid")).filter(|&vs| {
                self.backend_ok(vs, b, field(base, "backend_vsid"), tenant, frontend)
            }),
            (None, Some(fe)) if !fe.is_public() => Some(fe),
            (None, Some(_)) => {
                self.error(
                    n.span(),
                    field(base, "backend_vsid"),
                    "missing: a public frontend must name the VSID its targets live in",
                );
                None
            }
            (None, None) => None,
        };
        let idle_timeout = self.idle_timeout(&r.idle_timeout, base);
        let tcp_reset = r.tcp_reset.as_ref().is_some_and(|b| *b.get_ref());
        if let Some(b) = &r.tcp_reset
            && tcp_reset
            && protocol == Some(Protocol::Udp)
        {
            self.error(
                b.span(),
                field(base, "tcp_reset"),
                "a UDP rule has no TCP connection to reset",
            );
        }
        let targets = r.targets.get_ref();
        if let Some((first, last)) = ports {
            let count = usize::from(last - first) + 1;
            if targets.len() != count {
                let msg = format!(
                    "{} target(s) for {count} frontend port(s) {first}-{last}: port FIRST+i leads to the i-th target, so give exactly one per port",
                    targets.len()
                );
                self.error(r.targets.span(), field(base, "targets"), msg);
            }
        }
        let mut dips = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let t = t.get_ref();
            let raw = RawDip {
                ca: t.ca.clone(),
                port: t.port.clone(),
                weight: None,
                vsid: t.vsid.clone(),
                drain: None,
            };
            let vip_port = ports.map(|(first, _)| first.saturating_add(i as u16));
            let path = format!("{base}.targets[{i}]");
            if let Some(d) = self.dip(&raw, &path, tenant, frontend, backend, address, vip_port) {
                dips.push((i, d));
            }
        }
        let (Some(frontend), Some(address), Some(protocol), Some((first, last))) =
            (frontend, address, protocol, ports)
        else {
            return None;
        };
        if !frontend.is_public() {
            self.check_nat_snat(frontend, address, (first, last), r, base, &dips);
        }
        if self.errors.len() != before {
            return None;
        }
        let mut out = Vec::with_capacity(dips.len());
        for (i, dip) in dips {
            let port = first.saturating_add(u16::try_from(i).ok()?);
            let table = match super::super::overlay::table_of(&[dip], NAT_TABLE_SIZE) {
                Ok(t) => t,
                Err(e) => {
                    let msg = format!("cannot build the Maglev table: {e}");
                    self.error(n.span(), field(base, "targets"), msg);
                    return None;
                }
            };
            out.push(VipPool {
                name: if first == last {
                    name.clone()
                } else {
                    format!("{name}:{port}")
                },
                tenant,
                frontend,
                address,
                protocol,
                port,
                distribution: Distribution::default(),
                dips: vec![dip],
                table,
                health: None,
                floating_ip: false,
                rule: RuleOptions {
                    all_ports: false,
                    idle_timeout,
                    tcp_reset,
                    icmp_echo: IcmpEcho::default(),
                    nat: Some(InboundNat {
                        rule: name.clone(),
                        first,
                        last,
                    }),
                },
            });
        }
        Some(out)
    }

    /// A CA frontend's NAT is full NAT: the LB needs a SNAT CA of the family in the
    /// frontend VSID and in each target's VSID, and its ranges must not hold the
    /// frontend ports on the same CA.
    fn check_nat_snat(
        &mut self,
        frontend: Vsid,
        address: IpAddr,
        (first, last): (u16, u16),
        r: &RawInboundNat,
        base: &str,
        dips: &[(usize, Dip)],
    ) {
        let v6 = address.is_ipv6();
        let snat_in = |v: &Self, vsid: Vsid| {
            v.subnet_of(vsid)
                .map(|(_, s)| s.snat.iter().filter(|x| x.ca.is_ipv6() == v6).count() > 0)
                .unwrap_or(false)
        };
        if !snat_in(self, frontend) {
            let msg = format!(
                "VSID {frontend} has no {} SNAT CA of the balancer; a CA frontend needs one (full NAT)",
                family(address)
            );
            self.error(r.frontend.span(), field(base, "frontend"), msg);
        }
        for (i, d) in dips {
            if !snat_in(self, d.vsid) {
                let msg = format!(
                    "target VSID {} has no {} SNAT CA of the balancer (full NAT)",
                    d.vsid,
                    family(address)
                );
                let span = r
                    .targets
                    .get_ref()
                    .get(*i)
                    .map_or(r.targets.span(), |t| t.span());
                self.error(span, format!("{base}.targets[{i}]"), msg);
            }
        }
        let clash = self.subnet_of(frontend).is_some_and(|(_, s)| {
            s.snat
                .iter()
                .any(|x| x.ca == address && x.first_port <= last && first <= x.last_port)
        });
        if clash {
            let msg = format!(
                "frontend ports {first}-{last} overlap a SNAT range of the balancer's CA {address}"
            );
            self.error(r.port.span(), field(base, "port"), msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::super::super::{Diagnostic, IcmpEcho, Protocol, Snapshot, Vsid};

    const EXAMPLE: &str = include_str!("../../../../../lb-config/example.toml");
    /// Blue's extra rules go before Red's tenant table, so that they are Blue's.
    const RED: &str = "[[tenant]]\nname = \"red\"";

    fn with_blue(extra: &str) -> String {
        assert_eq!(EXAMPLE.matches(RED).count(), 1);
        EXAMPLE.replacen(RED, &format!("{extra}\n{RED}"), 1)
    }

    fn load(text: &str) -> Snapshot {
        Snapshot::from_toml(text, "r.toml").unwrap_or_else(|e| panic!("refused:\n{e}"))
    }

    fn refuse(text: &str) -> Vec<Diagnostic> {
        match Snapshot::from_toml(text, "r.toml") {
            Ok(_) => panic!("accepted a bad policy"),
            Err(e) => e.errors,
        }
    }

    /// The single error, which must be on the line of `needle` and name `field`.
    fn one_error(text: &str, needle: &str, field: &str) -> String {
        let errors = refuse(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?}"));
        let line = text[..at].matches('\n').count() + 1;
        assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
        assert_eq!(e.file, "r.toml");
        e.message.clone()
    }

    const HA: &str = "[[tenant.vip]]\nname = \"blue-ha\"\nfrontend = \"public\"\naddress = \"203.0.113.30\"\nprotocol = \"all\"\nport = 0\nbackend_vsid = 5001\nidle_timeout = \"2s\"\ntcp_reset = true\nicmp_echo = \"forward\"\ndips = [{ ca = \"10.0.0.5\" }, { ca = \"10.0.0.6\" }]\n";
    const SSH: &str = "[[tenant.inbound_nat]]\nname = \"blue-ssh\"\nfrontend = \"public\"\naddress = \"203.0.113.10\"\nprotocol = \"tcp\"\nport = 2222\nbackend_vsid = 5001\ntargets = [{ ca = \"10.0.0.5\", port = 22 }]\n";
    const RANGE: &str = "[[tenant.inbound_nat]]\nname = \"blue-rdp\"\nfrontend = \"public\"\naddress = \"203.0.113.10\"\nprotocol = \"tcp\"\nport = \"3390-3391\"\nbackend_vsid = 5001\nidle_timeout = \"30m\"\ntargets = [{ ca = \"10.0.0.6\", port = 3389 }, { ca = \"10.0.0.7\", port = 3389 }]\n";

    #[test]
    fn rules_load_with_their_options() {
        let p = load(&with_blue(&format!("{HA}{SSH}{RANGE}")));
        let (id, ha) = p.pool_named("blue-ha").unwrap();
        assert!(ha.rule.all_ports);
        assert_eq!(ha.rule.idle_timeout, Some(Duration::from_secs(2)));
        assert!(ha.rule.tcp_reset);
        assert!(ha.dips.iter().all(|d| d.port == 0));
        let a: IpAddr = "203.0.113.30".parse().unwrap();
        for proto in [Protocol::Tcp, Protocol::Udp] {
            for port in [1, 80, 65535] {
                assert_eq!(p.find_vip(Vsid::PUBLIC, a, proto, port), Some(id));
            }
            assert_eq!(
                p.find_vip(Vsid::PUBLIC, a, proto, 0),
                None,
                "port 0 is no port"
            );
        }
        assert_eq!(p.icmp_echo(Vsid::PUBLIC, a), (IcmpEcho::Forward, Some(id)));
        let web: IpAddr = "203.0.113.10".parse().unwrap();
        assert_eq!(p.icmp_echo(Vsid::PUBLIC, web), (IcmpEcho::Answer, None));
        let (ssh_id, ssh) = p.pool_named("blue-ssh").unwrap();
        assert_eq!(ssh.rule.kind(), "nat");
        assert_eq!((ssh.dips.len(), ssh.dips[0].port), (1, 22));
        assert_eq!(
            p.find_vip(Vsid::PUBLIC, web, Protocol::Tcp, 2222),
            Some(ssh_id)
        );
        assert_eq!(p.find_vip(Vsid::PUBLIC, web, Protocol::Udp, 2222), None);
        for (port, ca) in [(3390, "10.0.0.6"), (3391, "10.0.0.7")] {
            let (_, pool) = p.pool_named(&format!("blue-rdp:{port}")).unwrap();
            assert_eq!(pool.port, port);
            assert_eq!(pool.dips[0].ca, ca.parse::<IpAddr>().unwrap());
            assert_eq!(pool.dips[0].port, 3389);
            assert_eq!(pool.rule.idle_timeout, Some(Duration::from_secs(1800)));
            assert_eq!(pool.table.size(), super::NAT_TABLE_SIZE);
        }
        let text = crate::policy::summary(&p);
        assert!(text.contains("rules by VIP address (8)"), "{text}");
        let line = text.lines().find(|l| l.contains(" all ports ")).unwrap();
        for cell in [
            "203.0.113.30",
            "forward",
            "all ports",
            "five_tuple",
            "2s",
            "yes",
        ] {
            assert!(line.contains(cell), "{cell}: {line}");
        }
        let line = text.lines().find(|l| l.contains("blue-rdp:3391")).unwrap();
        for cell in [" nat ", "tcp/3391", "1800s", "10.0.0.7:3389"] {
            assert!(line.contains(cell), "{cell}: {line}");
        }
    }

    #[test]
    fn a_nat_frontend_that_overlaps_a_rule_is_refused() {
        let over_lb = SSH.replace("port = 2222", "port = 80");
        let msg = one_error(
            &with_blue(&over_lb),
            "port = 80\nbackend_vsid = 5001\ntargets",
            "tenant[0].inbound_nat[0].port",
        );
        assert!(msg.contains("blue-web"), "{msg}");
        let over_nat = format!("{SSH}{}", RANGE.replace("3390-3391", "2221-2222"));
        let text = with_blue(&over_nat);
        let msg = one_error(
            &text,
            "port = \"2221-2222\"",
            "tenant[0].inbound_nat[1].port",
        );
        assert!(msg.contains("blue-ssh"), "{msg}");
        // The same port in UDP, or next to an all-ports rule, is no overlap.
        load(&with_blue(&format!(
            "{HA}{SSH}{}",
            SSH.replace("blue-ssh", "blue-ssh-udp")
                .replace("\"tcp\"", "\"udp\"")
        )));
        load(&with_blue(&format!(
            "{HA}{}",
            SSH.replace("203.0.113.10", "203.0.113.30")
        )));
    }

    #[test]
    fn rule_options_are_checked_where_written() {
        let cases: [(String, &str, &str); 9] = [
            (
                HA.replace("port = 0", "port = 80"),
                "port = 80\nbackend_vsid = 5001\nidle",
                "tenant[0].vip[4].port",
            ),
            (
                HA.replace("\"all\"", "\"tcp\""),
                "port = 0",
                "tenant[0].vip[4].port",
            ),
            (
                HA.replace("\"all\"", "\"icmp\"")
                    .replace("port = 0", "port = 7"),
                "\"icmp\"",
                "tenant[0].vip[4].protocol",
            ),
            (
                HA.replace("\"2s\"", "\"1500ms\""),
                "\"1500ms\"",
                "tenant[0].vip[4].idle_timeout",
            ),
            (
                HA.replace("\"forward\"", "\"reply\""),
                "\"reply\"",
                "tenant[0].vip[4].icmp_echo",
            ),
            (
                HA.replace(
                    "{ ca = \"10.0.0.6\" }",
                    "{ ca = \"10.0.0.6\", port = 8080 }",
                ),
                "{ ca = \"10.0.0.6\", port = 8080 }",
                "tenant[0].vip[4].dips[1].port",
            ),
            (
                RANGE.replace("3390-3391", "3390-3392"),
                "targets = [{ ca = \"10.0.0.6\", port = 3389 }",
                "tenant[0].inbound_nat[0].targets",
            ),
            (
                SSH.replace("\"tcp\"", "\"udp\"")
                    .replace("targets", "tcp_reset = true\ntargets"),
                "tcp_reset = true\ntargets",
                "tenant[0].inbound_nat[0].tcp_reset",
            ),
            (
                format!(
                    "{HA}{}",
                    HA.replace("blue-ha", "blue-ha2")
                        .replace("\"forward\"", "\"drop\"")
                        .replace(
                            "protocol = \"all\"\nport = 0",
                            "protocol = \"udp\"\nport = 53"
                        )
                        .replace("tcp_reset = true\n", "")
                ),
                "icmp_echo = \"drop\"",
                "tenant[0].vip[5].icmp_echo",
            ),
        ];
        for (extra, needle, field) in cases {
            let text = with_blue(&extra);
            let msg = one_error(&text, needle, field);
            assert!(!msg.is_empty());
        }
    }

    #[test]
    fn forward_is_refused_on_a_ca_vip_and_two_all_ports_rules_clash() {
        let text = EXAMPLE.replacen(
            "name = \"blue-vip1\"\nfrontend = 5001",
            "name = \"blue-vip1\"\nicmp_echo = \"forward\"\nfrontend = 5001",
            1,
        );
        one_error(
            &text,
            "icmp_echo = \"forward\"",
            "tenant[0].vip[2].icmp_echo",
        );
        let two = format!("{HA}{}", HA.replace("blue-ha", "blue-ha2"));
        let errors = refuse(&with_blue(&two));
        assert!(
            errors.iter().any(|e| e.message.contains("duplicate VIP")),
            "{errors:#?}"
        );
    }
}
