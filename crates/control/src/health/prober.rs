//! Every DIP's health check: when to probe, the probe in flight, rise and fall.
//!
//! Pure apart from the frames it returns: the caller passes the time in, sends the
//! frames out and hands replies back, so that tests can drive it with crafted frames
//! and a made-up clock. One target per (pool, DIP); the set follows the declared
//! policy, and a DIP that stays keeps its state across reloads. A DIP starts up: a
//! restarted LB must not refuse a working pool for `rise` intervals, and a dead DIP is
//! found within `fall` intervals either way. It must never decide about a reply that
//! does not match a probe in flight (pool, VSID, addresses, ports, sending host).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::engine::{Tunnel, outer_addresses};
use crate::policy::{Dip, DipKey, HealthCheck, HealthProbe, HealthSettings, Snapshot};

use super::conn::{Ask, Conn, Failure, Segment};
use super::frame::{self, Route};
use super::status::DipHealth;

/// A DIP that changed state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub pool: String,
    pub dip: DipKey,
    pub up: bool,
    /// How many results in a row made it change (`rise` or `fall`).
    pub count: u32,
    /// `ok`, or the last failure.
    pub cause: String,
}

impl std::fmt::Display for Transition {
    /// `blue-web 10.0.0.6:80 down (2 x timeout)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.up { "up" } else { "down" };
        write!(
            f,
            "{} {} {state} ({} x {})",
            self.pool,
            endpoint(self.dip.ca, self.dip.port),
            self.count,
            self.cause
        )
    }
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// A probe in flight.
#[derive(Debug)]
struct Attempt {
    conn: Conn,
    port: u16,
    started: Instant,
    retransmit_at: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug)]
struct Target {
    pool: String,
    key: DipKey,
    check: HealthCheck,
    ask: Ask,
    route: Option<Route>,
    /// The PAs of the DIP's host: a reply must come from one of them.
    host_pas: [Option<IpAddr>; 2],
    up: bool,
    ok_run: u32,
    fail_run: u32,
    next_at: Instant,
    attempt: Option<Attempt>,
    last_latency: Option<Duration>,
    last_result: Option<String>,
    probes: u64,
    failures: u64,
}

/// All health checks of one LB.
#[derive(Debug)]
pub struct Prober {
    targets: Vec<Target>,
    settings: HealthSettings,
    next_port: u16,
    declared: Option<Arc<Snapshot>>,
    seed: u64,
    opened: u64,
    ident: u16,
}

impl Prober {
    /// `seed` varies initial sequence numbers between runs (any value works).
    pub fn new(seed: u64) -> Prober {
        let settings = HealthSettings::default();
        Prober {
            targets: Vec::new(),
            next_port: settings.probe_first,
            settings,
            declared: None,
            seed,
            opened: 0,
            ident: 0,
        }
    }

    /// Follows the declared policy: targets for every DIP of every checked pool, the
    /// state of those that stay kept. Returns the (pool, DIP)s no longer checked that
    /// were down, which the caller must bring back up (an unchecked DIP is up).
    pub fn sync(&mut self, declared: &Arc<Snapshot>, now: Instant) -> Vec<(String, DipKey)> {
        if self
            .declared
            .as_ref()
            .is_some_and(|d| Arc::ptr_eq(d, declared))
        {
            return Vec::new();
        }
        self.declared = Some(declared.clone());
        self.settings = declared.balancer().health;
        let mut old = std::mem::take(&mut self.targets);
        let wanted: Vec<(&str, &Dip, &HealthCheck)> = declared
            .pools()
            .iter()
            .filter_map(|p| p.health.as_ref().map(|h| (p, h)))
            .flat_map(|(p, h)| p.dips.iter().map(move |d| (p.name.as_str(), d, h)))
            .collect();
        let n = wanted.len().max(1) as u32;
        for (i, (pool, dip, check)) in (0u32..).zip(wanted) {
            let route = route(declared, dip, check);
            let host_pas = declared
                .get_host(dip.host)
                .map_or([None, None], |h| [h.pa(false), h.pa(true)]);
            let ask = ask_of(check, dip, route.as_ref());
            let kept = old
                .iter()
                .position(|t| t.pool == pool && t.key == dip.key());
            let target = match kept {
                Some(at) => {
                    let mut t = old.swap_remove(at);
                    if t.check != *check || t.route != route {
                        t.attempt = None;
                        t.next_at = t.next_at.min(now + check.interval);
                    }
                    Target {
                        check: check.clone(),
                        ask,
                        route,
                        host_pas,
                        ..t
                    }
                }
                None => Target {
                    pool: pool.to_string(),
                    key: dip.key(),
                    check: check.clone(),
                    ask,
                    route,
                    host_pas,
                    up: true,
                    ok_run: 0,
                    fail_run: 0,
                    // After one interval (the hosts of a freshly started lab or LB need
                    // a moment), spread over the next so probes do not come in bursts.
                    next_at: now + check.interval + check.interval * i / n,
                    attempt: None,
                    last_latency: None,
                    last_result: None,
                    probes: 0,
                    failures: 0,
                },
            };
            self.targets.push(target);
        }
        old.into_iter()
            .filter(|t| !t.up)
            .map(|t| (t.pool, t.key))
            .collect()
    }

