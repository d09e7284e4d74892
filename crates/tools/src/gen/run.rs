//! `nvlb gen`: sender threads (one per core by default), one receiver per interface,
//! and the main thread printing progress and sampling rates, until the count, the
//! duration or a stop signal ends the run; then it waits briefly for late answers.
//!
//! Senders share one AF_PACKET socket per interface and send batches with sendmmsg;
//! receivers read a TPACKET_V3 ring. Must never send on an interface it was not given,
//! nor retry a frame after its run is over.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::dataplane::afpacket::{MAX_SEND_BATCH, Recv, Socket};
use crate::policy::Snapshot;

use super::Error;
use super::layers;
use super::payload::{self, Probe, flags};
use super::plan::{Kind, Plan, Side};
use super::stats::{self, RxStats, Sample, Summary};

/// How long a link may take to become operational after it was set up.
pub const LINK_WAIT: Duration = Duration::from_secs(3);

/// How to load.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interface toward the LB's external port (public VIPs).
    pub external: Option<String>,
    /// Interface on the PA network (CA VIPs, as a host).
    pub provider: Option<String>,
    /// Packets per second over all threads; `None` = as fast as possible.
    pub rate: Option<u64>,
    /// Packets to send in all; `None` = until the duration or a signal.
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Concurrent flows.
    pub flows: u32,
    /// Flows replaced by new ones (fresh source port, SYN first) per second.
    pub new_flows: u64,
    pub threads: usize,
    /// Frames per sendmmsg.
    pub batch: usize,
    /// How long to wait for answers after the last frame.
    pub drain: Duration,
    /// Print a live progress line on stderr.
    pub progress: bool,
    /// SYN flood: every packet is the SYN of a new flow from a random (spoofed) client
    /// address and port of the benchmarking ranges; public VIPs only.
    pub syn_flood: bool,
}

/// Counters the threads share while running.
#[derive(Debug, Default)]
struct Live {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
}

/// The share of `total` that worker `k` of `n` takes.
fn share(total: u64, k: usize, n: usize) -> u64 {
    let n = n.max(1) as u64;
    let k = k as u64;
    total / n + u64::from(k < total % n)
}

