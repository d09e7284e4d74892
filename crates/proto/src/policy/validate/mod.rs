//! Validation: raw TOML values in, an immutable [`Snapshot`] or every problem found out.
//!
//! Works in passes over the whole file (balancer and hosts, then subnets, then lookup
//! records, then VIP pools) so that a later check can name what an earlier one
//! declared, and keeps going after a problem so that one run reports them all. It must
//! never hand out a snapshot when any error was found, and never stop at the first one.

mod balancer;
mod health;
mod instances;
mod outbound;
mod pools;
pub use pools::MAX_WEIGHT;
mod rules;
mod tenants;

use core::ops::Range;
use std::net::IpAddr;
use std::time::Duration;

use hashbrown::HashMap;

use super::config::{RawConfig, S};
use super::diag::{ConfigError, Diagnostic, LineIndex, path_at};
use super::ids::{SubnetId, TenantId, Vsid};
use super::model::{HealthSettings, LookupRecord, RoutingDomain, Tenant, VirtualSubnet};
use super::options::CompileOptions;
use super::snapshot::{Parts, Snapshot};
use crate::wire::MacAddr;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

impl Snapshot {
    /// Parses and validates policy text with the default [`CompileOptions`] (no
    /// instance, full-size tables); `origin` is the file name used in messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Snapshot, ConfigError> {
        Snapshot::compile(text, origin, &CompileOptions::default())
    }

    /// Parses and validates policy text for `options`; the same text and options
    /// always give the same snapshot.
    pub fn compile(
        text: &str,
        origin: &str,
        options: &CompileOptions,
    ) -> Result<Snapshot, ConfigError> {
        compile(text, origin, options)
    }
}

/// Parses, validates and indexes one policy text.
pub(crate) fn compile(
    text: &str,
    origin: &str,
    options: &CompileOptions,
) -> Result<Snapshot, ConfigError> {
    let lines = LineIndex::new(text);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let field = path_at(text, span.start);
            let message = e.message().trim_end().to_owned();
            return Err(ConfigError {
                errors: vec![lines.diagnostic(origin, span, field, message)],
            });
        }
    };
    let mut v = Validator {
        table_size: options.table_size(),
        file: origin,
        lines,
        errors: Vec::new(),
        warnings: Vec::new(),
        tenants: Vec::new(),
        routing_domains: Vec::new(),
        subnets: Vec::new(),
        subnet_meta: Vec::new(),
        subnet_by_vsid: Map::default(),
        host_names: Map::default(),
        host_reachable: Vec::new(),
        lookups: Vec::new(),
        lookup_lines: Map::default(),
        probe_ports_span: None,
        health_settings: HealthSettings::default(),
    };
    let mut balancer = v.balancer(&raw.balancer);
    let hosts = v.hosts(&raw.host, &balancer.provider);
    v.subnets(&raw.tenant);
    v.check_probe_ports(&balancer.health);
    v.lookups(&raw.tenant);
    let pools = v.pools(&raw.tenant);
    let outbound = v.outbound(&raw.tenant, &pools);
    v.check_floating_hosts(&raw.tenant, &pools, &hosts);
    balancer.instances = v.instances(&raw.balancer, &balancer, &hosts);
    if !v.errors.is_empty() {
        let mut errors = v.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(ConfigError { errors });
    }
    let snapshot = Snapshot::assemble(Parts {
        balancer,
        tenants: v.tenants,
        routing_domains: v.routing_domains,
        hosts,
        subnets: v.subnets,
        lookups: v.lookups,
        pools,
        outbound,
        warnings: v.warnings,
    });
    // `nvlb run --instance NAME`: every load (start, reload, API edit) is compiled
    // with the instance's name and sees its own view of the shared file.
    match options.instance() {
        Some(name) => snapshot.for_instance(name).ok_or_else(|| ConfigError {
            errors: vec![Diagnostic {
                file: origin.to_string(),
                line: 0,
                column: 0,
                field: "balancer.instance".into(),
                message: format!(
                    "no [[balancer.instance]] is named {name:?} (nvlb run --instance)"
                ),
            }],
        }),
        None => Ok(snapshot),
    }
}

