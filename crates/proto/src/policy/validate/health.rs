//! Health checks: a pool's `health = { ... }` and `[balancer.health]`.
//!
//! Probes are sent from the LB's SNAT CA in each DIP's VSID, from a port range that no
//! SNAT range may touch (the engine recognises a probe's reply by that port alone), so
//! both are checked here against the subnets. Every key is checked even after one is
//! refused, so that one run names them all.

use std::net::IpAddr;
use std::time::Duration;

use super::super::config::{RawHealth, S};
use super::super::ids::{Protocol, Vsid};
use super::super::model::{Dip, HealthCheck, HealthProbe, HealthSettings};
use super::{Validator, family, field};

/// Most consecutive results `rise` and `fall` may ask for: beyond this a DIP would
/// take minutes to change state at any sensible interval.
pub(super) const MAX_RISE_FALL: i64 = 100;
/// Longest `body` to look for: the probe keeps at most 16 KiB of an answer.
pub(super) const MAX_BODY_MATCH: usize = 1024;
/// Longest interval or timeout: keeps the prober's clock arithmetic far from overflow,
/// and a DIP checked less often than hourly is not checked.
const MAX_PERIOD: Duration = Duration::from_secs(3600);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 3;

impl Validator<'_> {
    /// No SNAT range of any subnet may share a port with the probe range (all SNAT CAs
    /// are probe sources).
    pub(super) fn check_probe_ports(&mut self, h: &HealthSettings) {
        let mut clashes = Vec::new();
        for (subnet, meta) in self.subnets.iter().zip(&self.subnet_meta) {
            for (r, (span, path)) in subnet.snat.iter().zip(&meta.snat_ports) {
                if r.first_port <= h.probe_last && h.probe_first <= r.last_port {
                    clashes.push((subnet.vsid, *r, span.clone(), path.clone()));
                }
            }
        }
        for (vsid, r, span, path) in clashes {
            match self.probe_ports_span.clone() {
                Some(at) => {
                    let msg = format!(
                        "probe ports {}-{} overlap SNAT ports {}-{} of {} in VSID {vsid} (line {}); \
                         the two ranges must be disjoint",
                        h.probe_first,
                        h.probe_last,
                        r.first_port,
                        r.last_port,
                        r.ca,
                        self.line(span)
                    );
                    self.error(at, "balancer.health.probe_ports", msg);
                }
                None => {
                    let msg = format!(
                        "ports {}-{} overlap the health probe ports {}-{} (the default of \
                         balancer.health.probe_ports): move them, or set probe_ports",
                        r.first_port, r.last_port, h.probe_first, h.probe_last
                    );
                    self.error(span, path, msg);
                }
            }
        }
    }

    /// A CA VIP on one of the balancer's SNAT CAs must not serve a probe port: the
    /// engine would take its clients' packets for probe replies.
    pub(super) fn check_vip_port_not_probe(
        &mut self,
        frontend: Vsid,
        address: IpAddr,
        port: u16,
        s: &S<i64>,
        path: String,
    ) {
        let h = self.health_settings;
        let on_snat = self
            .subnet_of(frontend)
            .is_some_and(|(_, sub)| sub.snat.iter().any(|x| x.ca == address));
        if on_snat && h.is_probe_port(port) {
            let msg = format!(
                "port {port} is a health probe port ({}-{}) of the balancer's CA {address}",
                h.probe_first, h.probe_last
            );
            self.error(s.span(), path, msg);
        }
    }

    /// A pool's health check over its (already resolved) DIPs, or `None` when any key
    /// was refused.
    pub(super) fn health(
        &mut self,
        raw: &S<RawHealth>,
        base: &str,
        protocol: Option<Protocol>,
        dips: &[Dip],
    ) -> Option<HealthCheck> {
        let base = field(base, "health");
        let r = raw.get_ref();
        let before = self.errors.len();
        let http = match r.protocol.get_ref().as_str() {
            "tcp" => Some(false),
            "http" => Some(true),
            other => {
                let msg = format!("`{other}` is neither \"tcp\" nor \"http\"");
                self.error(r.protocol.span(), field(&base, "protocol"), msg);
                None
            }
        };
        let port = match &r.port {
            Some(p) => self.port(p, field(&base, "port")),
            None => None,
        };
        if protocol == Some(Protocol::Udp) && r.port.is_none() {
            self.error(
                raw.span(),
                field(&base, "port"),
                "missing: a UDP pool's DIPs are probed over TCP, so name the TCP port to probe",
            );
        }
        let interval = self.opt_duration(&r.interval, &base, "interval", DEFAULT_INTERVAL);
        let timeout = self.opt_duration(&r.timeout, &base, "timeout", DEFAULT_TIMEOUT);
        if let (Some(i), Some(t), Some(s)) = (interval, timeout, &r.timeout)
            && t > i
        {
            let msg = format!(
                "timeout {t:?} is longer than the interval {i:?}: a probe must end before the next starts"
            );
            self.error(s.span(), field(&base, "timeout"), msg);
        }
        let rise = self.threshold(&r.rise, &base, "rise", DEFAULT_RISE);
        let fall = self.threshold(&r.fall, &base, "fall", DEFAULT_FALL);
        let probe = match http {
            Some(true) => self.http_probe(r, &base),
            Some(false) => {
                let only_http = [
                    ("path", r.path.as_ref().map(S::span)),
                    ("host", r.host.as_ref().map(S::span)),
                    ("status", r.status.as_ref().map(S::span)),
                    ("body", r.body.as_ref().map(S::span)),
                ];
                for (key, span) in only_http {
                    if let Some(span) = span {
                        self.error(
                            span,
                            field(&base, key),
                            format!("`{key}` applies to protocol = \"http\" only"),
                        );
                    }
                }
                Some(HealthProbe::Tcp)
            }
            None => None,
        };
        self.probe_sources(raw, &base, dips);
        if self.errors.len() != before {
            return None;
        }
        Some(HealthCheck {
            probe: probe?,
            port,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
        })
    }

    fn http_probe(&mut self, r: &RawHealth, base: &str) -> Option<HealthProbe> {
        let path = match &r.path {
            None => Some("/".to_string()),
            Some(p) => {
                let text = p.get_ref();
                if !text.starts_with('/') || !is_token_text(text) {
                    self.error(
                        p.span(),
                        field(base, "path"),
                        format!(
                            "`{text}` is not a request path: it starts with '/' and has no spaces or control characters"
                        ),
                    );
                    None
                } else {
                    Some(text.clone())
                }
            }
        };
        let host = match &r.host {
            None => Some(None),
            Some(h) => {
                let text = h.get_ref();
                if text.is_empty() || !is_token_text(text) {
                    self.error(
                        h.span(),
                        field(base, "host"),
                        format!(
                            "`{text}` is not a Host header value (no spaces or control characters)"
                        ),
                    );
                    None
                } else {
                    Some(Some(text.clone()))
                }
            }
        };
        let status = match &r.status {
            None => Some(200),
            Some(s) => {
                let raw = *s.get_ref();
                match u16::try_from(raw) {
                    Ok(v) if (100..=599).contains(&v) => Some(v),
                    _ => {
                        self.error(
                            s.span(),
                            field(base, "status"),
                            format!("status {raw} is not an HTTP status (100..=599)"),
                        );
                        None
                    }
                }
            }
        };
        let body = match &r.body {
            None => Some(None),
            Some(b) => {
                let text = b.get_ref();
                if text.is_empty() || text.len() > MAX_BODY_MATCH {
                    self.error(
                        b.span(),
                        field(base, "body"),
                        format!(
                            "the text to look for in the body must be 1..={MAX_BODY_MATCH} bytes long"
                        ),
                    );
                    None
                } else {
                    Some(Some(text.clone()))
                }
            }
        };
        Some(HealthProbe::Http {
            path: path?,
            host: host?,
            status: status?,
            body: body?,
        })
    }

    fn opt_duration(
        &mut self,
        s: &Option<S<String>>,
        base: &str,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match s {
            None => Some(default),
            Some(s) => match self.duration(s, field(base, key)) {
                Some(d) if d > MAX_PERIOD => {
                    self.error(
                        s.span(),
                        field(base, key),
                        format!("{key} {d:?} is longer than 1h"),
                    );
                    None
                }
                d => d,
            },
        }
    }

    fn threshold(
        &mut self,
        n: &Option<S<i64>>,
        base: &str,
        key: &str,
        default: u32,
    ) -> Option<u32> {
        let Some(n) = n else {
            return Some(default);
        };
        let raw = *n.get_ref();
        if (1..=MAX_RISE_FALL).contains(&raw) {
            u32::try_from(raw).ok()
        } else {
            self.error(
                n.span(),
                field(base, key),
                format!("{key} {raw} is not in 1..={MAX_RISE_FALL}"),
            );
            None
        }
    }

    /// Every DIP VSID needs a SNAT CA of the DIP's family: the probe's source.
    fn probe_sources(&mut self, raw: &S<RawHealth>, base: &str, dips: &[Dip]) {
        let mut reported: Vec<(Vsid, bool)> = Vec::new();
        for d in dips {
            let v6 = d.ca.is_ipv6();
            if reported.contains(&(d.vsid, v6)) {
                continue;
            }
            let has = self
                .subnet_of(d.vsid)
                .is_some_and(|(_, s)| s.snat.iter().any(|x| x.ca.is_ipv6() == v6));
            if !has {
                reported.push((d.vsid, v6));
                let msg = format!(
                    "DIP VSID {} has no {} SNAT CA of the balancer: health probes to {} are sent from it",
                    d.vsid,
                    family(d.ca),
                    d.ca
                );
                self.error(raw.span(), base.to_string(), msg);
            }
        }
    }
}

/// Printable ASCII without spaces: safe inside an HTTP request line or header.
fn is_token_text(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}
