//! `nvlb gen --reflect`: every Hyper-V host at once. Takes the LB's NVGRE toward DIPs
//! off the PA network, checks it as the DIP's host would (the host's MAC and PA, the
//! LB as outer source, NVGRE's GRE header, a declared VSID, the lookup record placing
//! the inner destination CA on that host behind that MAC, the LB's MAC of the subnet
//! as inner source), checks that the DIP belongs to the pool the generator addressed
//! (else a wrong-tenant delivery), and answers as the DIP would: the same frame with
//! both layers' endpoints swapped, back to the LB's PA in the same VSID.
//!
//! `reflect` is a pure function over one frame; `Reflector::run` owns the socket.
//! Never answers a frame the policy does not explain, never panics on any frame.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use crate::dataplane::Error;
use crate::dataplane::afpacket::{MAX_SEND_BATCH, Recv, Socket};
use crate::policy::{HostId, Snapshot};
use crate::wire::{MacAddr, checksum, ip_proto, tcp};

use super::layers::{self, Layers};
use super::payload::{self, Probe, flags};

pub use super::skip::DropReason as Skip;

/// What one answered frame was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reflected {
    pub pool: u16,
    /// The DIP's index in the pool; `None` when the LB sent it to a DIP of no such
    /// pool member (a wrong-tenant delivery, answered with the flag set).
    pub dip: Option<u16>,
    pub vsid: u32,
}

/// The policy with the index the reflector needs per frame.
#[derive(Debug)]
pub struct Hosts {
    pub(super) policy: Arc<Snapshot>,
    pub(super) by_mac: HashMap<MacAddr, HostId>,
    /// Also echo plain-IP probes (no policy check): the far end of a baseline where
    /// the kernel, not the LB, forwards the generator's packets.
    pub echo_plain: bool,
}

impl Hosts {
    pub fn new(policy: Arc<Snapshot>) -> Hosts {
        let mut by_mac = HashMap::new();
        for (id, h) in (0..).zip(policy.hosts()) {
            by_mac.entry(h.mac).or_insert(id);
        }
        Hosts {
            policy,
            by_mac,
            echo_plain: false,
        }
    }

    pub fn policy(&self) -> &Snapshot {
        &self.policy
    }
}

/// Checks one frame from the PA network and, when a DIP's host would accept it,
/// rewrites it in place into the DIP's answer.
pub fn reflect(hosts: &Hosts, frame: &mut [u8]) -> Result<Reflected, Skip> {
    let policy = hosts.policy();
    let l = layers::parse(frame).ok_or(Skip::NotTcpUdp)?;
    let Some(t) = l.tunnel else {
        return echo(hosts, frame, &l);
    };
    let host_id = *hosts.by_mac.get(&t.dst_mac).ok_or(Skip::NotHostMac)?;
    let host = policy.get_host(host_id).ok_or(Skip::NotHostMac)?;
    if host.pa(t.dst.is_ipv6()) != Some(t.dst) {
        return Err(Skip::NotHostPa);
    }
    if !policy.balancer().provider.owns(t.src) {
        return Err(Skip::NotFromLb);
    }
    if !t.well_formed {
        return Err(Skip::BadGre);
    }
    let vsid = l.vsid().ok_or(Skip::UnknownVsid)?;
    let subnet = policy.subnet(vsid).ok_or(Skip::UnknownVsid)?;
    let probe = frame
        .get(l.payload..l.end)
        .and_then(Probe::new_checked)
        .ok_or(Skip::NotProbe)?;
    if probe.flags() & flags::REFLECTED != 0 {
        return Err(Skip::Answer);
    }
    let pool_index = probe.pool();
    let rec = policy.lookup(vsid, l.dst).ok_or(Skip::UnknownCa)?;
    if rec.host != host_id {
        return Err(Skip::WrongHost);
    }
    if rec.mac != l.dst_mac || l.src_mac != subnet.lb_mac {
        return Err(Skip::WrongMac);
    }
    let pool = policy
        .get_pool(u32::from(pool_index))
        .ok_or(Skip::UnknownPool)?;
    let dip = pool
        .dips
        .iter()
        .position(|d| d.vsid == vsid && d.ca == l.dst && d.port == l.dst_port)
        .and_then(|i| u16::try_from(i).ok());
    answer(frame, &l, dip);
    Ok(Reflected {
        pool: pool_index,
        dip,
        vsid: vsid.get(),
    })
}

/// A plain-IP probe in echo mode: answered with endpoints swapped, attributed to DIP 0
/// of the pool it names (there is no DIP on a kernel-forwarded path).
fn echo(hosts: &Hosts, frame: &mut [u8], l: &Layers) -> Result<Reflected, Skip> {
    if !hosts.echo_plain {
        return Err(Skip::NotNvgre);
    }
    let probe = frame
        .get(l.payload..l.end)
        .and_then(Probe::new_checked)
        .ok_or(Skip::NotProbe)?;
    if probe.flags() & flags::REFLECTED != 0 {
        return Err(Skip::Answer);
    }
    let pool = probe.pool();
    answer(frame, l, Some(0));
    Ok(Reflected {
        pool,
        dip: Some(0),
        vsid: 0,
    })
}