/// Runs the generator to its end; `stop` ends it early (SIGINT/SIGTERM).
pub fn run(
    policy: Arc<Snapshot>,
    plan: Arc<Plan>,
    opts: &Options,
    stop: &'static AtomicBool,
) -> Result<Summary, Error> {
    let needs_ext = plan.targets.iter().any(|t| t.side == Side::External);
    let needs_prov = plan.targets.iter().any(|t| t.side != Side::External);
    let open = |name: &Option<String>, needed: bool| -> Result<Option<Arc<Socket>>, Error> {
        match (name, needed) {
            (Some(n), true) => {
                let s = Socket::open(n, None)?;
                super::wait_operational(n, LINK_WAIT)?;
                Ok(Some(Arc::new(s)))
            }
            _ => Ok(None),
        }
    };
    let ext = open(&opts.external, needs_ext)?;
    let prov = open(&opts.provider, needs_prov)?;
    if needs_ext && ext.is_none() {
        return Err(Error::Flag(
            "external",
            "the selected public VIPs need the interface toward the LB's external port".into(),
        ));
    }
    let live = Arc::new(Live::default());
    let epoch = Instant::now();
    let rx_stop = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    let ext_sock = ext.clone();
    let prov_sock = prov.clone();
    // A flood's answers go to the spoofed clients, not to us: nothing to receive (and
    // the interface's other traffic must not count as answers).
    for sock in [ext, prov]
        .into_iter()
        .flatten()
        .filter(|_| !opts.syn_flood)
    {
        let (plan, live, rx_stop) = (Arc::clone(&plan), Arc::clone(&live), Arc::clone(&rx_stop));
        receivers.push(thread::spawn(move || {
            receive(&sock, &plan, &live, &rx_stop, epoch)
        }));
    }
    let threads = opts.threads.max(1);
    let mut senders = Vec::new();
    for k in 0..threads {
        let ctx = Sender {
            plan: Arc::clone(&plan),
            ext: ext_sock.clone(),
            prov: prov_sock.clone(),
            live: Arc::clone(&live),
            k,
            n: threads,
            opts: opts.clone(),
            epoch,
        };
        senders.push(thread::spawn(move || ctx.run(stop)));
    }
    // Progress and the pps timeline.
    let mut timeline = Vec::new();
    let (mut last_t, mut last_tx, mut last_rx) = (0.0f64, 0u64, 0u64);
    let tick = Duration::from_millis(250);
    let mut next = tick;
    let mut print_at = Duration::from_secs(1);
    while senders.iter().any(|h| !h.is_finished()) {
        thread::sleep(Duration::from_millis(10));
        let now = epoch.elapsed();
        if now < next {
            continue;
        }
        next += tick;
        let t = now.as_secs_f64();
        let tx = live.tx_packets.load(Ordering::Relaxed);
        let rx = live.rx_packets.load(Ordering::Relaxed);
        let dt = (t - last_t).max(1e-6);
        timeline.push(Sample {
            t,
            tx_pps: (tx - last_tx) as f64 / dt,
            rx_pps: (rx.saturating_sub(last_rx)) as f64 / dt,
        });
        (last_t, last_tx, last_rx) = (t, tx, rx);
        if opts.progress && now >= print_at {
            print_at += Duration::from_secs(1);
            let recent: Vec<&Sample> = timeline.iter().rev().take(4).collect();
            let n = recent.len().max(1) as f64;
            let txr = recent.iter().map(|s| s.tx_pps).sum::<f64>() / n;
            let rxr = recent.iter().map(|s| s.rx_pps).sum::<f64>() / n;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{:>6.1}s  sent {:>11} ({:>9.0} pps)  received {:>11} ({:>9.0} pps)  loss {:>6.2}%   ",
                t,
                tx,
                txr,
                rx,
                rxr,
                stats::loss_percent(tx, rx)
            );
            let _ = err.flush();
        }
    }
    let sent_at = epoch.elapsed();
    let mut send_error = None;
    for h in senders {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => send_error = Some(e),
            Err(_) => send_error = Some(std::io::Error::other("a sender thread panicked")),
        }
    }
    // Late answers: stop early once everything came back.
    let drain_end = Instant::now() + opts.drain;
    while Instant::now() < drain_end
        && live.rx_packets.load(Ordering::Relaxed) < live.tx_packets.load(Ordering::Relaxed)
        && !stop.load(Ordering::Relaxed)
    {
        thread::sleep(Duration::from_millis(5));
    }
    rx_stop.store(true, Ordering::Relaxed);
    let mut rx = RxStats::default();
    for h in receivers {
        match h.join() {
            Ok(Ok(r)) => rx.merge(r),
            Ok(Err(e)) => send_error = Some(e),
            Err(_) => send_error = Some(std::io::Error::other("a receiver thread panicked")),
        }
    }
    if opts.progress {
        eprintln!();
    }
    if let Some(e) = send_error {
        return Err(Error::Io {
            op: "run",
            cause: e,
        });
    }
    let tx = (
        live.tx_packets.load(Ordering::Relaxed),
        live.tx_bytes.load(Ordering::Relaxed),
        live.tx_dropped.load(Ordering::Relaxed),
    );
    Ok(stats::summarize(&policy, &plan, sent_at, tx, rx, timeline))
}

struct Sender {
    plan: Arc<Plan>,
    ext: Option<Arc<Socket>>,
    prov: Option<Arc<Socket>>,
    live: Arc<Live>,
    k: usize,
    n: usize,
    opts: Options,
    epoch: Instant,
}

/// One side's batch of frames being built.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    n: usize,
}

impl Batch {
    fn new(size: usize) -> Batch {
        Batch {
            bufs: vec![vec![0u8; 9216 + 128]; size],
            lens: vec![0; size],
            n: 0,
        }
    }

    /// Sends what was built; frames the device queue keeps refusing are counted as
    /// not sent. Returns (frames, bytes) sent.
    fn flush(
        &mut self,
        sock: Option<&Socket>,
        stop: &AtomicBool,
    ) -> std::io::Result<(u64, u64, u64)> {
        let n = self.n;
        self.n = 0;
        let Some(sock) = sock else {
            return Ok((0, 0, n as u64));
        };
        let frames: Vec<&[u8]> = self
            .bufs
            .iter()
            .zip(&self.lens)
            .take(n)
            .map(|(b, &l)| b.get(..l).unwrap_or(&[]))
            .collect();
        let mut done = 0;
        let mut busy = 0u32;
        while done < frames.len() {
            match sock.send_batch(frames.get(done..).unwrap_or(&[])) {
                Ok(k) if k > 0 => {
                    done += k;
                    busy = 0;
                }
                Ok(_) => busy += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) || e.raw_os_error() == Some(libc::ENOBUFS) =>
                {
                    busy += 1
                }
                Err(e) => return Err(send_error(sock.ifname(), e)),
            }
            if busy > 0 {
                if busy > 100_000 || stop.load(Ordering::Relaxed) {
                    break;
                }
                thread::yield_now();
            }
        }
        let bytes = frames.iter().take(done).map(|f| f.len() as u64).sum();
        Ok((done as u64, bytes, (frames.len() - done) as u64))
    }
}