    /// The earliest time [`Prober::poll`] has something to do.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.targets
            .iter()
            .map(|t| match &t.attempt {
                Some(a) => a.retransmit_at.unwrap_or(a.deadline).min(a.deadline),
                None => t.next_at,
            })
            .min()
    }

    /// Starts due probes, retransmits once at half the timeout, ends those whose
    /// time is up. Frames to send go to `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) -> Vec<Transition> {
        let mut changes = Vec::new();
        for i in 0..self.targets.len() {
            let Some(t) = self.targets.get_mut(i) else {
                continue;
            };
            if let Some(a) = &mut t.attempt {
                if now >= a.deadline {
                    let port = a.port;
                    let rst = a.conn.reset();
                    t.attempt = None;
                    if let Some(r) = &t.route
                        && let Some(f) = frame::build(r, port, &rst, 0)
                    {
                        out.push(f);
                    }
                    changes.extend(record(t, Err(Failure::Timeout), None));
                } else if a.retransmit_at.is_some_and(|at| now >= at) {
                    a.retransmit_at = None;
                    if let (Some(r), Some(seg)) = (&t.route, a.conn.retransmission())
                        && let Some(f) = frame::build(r, a.port, &seg, 0)
                    {
                        out.push(f);
                    }
                }
            }
            if t.attempt.is_none() && now >= t.next_at {
                t.next_at += t.check.interval;
                if t.next_at <= now {
                    t.next_at = now + t.check.interval;
                }
                changes.extend(self.start(i, now, out));
            }
        }
        changes
    }

    fn start(&mut self, i: usize, now: Instant, out: &mut Vec<Vec<u8>>) -> Option<Transition> {
        let port = self.free_port();
        self.opened = self.opened.wrapping_add(1);
        let isn = xxh3_64_with_seed(&self.opened.to_le_bytes(), self.seed) as u32;
        self.ident = self.ident.wrapping_add(1);
        let ident = self.ident;
        let t = self.targets.get_mut(i)?;
        let Some(route) = t.route else {
            return record(t, Err(Failure::NoPath), None);
        };
        let (conn, syn) = Conn::open(t.ask.clone(), isn);
        let Some(f) = frame::build(&route, port, &syn, ident) else {
            return record(t, Err(Failure::NoPath), None);
        };
        out.push(f);
        t.attempt = Some(Attempt {
            conn,
            port,
            started: now,
            retransmit_at: Some(now + t.check.timeout / 2),
            deadline: now + t.check.timeout,
        });
        None
    }

    /// The next probe port that no probe in flight uses.
    fn free_port(&mut self) -> u16 {
        let (first, last) = (self.settings.probe_first, self.settings.probe_last);
        let span = u32::from(last.saturating_sub(first)) + 1;
        for _ in 0..span {
            let p = if (first..=last).contains(&self.next_port) {
                self.next_port
            } else {
                first
            };
            self.next_port = if p >= last { first } else { p + 1 };
            let busy = self
                .targets
                .iter()
                .any(|t| t.attempt.as_ref().is_some_and(|a| a.port == p));
            if !busy {
                return p;
            }
        }
        first
    }

    /// A frame the engine passed on as a probe reply. Frames that match no probe in
    /// flight are ignored.
    pub fn receive(
        &mut self,
        now: Instant,
        bytes: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Option<Transition> {
        let reply = frame::parse(bytes)?;
        let t = self.targets.iter_mut().find(|t| {
            let (Some(r), Some(a)) = (&t.route, &t.attempt) else {
                return false;
            };
            a.port == reply.dst_port
                && r.port == reply.src_port
                && r.dip == reply.src
                && r.src == reply.dst
                && r.tunnel.vsid == reply.vsid
                && t.host_pas.contains(&Some(reply.host_pa))
        })?;
        let route = t.route?;
        let a = t.attempt.as_mut()?;
        let mut segs: Vec<Segment> = Vec::new();
        let verdict = a.conn.on_segment(reply.tcp, &mut segs);
        let (port, started) = (a.port, a.started);
        for s in &segs {
            if let Some(f) = frame::build(&route, port, s, 0) {
                out.push(f);
            }
        }
        let result = verdict?;
        t.attempt = None;
        let latency = now.saturating_duration_since(started);
        record(t, result, Some(latency))
    }

    /// Every target's state, for [`super::HealthStatus`].
    pub fn report(&self) -> Vec<DipHealth> {
        self.targets
            .iter()
            .map(|t| DipHealth {
                pool: t.pool.clone(),
                dip: t.key,
                protocol: t.check.probe.name(),
                port: t.check.port.unwrap_or(t.key.port),
                up: t.up,
                last_latency: t.last_latency,
                last_result: t.last_result.clone(),
                probes: t.probes,
                failures: t.failures,
                streak: t.ok_run.max(t.fail_run),
            })
            .collect()
    }
}