/// Swaps `n` bytes at `a` with `n` bytes at `b` (non-overlapping); nothing when
/// either range is outside `buf`.
fn swap(buf: &mut [u8], a: usize, b: usize, n: usize) {
    let mut tmp = [0u8; 16];
    let (Some(t), true) = (tmp.get_mut(..n), a + n <= buf.len() && b + n <= buf.len()) else {
        return;
    };
    t.copy_from_slice(&buf[a..a + n]);
    buf.copy_within(b..b + n, a);
    buf[b..b + n].copy_from_slice(t);
}

/// The DIP's answer: every layer's endpoints swapped, TCP SYN answered with SYN-ACK,
/// the probe marked, the L4 checksum recomputed. IPv4 header checksums survive a swap
/// of the addresses unchanged.
fn answer(frame: &mut [u8], l: &Layers, dip: Option<u16>) {
    if let Some(t) = l.tunnel {
        swap(frame, 0, 6, 6);
        let (at, n) = if t.dst.is_ipv6() { (8, 16) } else { (12, 4) };
        swap(frame, t.ip + at, t.ip + at + n, n);
    }
    swap(frame, l.eth, l.eth + 6, 6);
    let (at, n) = if l.v6 { (8, 16) } else { (12, 4) };
    swap(frame, l.ip + at, l.ip + at + n, n);
    swap(frame, l.l4, l.l4 + 2, 2);
    let tcp = l.proto == ip_proto::TCP;
    if tcp && let Some(f) = frame.get_mut(l.l4 + 13) {
        if *f & tcp::flags::SYN != 0 {
            *f = tcp::flags::SYN | tcp::flags::ACK;
        } else {
            *f = tcp::flags::ACK | tcp::flags::PSH;
        }
    }
    if let Some(mut p) = frame.get_mut(l.payload..l.end).and_then(Probe::new_checked) {
        let f = p.flags() | flags::REFLECTED;
        p.set_flags(if dip.is_some() {
            f
        } else {
            f | flags::WRONG_TENANT
        });
        p.set_dip(dip.unwrap_or(payload::UNSET));
    }
    let csum_at = l.l4 + if tcp { 16 } else { 6 };
    if let Some(c) = frame.get_mut(csum_at..csum_at + 2) {
        c.fill(0);
    }
    let Some(seg) = frame.get(l.l4..l.end) else {
        return;
    };
    let len = u32::try_from(seg.len()).unwrap_or(u32::MAX);
    let pseudo = checksum::pseudo_header(l.dst, l.src, l.proto, len);
    let mut c = checksum::finish(
        u32::from(checksum::fold(pseudo)) + u32::from(checksum::fold(checksum::sum(seg))),
    );
    if !tcp && c == 0 {
        c = 0xffff;
    }
    if let Some(dst) = frame.get_mut(csum_at..csum_at + 2) {
        dst.copy_from_slice(&c.to_be_bytes());
    }
}

/// The reflector's counts, readable while it runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub reflected: AtomicU64,
    pub wrong_tenant: AtomicU64,
    pub send_errors: AtomicU64,
}

/// What the reflector saw, by reason and by DIP.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub seconds: f64,
    pub received: u64,
    pub reflected: u64,
    pub wrong_tenant: u64,
    pub send_errors: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    /// "pool/dip CA:port (VSID n)" -> packets.
    pub per_dip: BTreeMap<String, u64>,
    pub per_vsid: BTreeMap<u32, u64>,
}

impl Report {
    pub fn render(&self) -> String {
        let mut s = format!(
            "reflector: {:.1} s, received {}, reflected {}, wrong-tenant {}, send errors {}\n",
            self.seconds, self.received, self.reflected, self.wrong_tenant, self.send_errors
        );
        for (k, v) in &self.per_dip {
            s.push_str(&format!("  dip  {k:<48} {v:>12}\n"));
        }
        for (k, v) in &self.per_vsid {
            s.push_str(&format!("  vsid {k:<48} {v:>12}\n"));
        }
        for (k, v) in &self.skipped {
            s.push_str(&format!("  skipped {k:<45} {v:>12}\n"));
        }
        s
    }
}

/// Frames of at most this many bytes are reflected.
const MAX_FRAME: usize = 9216;

/// The reflector on one PA interface.
pub struct Reflector {
    hosts: Hosts,
    sock: Socket,
    pub counters: Arc<Counters>,
}