/// A send error that names the interface and, when the link is down, what to do.
fn send_error(ifname: &str, e: std::io::Error) -> std::io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENETDOWN) => " (the interface is down: ip link set IFNAME up)",
        Some(libc::ENXIO) | Some(libc::ENODEV) => " (the interface went away)",
        Some(libc::EMSGSIZE) => " (a frame is larger than the interface's MTU: lower --sizes)",
        _ => "",
    };
    std::io::Error::new(e.kind(), format!("sending on {ifname:?}: {e}{hint}"))
}

impl Sender {
    fn run(self, stop: &AtomicBool) -> std::io::Result<()> {
        let plan = &self.plan;
        let o = &self.opts;
        let flows = o.flows.max(1);
        let slots: Vec<u32> = (0..flows)
            .filter(|s| *s as usize % self.n == self.k)
            .collect();
        if slots.is_empty() {
            return Ok(());
        }
        let mut gens = vec![0u32; slots.len()];
        let mut seqs = vec![0u32; slots.len()];
        let rate = o.rate.map(|r| share(r, self.k, self.n) as f64);
        let count = o.count.map(|c| share(c, self.k, self.n));
        let new_rate = share(o.new_flows, self.k, self.n) as f64;
        let batch = o.batch.clamp(1, MAX_SEND_BATCH);
        let mut ext = Batch::new(batch);
        let mut prov = Batch::new(batch);
        let (mut sent, mut renewed, mut cursor, mut renew_cursor) = (0u64, 0u64, 0usize, 0usize);
        let start = Instant::now();
        let nsizes = plan.sizes.len().max(1);
        let seed = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(1)
            ^ ((self.k as u64 + 1) << 48)
            ^ u64::from(std::process::id());
        let mut spoof = super::plan::Spoof::new(seed);
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let elapsed = start.elapsed();
            if o.duration.is_some_and(|d| elapsed >= d) {
                break;
            }
            let mut budget = batch as u64;
            if let Some(c) = count {
                budget = budget.min(c.saturating_sub(sent));
                if budget == 0 {
                    break;
                }
            }
            if let Some(r) = rate {
                let due = (r * elapsed.as_secs_f64()) as u64;
                let behind = due.saturating_sub(sent);
                if behind == 0 {
                    let wait = Duration::from_secs_f64(1.0 / r.max(1.0));
                    if wait > Duration::from_micros(100) {
                        thread::sleep(wait.min(Duration::from_millis(5)));
                    } else {
                        thread::yield_now();
                    }
                    continue;
                }
                budget = budget.min(behind);
            }
            let due_new = (new_rate * elapsed.as_secs_f64()) as u64;
            while renewed < due_new {
                if let (Some(g), Some(s)) = (gens.get_mut(renew_cursor), seqs.get_mut(renew_cursor))
                {
                    *g = g.wrapping_add(1);
                    *s = 0;
                }
                renew_cursor = (renew_cursor + 1) % slots.len();
                renewed += 1;
            }
            let now_ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            for _ in 0..budget {
                let (Some(&slot), Some(seq), Some(&g)) =
                    (slots.get(cursor), seqs.get_mut(cursor), gens.get(cursor))
                else {
                    break;
                };
                let Some(target) = plan.target_of(slot) else {
                    break;
                };
                let b = if target.side == Side::External {
                    &mut ext
                } else {
                    &mut prov
                };
                let kind = if *seq == 0 { Kind::Open } else { Kind::Data };
                let size = (slot as usize).wrapping_add(*seq as usize) % nsizes;
                let port = plan.port_of(slot, g, flows);
                if let (Some(buf), Some(len)) = (b.bufs.get_mut(b.n), b.lens.get_mut(b.n)) {
                    *len = if o.syn_flood {
                        let (src, sport) = spoof.client(target.client.is_ipv6());
                        plan.build_spoofed(buf, slot, src, sport, size, now_ns)
                    } else {
                        plan.build(buf, slot, port, *seq, size, kind, now_ns)
                    };
                    b.n += usize::from(*len > 0);
                }
                *seq = seq.wrapping_add(1);
                cursor = (cursor + 1) % slots.len();
            }
            let mut total = 0;
            for (b, sock) in [
                (&mut ext, self.ext.as_deref()),
                (&mut prov, self.prov.as_deref()),
            ] {
                if b.n == 0 {
                    continue;
                }
                let (n, bytes, dropped) = b.flush(sock, stop)?;
                self.live.tx_packets.fetch_add(n, Ordering::Relaxed);
                self.live.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.live.tx_dropped.fetch_add(dropped, Ordering::Relaxed);
                total += n + dropped;
            }
            sent += total;
        }
        Ok(())
    }
}