/// Where a subnet's parts were written, for messages about later conflicts.
struct SubnetMeta {
    line: usize,
    path: String,
    /// Span and written index of each prefix that parsed, parallel to `subnet.prefixes`.
    prefix_spans: Vec<(Range<usize>, usize)>,
    /// Span and field path of each SNAT range's `ports`, parallel to `subnet.snat`.
    snat_ports: Vec<(Range<usize>, String)>,
}

/// The state shared by the passes: findings so far and what earlier passes declared.
struct Validator<'a> {
    /// Slots of every pool's Maglev table (the compile options').
    table_size: u32,
    file: &'a str,
    lines: LineIndex<'a>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    tenants: Vec<Tenant>,
    routing_domains: Vec<RoutingDomain>,
    subnets: Vec<VirtualSubnet>,
    subnet_meta: Vec<SubnetMeta>,
    subnet_by_vsid: Map<Vsid, SubnetId>,
    /// Host name -> (id, line of its declaration).
    host_names: Map<String, (u16, usize)>,
    /// Per host: whether it has a PA of a family the provider port also has, and which
    /// families it has, for the message.
    host_reachable: Vec<(bool, &'static str)>,
    lookups: Vec<LookupRecord>,
    /// (VSID, CA) -> (index in `lookups`, line of the record).
    lookup_lines: Map<(Vsid, IpAddr), (usize, usize)>,
    /// Where `balancer.health.probe_ports` was written, if it was.
    probe_ports_span: Option<Range<usize>>,
    /// `[balancer.health]` as validated (pass 1), for the pools' checks.
    health_settings: HealthSettings,
}

fn field(base: &str, leaf: &str) -> String {
    format!("{base}.{leaf}")
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv6() { "IPv6" } else { "IPv4" }
}

