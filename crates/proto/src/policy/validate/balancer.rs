//! Pass 1: the balancer's own ports and limits, and the Hyper-V hosts of the PA network.

use std::net::IpAddr;

use super::super::config::{
    RawBalancer, RawBalancerHealth, RawFlows, RawHost, RawPort, RawReload, S,
};
use super::super::model::{
    Balancer, FlowLimits, HealthSettings, Host, Port, ReloadPolicy, RemovedDips,
};
use super::{Map, Validator, family, field};
use crate::wire::MacAddr;

/// IPv6 requires every link to carry 1280-byte packets; below that nothing works.
const MIN_MTU: i64 = 1280;
/// A 1500-byte inner IP packet + 14-byte inner Ethernet + 8-byte GRE + 20-byte IPv4.
const FULL_FRAME_MTU_V4: i64 = 1542;
/// The same with a 40-byte IPv6 outer header.
const FULL_FRAME_MTU_V6: i64 = 1562;

impl Validator<'_> {
    pub(super) fn balancer(&mut self, b: &S<RawBalancer>) -> Balancer {
        let raw = b.get_ref();
        let name = self.name(&raw.name, "balancer.name".into());
        let external = self.port_of(&raw.external, "balancer.external", false);
        let provider = self.port_of(&raw.provider, "balancer.provider", true);
        if external.gateway_mac.is_none() && raw.external.get_ref().gateway_mac.is_none() {
            self.error(
                raw.external.span(),
                "balancer.external.gateway_mac",
                "missing: replies to Internet clients need the next hop's MAC",
            );
        }
        let flows = match &raw.flows {
            Some(f) => self.flows(f.get_ref()),
            None => FlowLimits::default(),
        };
        let reload = match &raw.reload {
            Some(r) => self.reload(r.get_ref()),
            None => ReloadPolicy::default(),
        };
        let health = match &raw.health {
            Some(h) => self.health_settings(h.get_ref()),
            None => HealthSettings::default(),
        };
        Balancer {
            name,
            external,
            provider,
            flows,
            reload,
            health,
            instances: Vec::new(),
        }
    }

    /// `[balancer.health]`. Where `probe_ports` was written is kept: the check against
    /// SNAT ranges (which are declared later) names it.
    fn health_settings(&mut self, raw: &RawBalancerHealth) -> HealthSettings {
        let mut h = HealthSettings::default();
        if let Some(s) = &raw.probe_ports
            && let Some((first, last)) = self.port_range(s, "balancer.health.probe_ports".into())
        {
            h.probe_first = first;
            h.probe_last = last;
            self.probe_ports_span = Some(s.span());
        }
        self.health_settings = h;
        h
    }

    fn port_of(&mut self, p: &S<RawPort>, base: &str, provider: bool) -> Port {
        let raw = p.get_ref();
        let mac = self
            .mac(&raw.mac, field(base, "mac"))
            .unwrap_or(MacAddr([0; 6]));
        let gateway_mac = raw
            .gateway_mac
            .as_ref()
            .and_then(|g| self.mac(g, field(base, "gateway_mac")));
        let mut addresses: Vec<IpAddr> = Vec::new();
        let list = raw.addresses.as_ref();
        for (i, a) in list.map_or(&[][..], |l| l.get_ref()).iter().enumerate() {
            let path = format!("{base}.addresses[{i}]");
            let Some(ip) = self.ip(a, path.clone()) else {
                continue;
            };
            if addresses.contains(&ip) {
                self.error(a.span(), path, format!("{ip} is listed twice"));
            } else if provider && addresses.iter().any(|x| x.is_ipv6() == ip.is_ipv6()) {
                self.error(
                    a.span(),
                    path,
                    format!(
                        "a second {} PA: the provider port has one PA per family (the outer source of NVGRE)",
                        family(ip)
                    ),
                );
            } else {
                addresses.push(ip);
            }
        }
        if provider && addresses.is_empty() {
            let span = list.map_or(p.span(), |l| l.span());
            self.error(
                span,
                field(base, "addresses"),
                "the provider port needs a PA (IPv4, IPv6 or both) to send NVGRE from",
            );
        }
        let mtu_raw = *raw.mtu.get_ref();
        let mtu = match u16::try_from(mtu_raw) {
            Ok(m) if i64::from(m) >= MIN_MTU => m,
            _ => {
                self.error(
                    raw.mtu.span(),
                    field(base, "mtu"),
                    format!("MTU {mtu_raw} is not in {MIN_MTU}..=65535"),
                );
                1500
            }
        };
        if provider && (MIN_MTU..FULL_FRAME_MTU_V4).contains(&mtu_raw) {
            self.warn(
                raw.mtu.span(),
                field(base, "mtu"),
                format!(
                    "MTU {mtu_raw} cannot carry a 1500-byte inner packet in NVGRE \
                     (needs {FULL_FRAME_MTU_V4} over IPv4, {FULL_FRAME_MTU_V6} over IPv6); \
                     larger packets get ICMP too-big"
                ),
            );
        } else if provider
            && (FULL_FRAME_MTU_V4..FULL_FRAME_MTU_V6).contains(&mtu_raw)
            && addresses.iter().any(IpAddr::is_ipv6)
        {
            self.warn(
                raw.mtu.span(),
                field(base, "mtu"),
                format!(
                    "MTU {mtu_raw} cannot carry a 1500-byte inner packet in NVGRE over IPv6 \
                     (needs {FULL_FRAME_MTU_V6})"
                ),
            );
        }
        Port {
            mac,
            addresses,
            mtu,
            gateway_mac,
        }
    }

    fn reload(&mut self, raw: &RawReload) -> ReloadPolicy {
        let mut policy = ReloadPolicy::default();
        let base = "balancer.reload";
        if let Some(m) = &raw.removed_dips {
            match m.get_ref().as_str() {
                "drain" => policy.removed_dips = RemovedDips::Drain,
                "reset" => policy.removed_dips = RemovedDips::Reset,
                other => self.error(
                    m.span(),
                    field(base, "removed_dips"),
                    format!("`{other}` is neither \"drain\" nor \"reset\""),
                ),
            }
        }
        if let Some(s) = &raw.drain_timeout
            && let Some(d) = self.duration(s, field(base, "drain_timeout"))
        {
            policy.drain_timeout = d;
        }
        policy
    }

    fn flows(&mut self, raw: &RawFlows) -> FlowLimits {
        /// The most bindings one shard can hold (`flow/wheel.rs`, 24-bit slot ids).
        const MAX_FLOWS_PER_WORKER: u32 = 1 << 24;
        let mut limits = FlowLimits::default();
        let base = "balancer.flows";
        if let Some(n) = &raw.max_flows_per_worker
            && let Some(c) = self.count(n, field(base, "max_flows_per_worker"))
        {
            if c > MAX_FLOWS_PER_WORKER {
                self.error(
                    n.span(),
                    field(base, "max_flows_per_worker"),
                    format!(
                        "{c} is more than a shard can index ({MAX_FLOWS_PER_WORKER}: its \
                         expiry schedule names bindings with 24 bits); run more workers"
                    ),
                );
            }
            limits.max_flows_per_worker = c.min(MAX_FLOWS_PER_WORKER);
        }
        if let Some(n) = &raw.max_flows_per_tenant
            && let Some(c) = self.count(n, field(base, "max_flows_per_tenant"))
        {
            limits.max_flows_per_tenant = c;
        }
        if let Some(n) = &raw.preallocate_flows_per_worker
            && let Some(c) = self.count(n, field(base, "preallocate_flows_per_worker"))
        {
            if c > limits.max_flows_per_worker {
                self.error(
                    n.span(),
                    field(base, "preallocate_flows_per_worker"),
                    format!(
                        "{c} is more than max_flows_per_worker ({}): a shard never holds more",
                        limits.max_flows_per_worker
                    ),
                );
            }
            limits.preallocate_flows_per_worker = c;
        }
        limits.preallocate_flows_per_worker = limits
            .preallocate_flows_per_worker
            .min(limits.max_flows_per_worker);
        let timeouts = [
            (
                &raw.tcp_syn_timeout,
                "tcp_syn_timeout",
                &mut limits.tcp_syn_timeout,
            ),
            (
                &raw.tcp_established_timeout,
                "tcp_established_timeout",
                &mut limits.tcp_established_timeout,
            ),
            (
                &raw.tcp_closing_timeout,
                "tcp_closing_timeout",
                &mut limits.tcp_closing_timeout,
            ),
            (&raw.udp_timeout, "udp_timeout", &mut limits.udp_timeout),
        ];
        for (value, name, slot) in timeouts {
            if let Some(s) = value
                && let Some(d) = self.duration(s, field(base, name))
            {
                *slot = d;
            }
        }
        limits
    }

    /// Hosts are numbered in declaration order. A host that cannot be reached from the
    /// provider port (no PA of a family the port has) is refused where a lookup record
    /// uses it, since only then does it matter.
    pub(super) fn hosts(&mut self, raw: &[S<RawHost>], provider: &Port) -> Vec<Host> {
        let mut hosts = Vec::with_capacity(raw.len());
        let mut pa_owner: Map<IpAddr, (String, usize)> = Map::default();
        for (i, h) in raw.iter().enumerate() {
            let base = format!("host[{i}]");
            let Ok(id) = u16::try_from(i) else {
                self.error(h.span(), base, "more than 65536 hosts");
                break;
            };
            let r = h.get_ref();
            let name = self.name(&r.name, field(&base, "name"));
            if let Some(&(_, line)) = self.host_names.get(&name) {
                self.error(
                    r.name.span(),
                    field(&base, "name"),
                    format!("host `{name}` is already declared at line {line}"),
                );
            } else {
                let line = self.line(h.span());
                self.host_names.insert(name.clone(), (id, line));
            }
            let mut host = Host {
                name: name.clone(),
                pa_v4: None,
                pa_v6: None,
                mac: self
                    .mac(&r.mac, field(&base, "mac"))
                    .unwrap_or(MacAddr([0; 6])),
                gateway_mac: r
                    .gateway_mac
                    .as_ref()
                    .and_then(|m| self.mac(m, field(&base, "gateway_mac"))),
            };
            if r.pa.get_ref().is_empty() {
                self.error(
                    r.pa.span(),
                    field(&base, "pa"),
                    "a host needs at least one PA",
                );
            }
            for (j, pa) in r.pa.get_ref().iter().enumerate() {
                let path = format!("{base}.pa[{j}]");
                let Some(ip) = self.ip(pa, path.clone()) else {
                    continue;
                };
                if provider.owns(ip) {
                    self.error(pa.span(), path, format!("{ip} is the balancer's own PA"));
                    continue;
                }
                if let Some((owner, line)) = pa_owner.get(&ip) {
                    let msg = format!("PA {ip} already belongs to host `{owner}` (line {line})");
                    self.error(pa.span(), path, msg);
                    continue;
                }
                let taken = match ip {
                    IpAddr::V4(v4) => host.pa_v4.replace(v4).is_some(),
                    IpAddr::V6(v6) => host.pa_v6.replace(v6).is_some(),
                };
                if taken {
                    self.error(
                        pa.span(),
                        path,
                        format!("a second {} PA; a host has one PA per family", family(ip)),
                    );
                    continue;
                }
                let line = self.line(pa.span());
                pa_owner.insert(ip, (name.clone(), line));
            }
            let reachable = (host.pa_v4.is_some() && provider.address_v4().is_some())
                || (host.pa_v6.is_some() && provider.address_v6().is_some());
            let families = match (host.pa_v4.is_some(), host.pa_v6.is_some()) {
                (true, true) => "IPv4 and IPv6",
                (true, false) => "IPv4",
                (false, true) => "IPv6",
                (false, false) => "no",
            };
            self.host_reachable.push((reachable, families));
            hosts.push(host);
        }
        hosts
    }
}