/// Counts one probe's result; the transition it causes, if any.
fn record(
    t: &mut Target,
    result: Result<(), Failure>,
    latency: Option<Duration>,
) -> Option<Transition> {
    t.probes += 1;
    match result {
        Ok(()) => {
            t.ok_run = t.ok_run.saturating_add(1);
            t.fail_run = 0;
            t.last_latency = latency;
            t.last_result = Some("ok".into());
            if !t.up && t.ok_run >= t.check.rise {
                t.up = true;
                return Some(Transition {
                    pool: t.pool.clone(),
                    dip: t.key,
                    up: true,
                    count: t.ok_run,
                    cause: "ok".into(),
                });
            }
        }
        Err(why) => {
            t.failures += 1;
            t.fail_run = t.fail_run.saturating_add(1);
            t.ok_run = 0;
            let cause = why.to_string();
            t.last_result = Some(cause.clone());
            if t.up && t.fail_run >= t.check.fall {
                t.up = false;
                return Some(Transition {
                    pool: t.pool.clone(),
                    dip: t.key,
                    up: false,
                    count: t.fail_run,
                    cause,
                });
            }
        }
    }
    None
}

/// The probe's way to a DIP, as the engine's to the same DIP: from the LB's PA to the
/// host's, in the DIP's VSID, from the LB's SNAT CA of the DIP's family.
fn route(policy: &Snapshot, dip: &Dip, check: &HealthCheck) -> Option<Route> {
    let subnet = policy.subnet(dip.vsid)?;
    let src = policy.snat_for(dip.vsid, dip.ca.is_ipv6())?.ca;
    let host = policy.get_host(dip.host)?;
    let (outer_src, outer_dst) = outer_addresses(policy, host)?;
    Some(Route {
        tunnel: Tunnel {
            vsid: dip.vsid.get(),
            flow_id: 0,
            outer_src,
            outer_dst,
            outer_src_mac: policy.balancer().provider.mac,
            outer_dst_mac: crate::engine::next_hop_mac(policy, host),
            inner_src_mac: subnet.lb_mac,
            inner_dst_mac: dip.mac,
        },
        src,
        dip: dip.ca,
        port: check.port.unwrap_or(dip.port),
    })
}

fn ask_of(check: &HealthCheck, dip: &Dip, route: Option<&Route>) -> Ask {
    match &check.probe {
        HealthProbe::Tcp => Ask::Syn,
        HealthProbe::Http {
            path,
            host,
            status,
            body,
        } => {
            let port = route.map_or(dip.port, |r| r.port);
            let host = match host {
                Some(h) => h.clone(),
                None if port == 80 => endpoint(dip.ca, port)
                    .rsplit_once(':')
                    .map_or(String::new(), |(h, _)| h.to_string()),
                None => endpoint(dip.ca, port),
            };
            let request = format!(
                "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: nvlb-health\r\n\
                 Connection: close\r\n\r\n"
            );
            Ask::Http {
                request: request.into_bytes(),
                status: *status,
                body: body.as_ref().map(|b| b.as_bytes().to_vec()),
            }
        }
    }
}