impl Validator<'_> {
    fn error(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let d = self
            .lines
            .diagnostic(self.file, span, field.into(), message.into());
        self.errors.push(d);
    }

    fn warn(&mut self, span: Range<usize>, field: impl Into<String>, message: impl Into<String>) {
        let d = self
            .lines
            .diagnostic(self.file, span, field.into(), message.into());
        self.warnings.push(d);
    }

    fn line(&self, span: Range<usize>) -> usize {
        self.lines.line_of(span.start)
    }

    fn subnet_of(&self, vsid: Vsid) -> Option<(SubnetId, &VirtualSubnet)> {
        let id = *self.subnet_by_vsid.get(&vsid)?;
        Some((id, self.subnets.get(usize::try_from(id).ok()?)?))
    }

    fn tenant_name(&self, id: TenantId) -> &str {
        self.tenants
            .get(usize::from(id))
            .map_or("?", |t| t.name.as_str())
    }

    /// A non-empty name, as written.
    fn name(&mut self, s: &S<String>, path: String) -> String {
        let name = s.get_ref().trim();
        if name.is_empty() {
            self.error(s.span(), path, "must not be empty");
        }
        name.to_owned()
    }

    /// A unicast IPv4 or IPv6 address: nothing in the policy may stand for a group or
    /// for "unspecified".
    fn ip(&mut self, s: &S<String>, path: String) -> Option<IpAddr> {
        let text = s.get_ref();
        let Ok(a) = text.trim().parse::<IpAddr>() else {
            self.error(
                s.span(),
                path,
                format!("`{text}` is not an IPv4 or IPv6 address"),
            );
            return None;
        };
        let broadcast = matches!(a, IpAddr::V4(v4) if v4.is_broadcast());
        if a.is_unspecified() || a.is_multicast() || broadcast {
            self.error(s.span(), path, format!("{a} is not a unicast address"));
            return None;
        }
        Some(a)
    }

    /// A unicast MAC (no group bit, not all zeros).
    fn mac(&mut self, s: &S<String>, path: String) -> Option<MacAddr> {
        let text = s.get_ref();
        match super::mac::parse(text.trim()) {
            Ok(m) if m.is_unicast() => Some(m),
            Ok(m) => {
                self.error(s.span(), path, format!("{m} is not a unicast MAC address"));
                None
            }
            Err(e) => {
                self.error(
                    s.span(),
                    path,
                    format!("`{text}` is not a MAC address: {e}"),
                );
                None
            }
        }
    }

    /// A usable VSID: 24 bits, not 0 and not reserved by RFC 7637.
    fn vsid(&mut self, n: &S<i64>, path: String) -> Option<Vsid> {
        let raw = *n.get_ref();
        let vsid = u32::try_from(raw).ok().and_then(Vsid::new);
        match vsid {
            None => self.error(
                n.span(),
                path,
                format!("VSID {raw} does not fit in 24 bits (4096..=16777214)"),
            ),
            Some(v) if v.is_public() || v.is_reserved() => self.error(
                n.span(),
                path,
                format!("VSID {raw} is reserved (0-4095 and 16777215 are reserved by RFC 7637)"),
            ),
            Some(v) => return Some(v),
        }
        None
    }

    /// A TCP/UDP port a service can listen on (1..=65535).
    fn port(&mut self, n: &S<i64>, path: String) -> Option<u16> {
        let raw = *n.get_ref();
        match u16::try_from(raw) {
            Ok(p) if p != 0 => Some(p),
            _ => {
                self.error(n.span(), path, format!("port {raw} is not in 1..=65535"));
                None
            }
        }
    }

    /// A positive count that fits 32 bits.
    fn count(&mut self, n: &S<i64>, path: String) -> Option<u32> {
        let raw = *n.get_ref();
        match u32::try_from(raw) {
            Ok(c) if c != 0 => Some(c),
            _ => {
                self.error(n.span(), path, format!("{raw} is not in 1..=4294967295"));
                None
            }
        }
    }

    /// `"<integer><unit>"` with unit `ms`, `s`, `m` or `h` (e.g. `"300s"`, `"5m"`),
    /// never zero: a zero timeout would expire every flow at once.
    fn duration(&mut self, s: &S<String>, path: String) -> Option<Duration> {
        let text = s.get_ref();
        match parse_duration(text.trim()) {
            Some(d) if !d.is_zero() => Some(d),
            Some(_) => {
                self.error(s.span(), path, "a timeout must be longer than 0");
                None
            }
            None => {
                self.error(
                    s.span(),
                    path,
                    format!("`{text}` is not a duration; write e.g. \"500ms\", \"30s\", \"5m\" or \"1h\""),
                );
                None
            }
        }
    }

    /// `"FIRST-LAST"` (or a single port), within 1..=65535 and FIRST <= LAST.
    fn port_range(&mut self, s: &S<String>, path: String) -> Option<(u16, u16)> {
        let text = s.get_ref();
        let (a, b) = text.split_once('-').unwrap_or((text, text));
        let parse = |p: &str| {
            let p = p.trim();
            (!p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
        };
        let (Some(first), Some(last)) = (parse(a), parse(b)) else {
            self.error(
                s.span(),
                path,
                format!("`{text}` is not a port range; write FIRST-LAST, e.g. \"20000-29999\""),
            );
            return None;
        };
        if first == 0 || last > 65535 {
            self.error(
                s.span(),
                path,
                format!(
                    "port range {first}-{last} must lie within 1..=65535 (port 0 is not usable)"
                ),
            );
            return None;
        }
        if first > last {
            self.error(
                s.span(),
                path,
                format!("port range {first}-{last} is empty: FIRST is above LAST"),
            );
            return None;
        }
        Some((u16::try_from(first).ok()?, u16::try_from(last).ok()?))
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at_checked(digits)?;
    if number.is_empty() || number.len() > 12 {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