impl Reflector {
    /// Opens the interface (in the calling thread's namespace).
    /// `echo_plain`: also answer plain-IP probes, see [`Hosts::echo_plain`].
    pub fn open(policy: Arc<Snapshot>, ifname: &str, echo_plain: bool) -> Result<Reflector, Error> {
        let sock = Socket::open(ifname, None)?;
        super::wait_operational(ifname, super::run::LINK_WAIT).map_err(|e| match e {
            super::Error::Dataplane(d) => d,
            other => Error::Setup {
                op: "link",
                cause: io::Error::other(other.to_string()),
            },
        })?;
        Ok(Reflector {
            hosts: Hosts {
                echo_plain,
                ..Hosts::new(policy)
            },
            sock,
            counters: Arc::new(Counters::default()),
        })
    }

    /// Answers until `stop` is set or `limit` passed.
    pub fn run(self, stop: &AtomicBool, limit: Option<Duration>) -> io::Result<Report> {
        let started = Instant::now();
        let mut bufs = vec![vec![0u8; MAX_FRAME]; MAX_SEND_BATCH];
        let mut lens = vec![0usize; MAX_SEND_BATCH];
        let mut skipped = [0u64; Skip::ALL.len()];
        let mut per_dip: HashMap<(u16, Option<u16>, u32), u64> = HashMap::new();
        let c = Arc::clone(&self.counters);
        while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| started.elapsed() < l) {
            // Take what is waiting (up to a batch), answer it with one sendmmsg, and
            // sleep in poll only when nothing came: low latency when idle, batches
            // under load.
            let mut n = 0usize;
            let mut got = 0usize;
            while n < MAX_SEND_BATCH {
                let (Some(buf), Some(len)) = (bufs.get_mut(n), lens.get_mut(n)) else {
                    break;
                };
                match self.sock.recv(buf)? {
                    Recv::Frame(k, _) => {
                        got += 1;
                        c.received.fetch_add(1, Ordering::Relaxed);
                        let Some(frame) = buf.get_mut(..k) else {
                            continue;
                        };
                        match reflect(&self.hosts, frame) {
                            Ok(r) => {
                                *len = k;
                                n += 1;
                                *per_dip.entry((r.pool, r.dip, r.vsid)).or_default() += 1;
                                if r.dip.is_none() {
                                    c.wrong_tenant.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(s) => skipped[s as usize] += 1,
                        }
                    }
                    Recv::Truncated(_) => {
                        got += 1;
                        c.received.fetch_add(1, Ordering::Relaxed);
                        skipped[Skip::TooLong as usize] += 1;
                    }
                    Recv::Empty => break,
                }
            }
            flush(&self.sock, &bufs, &lens, n, &c);
            if got == 0 {
                self.sock.wait(Duration::from_millis(20))?;
            }
        }
        let policy = self.hosts.policy();
        let mut report = Report {
            seconds: started.elapsed().as_secs_f64(),
            received: c.received.load(Ordering::Relaxed),
            reflected: c.reflected.load(Ordering::Relaxed),
            wrong_tenant: c.wrong_tenant.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            ..Report::default()
        };
        for (reason, n) in Skip::ALL.iter().zip(skipped) {
            if n > 0 {
                report.skipped.insert(reason.name(), n);
            }
        }
        for ((pool, dip, vsid), n) in per_dip {
            *report
                .per_dip
                .entry(dip_name(policy, pool, dip))
                .or_default() += n;
            *report.per_vsid.entry(vsid).or_default() += n;
        }
        Ok(report)
    }
}

/// "pool dip CA:port" for reports; "pool WRONG-TENANT" for a delivery outside it.
pub fn dip_name(policy: &Snapshot, pool: u16, dip: Option<u16>) -> String {
    let Some(p) = policy.get_pool(u32::from(pool)) else {
        return format!("pool#{pool}");
    };
    match dip.and_then(|d| p.dips.get(usize::from(d))) {
        Some(d) => match d.ca {
            IpAddr::V4(a) => format!("{} {}:{} vsid {}", p.name, a, d.port, d.vsid),
            IpAddr::V6(a) => format!("{} [{}]:{} vsid {}", p.name, a, d.port, d.vsid),
        },
        None => format!("{} WRONG-TENANT", p.name),
    }
}

/// Sends the first `n` answers, retrying a full queue briefly; counts what is lost.
fn flush(sock: &Socket, bufs: &[Vec<u8>], lens: &[usize], n: usize, c: &Counters) {
    let frames: Vec<&[u8]> = bufs
        .iter()
        .zip(lens)
        .take(n)
        .map(|(b, &l)| b.get(..l).unwrap_or(&[]))
        .collect();
    let mut done = 0;
    let mut tries = 0;
    while done < frames.len() {
        match sock.send_batch(frames.get(done..).unwrap_or(&[])) {
            Ok(k) if k > 0 => done += k,
            _ if tries < 1000 => {
                tries += 1;
                std::thread::yield_now();
            }
            _ => break,
        }
    }
    c.reflected.fetch_add(done as u64, Ordering::Relaxed);
    c.send_errors
        .fetch_add((frames.len() - done) as u64, Ordering::Relaxed);
}