/// Reads answers off one interface until `stop`, one recv per frame: a receive ring
/// would hold a frame until its block retires (a millisecond), which the round trip
/// would then include.
fn receive(
    sock: &Socket,
    plan: &Plan,
    live: &Live,
    stop: &AtomicBool,
    epoch: Instant,
) -> std::io::Result<RxStats> {
    let mut rx = RxStats::default();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match sock.recv(&mut buf)? {
            Recv::Frame(n, _) => {
                let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                account(plan, buf.get(..n).unwrap_or(&[]), now, &mut rx, live);
            }
            Recv::Truncated(_) => {}
            Recv::Empty => {
                sock.wait(Duration::from_millis(10))?;
            }
        }
    }
    Ok(rx)
}

/// Counts one received frame if it is an answer to one of our probes.
fn account(plan: &Plan, frame: &[u8], now_ns: u64, rx: &mut RxStats, live: &Live) {
    match classify(plan, frame) {
        Answer::Ours {
            pool,
            dip,
            first,
            wrong,
            time,
        } => {
            live.rx_packets.fetch_add(1, Ordering::Relaxed);
            live.rx_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
            rx.packets += 1;
            rx.bytes += frame.len() as u64;
            rx.add_rtt(now_ns.saturating_sub(time));
            if wrong {
                rx.wrong_tenant += 1;
            }
            let e = rx.per_dip.entry((pool, dip)).or_insert((0, 0));
            e.1 += 1;
            if first {
                e.0 += 1;
            }
        }
        Answer::Mismatched => rx.mismatched += 1,
        Answer::Other => {}
    }
}

/// What a received frame is to the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A reflected probe of ours that came back the way it should.
    Ours {
        pool: u16,
        dip: u16,
        first: bool,
        wrong: bool,
        time: u64,
    },
    /// A reflected probe whose addresses, ports, pool or VSID are not its flow's.
    Mismatched,
    /// Not an answer (our own requests seen on a hub, ARP, anything else).
    Other,
}

/// Checks an answer against the flow its probe names: it must come from the VIP and
/// port the flow addressed, to its client, on the side the flow was sent from.
pub fn classify(plan: &Plan, frame: &[u8]) -> Answer {
    let Some(l) = layers::parse(frame) else {
        return Answer::Other;
    };
    // Only what is addressed to the generator: to the router's (gateway) MAC, or
    // NVGRE to a client VM's host. On a shared PA segment the reflector's answers to
    // the LB pass by too.
    let to_us = match l.tunnel {
        None => l.dst_mac == plan.gateway_mac,
        Some(n) => plan
            .targets
            .iter()
            .any(|t| matches!(t.side, Side::Provider { host_mac, .. } if host_mac == n.dst_mac)),
    };
    if !to_us {
        return Answer::Other;
    }
    let Some(p) = frame.get(l.payload..l.end).and_then(Probe::new_checked) else {
        return Answer::Other;
    };
    if p.flags() & flags::REFLECTED == 0 {
        return Answer::Other;
    }
    let Some(t) = plan.target_of(p.flow()) else {
        return Answer::Mismatched;
    };
    let side_ok = match (t.side, l.tunnel) {
        (Side::External, None) => true,
        (Side::Provider { vsid, host_mac }, Some(n)) => {
            n.vsid == vsid.get() && n.dst_mac == host_mac
        }
        _ => false,
    };
    if !side_ok || t.pool != p.pool() || l.src != t.vip || l.src_port != t.port || l.dst != t.client
    {
        return Answer::Mismatched;
    }
    Answer::Ours {
        pool: p.pool(),
        dip: p.dip(),
        first: p.seq() == 0,
        wrong: p.flags() & flags::WRONG_TENANT != 0 || p.dip() == payload::UNSET,
        time: p.time(),
    }
}

/// The first `count` frames one sender would send over `flows` flows (all at time 0),
/// without any socket: for `--write-pcap`, to inspect them with tshark.
pub fn frames(plan: &Plan, flows: u32, count: u64) -> Vec<Vec<u8>> {
    let flows = flows.max(1);
    let mut seqs = vec![0u32; flows as usize];
    let nsizes = plan.sizes.len().max(1);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 9216 + 128];
    for i in 0..count {
        let slot = (i % u64::from(flows)) as u32;
        let Some(seq) = seqs.get_mut(slot as usize) else {
            break;
        };
        let kind = if *seq == 0 { Kind::Open } else { Kind::Data };
        let size = (slot as usize).wrapping_add(*seq as usize) % nsizes;
        let port = plan.port_of(slot, 0, flows);
        let n = plan.build(&mut buf, slot, port, *seq, size, kind, 0);
        *seq += 1;
        out.push(buf.get(..n).unwrap_or(&[]).to_vec());
    }
    out
}
