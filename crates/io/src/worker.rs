//! One data-plane worker: an OS thread owning an `Engine` (its flow shard), its own
//! sockets on the LB's interfaces, and an inbox of frames other workers handed it.
//!
//! The loop reads the clock once per batch, drains the inbox and each socket up to a
//! batch, sends what the engine emits out of the socket of its egress, queues handoffs
//! to their owners, and expires flows between batches. It sleeps in poll only when a
//! whole round found nothing. It never blocks on another worker and never stops for a
//! failed send (counted instead).

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::PolicyCell;
use crate::engine::{Counters, Egress, Engine, MAX_BATCH, Outputs, Verdict, output_len};
use crate::flow::Nanos;

use super::LocalSender;
use super::afpacket::{Meta, Recv, Socket, Statistics};
use super::handoff::{Frame, Inbox, Outbox, Refused};
use super::ring::{Ring, RingFrame};
use super::sys;
use super::txbatch::TxBatch;
use super::xdp::io::{NotQueued, XdpRx, XdpTx};

/// Frames taken from one source before turning to the next.
const BATCH: usize = 64;
/// Ring blocks taken from one ring before turning to the next source.
const RING_BLOCKS_PER_BATCH: usize = 1;
/// Expired bindings removed between batches.
const EXPIRE_BUDGET: usize = 256;
/// Longest sleep: bounds how late a worker notices a stop request.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Receive buffer: the largest frame an interface can hand up (GRO may merge beyond
/// the MTU); longer frames are counted as truncated and dropped.
const RX_BUF: usize = 65536 + 64;

/// The monotonic clock all workers share, read once per batch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the data plane started.
    pub fn now(&self) -> Nanos {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The LB's two ports as one worker sees them; `provider` is None when both are the
/// same interface (one socket serves both).
#[derive(Debug)]
pub struct Ports {
    pub external: Socket,
    pub provider: Option<Socket>,
}

impl Ports {
    fn get(&self, egress: Egress) -> &Socket {
        match (egress, &self.provider) {
            (Egress::Provider, Some(p)) => p,
            _ => &self.external,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Socket> {
        std::iter::once(&self.external).chain(self.provider.iter())
    }
}

/// What a worker did around the engine: socket and queue events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub rx_frames: u64,
    pub rx_truncated: u64,
    pub rx_errors: u64,
    /// Frames that arrived 802.1Q-tagged (the kernel stripped the tag): dropped.
    pub rx_vlan_tagged: u64,
    /// Frames with partial checksums (TP_STATUS_CSUMNOTREADY), passed on as they are:
    /// turn tx offload off on the senders' veths, as the lab does (docs/architecture.md).
    pub rx_csum_partial: u64,
    pub tx_frames: u64,
    /// Not sent because the device queue was full (EAGAIN/ENOBUFS).
    pub tx_queue_full: u64,
    pub tx_errors: u64,
    pub handoff_sent: u64,
    pub handoff_received: u64,
    /// Frames dropped because the owner's inbox was full.
    pub handoff_queue_full: u64,
    /// A handed-over frame its owner would hand on again (steering disagreed): dropped.
    pub handoff_bounced: u64,
    /// PACKET_STATISTICS over the worker's sockets.
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    /// Bindings forgotten because a new policy no longer has their pool or DIP.
    pub flows_forgotten_on_reload: u64,
    /// Frames passed to the LB's own control plane (health probe replies).
    pub local_frames: u64,
    /// Such frames dropped because its queue was full (or nothing listens).
    pub local_queue_full: u64,
}

impl IoCounters {
    pub fn add(&mut self, o: &IoCounters) {
        self.rx_frames += o.rx_frames;
        self.rx_truncated += o.rx_truncated;
        self.rx_errors += o.rx_errors;
        self.rx_vlan_tagged += o.rx_vlan_tagged;
        self.rx_csum_partial += o.rx_csum_partial;
        self.tx_frames += o.tx_frames;
        self.tx_queue_full += o.tx_queue_full;
        self.tx_errors += o.tx_errors;
        self.handoff_sent += o.handoff_sent;
        self.handoff_received += o.handoff_received;
        self.handoff_queue_full += o.handoff_queue_full;
        self.handoff_bounced += o.handoff_bounced;
        self.kernel_packets += o.kernel_packets;
        self.kernel_drops += o.kernel_drops;
        self.flows_forgotten_on_reload += o.flows_forgotten_on_reload;
        self.local_frames += o.local_frames;
        self.local_queue_full += o.local_queue_full;
    }

    /// (name, value) pairs in a fixed order, for printing and metrics.
    pub fn fields(&self) -> [(&'static str, u64); 17] {
        [
            ("rx_frames", self.rx_frames),
            ("rx_truncated", self.rx_truncated),
            ("rx_errors", self.rx_errors),
            ("rx_vlan_tagged", self.rx_vlan_tagged),
            ("rx_csum_partial", self.rx_csum_partial),
            ("tx_frames", self.tx_frames),
            ("tx_queue_full", self.tx_queue_full),
            ("tx_errors", self.tx_errors),
            ("handoff_sent", self.handoff_sent),
            ("handoff_received", self.handoff_received),
            ("handoff_queue_full", self.handoff_queue_full),
            ("handoff_bounced", self.handoff_bounced),
            ("kernel_packets", self.kernel_packets),
            ("kernel_drops", self.kernel_drops),
            ("flows_forgotten_on_reload", self.flows_forgotten_on_reload),
            ("local_frames", self.local_frames),
            ("local_queue_full", self.local_queue_full),
        ]
    }
}

/// A worker's totals when it stops.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub engine: Counters,
    pub io: IoCounters,
}

impl Report {
    pub fn add(&mut self, o: &Report) {
        self.engine.add(&o.engine);
        self.io.add(&o.io);
    }
}

/// The part of a worker that handles one frame: everything but the receive buffer and
/// the inbox, so that a frame borrowed from either can be handled.
struct Core {
    engine: Engine,
    /// Everything the engine's verdicts act on, apart from the engine so that both can
    /// be borrowed at once.
    rest: Rest,
}

/// Where a worker's output frames go: the send arena and its AF_PACKET sockets, or
/// the UMEM and TX rings of its AF_XDP sockets.
enum Out {
    Packet { ports: Ports, tx: TxBatch },
    Xdp(XdpTx),
}

/// See [`Core::rest`].
struct Rest {
    out: Out,
    outboxes: Vec<Outbox>,
    io: IoCounters,
    /// Buffers of frames handed to this worker, reused for the frames it hands to
    /// others: with traffic in both directions no handoff allocates once warm.
    spare: Vec<Frame>,
    /// Where `Verdict::Local` frames go (the health thread), if anything listens.
    local: Option<LocalSender>,
}

/// Most spare handoff buffers a worker keeps (a receiver that never sends would
/// otherwise hoard every buffer it was given).
const SPARE_MAX: usize = 4096;

impl Core {
    /// Keeps a handed-over frame's buffer for a later handoff.
    fn recycle(&mut self, frame: Frame) {
        if self.rest.spare.len() < SPARE_MAX {
            self.rest.spare.push(frame);
        }
    }

    /// Sends the RSTs of flows that expired under a `tcp_reset` rule (idle reset).
    fn send_resets(&mut self) {
        if !self.engine.has_resets() {
            return;
        }
        loop {
            let buf = self.rest.buffer(crate::engine::MAX_RESET_FRAME);
            let Some((egress, len)) = self.engine.next_reset(buf) else {
                break;
            };
            self.rest.commit(egress, len);
        }
        self.rest.flush_tx();
    }

    fn handle(&mut self, now: Nanos, frame: &[u8], handed_over: bool) {
        // The engine writes straight into the send batch's arena.
        let mut sink = Sink {
            rest: &mut self.rest,
            handed_over,
        };
        let verdict = self
            .engine
            .process(now, frame, sink.rest.buffer(output_len(frame.len())));
        sink.verdict(0, frame, verdict);
    }

    /// Received frames (a ring block's, or a batch of socket receives), through the
    /// engine's batch path together; what the kernel knows about a frame decides
    /// first: a VLAN-tagged frame is dropped, a partial checksum counted.
    fn receive_batch(&mut self, now: Nanos, batch: &[RingFrame<'_>]) {
        let mut frames: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
        let mut n = 0;
        for frame in batch {
            self.rest.io.rx_frames += 1;
            match frame {
                RingFrame::Frame(bytes, meta) => {
                    if meta.vlan_tagged {
                        self.rest.io.rx_vlan_tagged += 1;
                        continue;
                    }
                    if meta.csum_partial {
                        self.rest.io.rx_csum_partial += 1;
                    }
                    if let Some(slot) = frames.get_mut(n) {
                        *slot = bytes;
                        n += 1;
                    }
                }
                RingFrame::Truncated => self.rest.io.rx_truncated += 1,
            }
        }
        let mut sink = Sink {
            rest: &mut self.rest,
            handed_over: false,
        };
        self.engine
            .process_batch(now, frames.get(..n).unwrap_or(&[]), &mut sink);
    }
}

/// Where the engine's decisions go: the send arena, the other workers' inboxes, the
/// health thread. Borrows everything of [`Core`] but the engine.
struct Sink<'a> {
    rest: &'a mut Rest,
    /// The frames came from another worker's handoff: a second handoff is refused.
    handed_over: bool,
}

impl Outputs for Sink<'_> {
    fn buffer(&mut self, need: usize) -> &mut [u8] {
        self.rest.buffer(need)
    }

    fn verdict(&mut self, _index: usize, frame: &[u8], verdict: Verdict) {
        let r = &mut *self.rest;
        match verdict {
            Verdict::Forward { egress, len, .. } | Verdict::Reply { egress, len } => {
                r.commit(egress, len);
            }
            Verdict::Handoff { worker } => {
                if self.handed_over {
                    r.io.handoff_bounced += 1;
                    return;
                }
                match r.outboxes.get_mut(usize::from(worker)) {
                    Some(outbox) => match outbox.push({
                        let mut buf = r.spare.pop().unwrap_or_default();
                        buf.clear();
                        buf.extend_from_slice(frame);
                        buf
                    }) {
                        Ok(()) => r.io.handoff_sent += 1,
                        Err(Refused::Full | Refused::Closed) => r.io.handoff_queue_full += 1,
                    },
                    None => r.io.handoff_bounced += 1,
                }
            }
            Verdict::Local => {
                let Some(tx) = &r.local else {
                    r.io.local_queue_full += 1;
                    return;
                };
                match tx.try_send(frame.to_vec()) {
                    Ok(()) => r.io.local_frames += 1,
                    Err(_) => r.io.local_queue_full += 1,
                }
            }
            Verdict::Drop(_) => {}
        }
    }
}

impl Rest {
    /// Room for the engine's next output frame of up to `need` bytes (the send
    /// arena is flushed first when it is full).
    fn buffer(&mut self, need: usize) -> &mut [u8] {
        if let Out::Packet { tx, .. } = &self.out
            && !tx.has_room(need)
        {
            self.flush_tx();
        }
        match &mut self.out {
            Out::Packet { tx, .. } => tx.tail(),
            Out::Xdp(x) => x.buffer(),
        }
    }

    /// Queues the frame just written into [`Rest::buffer`] for `egress`.
    fn commit(&mut self, egress: Egress, len: usize) {
        match &mut self.out {
            Out::Packet { tx, .. } => {
                if !tx.commit(egress, len) {
                    self.io.tx_errors += 1;
                }
            }
            Out::Xdp(x) => match x.commit(egress, len) {
                Ok(()) => {}
                Err(NotQueued::RingFull) => self.io.tx_queue_full += 1,
                Err(NotQueued::NoFrame) => self.io.tx_errors += 1,
            },
        }
    }

    /// Sends what the round decided: one sendmmsg per egress and batch, or the TX
    /// rings published and the kernel woken.
    fn flush_tx(&mut self) {
        let f = match &mut self.out {
            Out::Packet { ports, tx } => {
                if tx.is_empty() {
                    return;
                }
                tx.flush(ports.get(Egress::External), ports.get(Egress::Provider))
            }
            Out::Xdp(x) => {
                if x.is_empty() {
                    return;
                }
                x.flush()
            }
        };
        self.io.tx_frames += f.sent;
        self.io.tx_queue_full += f.queue_full;
        self.io.tx_errors += f.errors;
    }
}

/// One worker, ready to run on its own thread.
pub struct Worker {
    core: Core,
    /// A handed-over frame taken while checking the inbox before a sleep.
    held: Option<Frame>,
    /// Where new policy snapshots appear, and the generation this worker runs.
    cell: Arc<PolicyCell>,
    generation: u64,
    inbox: Inbox,
    rx: Vec<u8>,
    /// Receive rings, external first (ring backend); empty: receive from the sockets.
    rings: Vec<Ring>,
    /// The AF_XDP sockets' receiving halves (xdp backend).
    xdp: Option<XdpRx>,
    /// Copies the counters for `/metrics` between batches (`nvlb run --metrics`).
    publisher: Option<crate::publish::Publisher>,
}

impl Worker {
    pub fn new(
        engine: Engine,
        ports: Ports,
        rings: Vec<Ring>,
        inbox: Inbox,
        outboxes: Vec<Outbox>,
        cell: Arc<PolicyCell>,
    ) -> Worker {
        let out = Out::Packet {
            ports,
            tx: TxBatch::new(output_len(RX_BUF)),
        };
        let mut w = Worker::with_out(engine, out, inbox, outboxes, cell);
        // A batch of receive slots (zeroed lazily by the kernel: only the pages frames
        // are written into are ever backed).
        if rings.is_empty() {
            w.rx = vec![0; RX_BUF * BATCH];
        }
        w.rings = rings;
        w
    }

    /// A worker on AF_XDP sockets: it receives from `rx` and sends through `tx`.
    pub fn new_xdp(
        engine: Engine,
        rx: XdpRx,
        tx: XdpTx,
        inbox: Inbox,
        outboxes: Vec<Outbox>,
        cell: Arc<PolicyCell>,
    ) -> Worker {
        let mut w = Worker::with_out(engine, Out::Xdp(tx), inbox, outboxes, cell);
        w.xdp = Some(rx);
        w
    }

    /// What both backends' workers share: the engine, the sending side, the inbox.
    fn with_out(
        engine: Engine,
        out: Out,
        inbox: Inbox,
        outboxes: Vec<Outbox>,
        cell: Arc<PolicyCell>,
    ) -> Worker {
        Worker {
            generation: cell.generation(),
            cell,
            held: None,
            core: Core {
                engine,
                rest: Rest {
                    out,
                    outboxes,
                    io: IoCounters::default(),
                    spare: Vec::new(),
                    local: None,
                },
            },
            inbox,
            rx: Vec::new(),
            rings: Vec::new(),
            xdp: None,
            publisher: None,
        }
    }

    /// Sends the frames the engine gives the LB's own control plane to `tx`.
    pub fn with_local(mut self, tx: LocalSender) -> Worker {
        self.core.rest.local = Some(tx);
        self
    }

    /// Publishes this worker's counters for the metrics endpoint between batches.
    pub fn with_publisher(mut self, publisher: crate::publish::Publisher) -> Worker {
        self.publisher = Some(publisher);
        self
    }

    /// Runs until a stop is requested, then reports.
    pub fn run(mut self, clock: Clock) -> Report {
        while !sys::stop_requested() {
            let generation = self.cell.generation();
            if generation != self.generation {
                self.generation = generation;
                let forgotten = self.core.engine.set_policy(self.cell.load());
                self.core.rest.io.flows_forgotten_on_reload += forgotten as u64;
            }
            let now = clock.now();
            let mut work = self.drain_inbox(now);
            work += self.drain_socket(now, false);
            work += self.drain_socket(now, true);
            self.core.rest.flush_tx();
            for outbox in &mut self.core.rest.outboxes {
                outbox.flush();
            }
            self.core.engine.expire(now, EXPIRE_BUDGET);
            self.core.send_resets();
            if let Some(p) = &mut self.publisher {
                p.tick(now, &self.core.engine, &self.core.rest.io, work == 0);
            }
            if work == 0 {
                self.sleep();
            }
        }
        self.report()
    }

    fn drain_inbox(&mut self, now: Nanos) -> usize {
        let mut n = 0;
        if let Some(frame) = self.held.take() {
            self.core.rest.io.handoff_received += 1;
            self.core.handle(now, &frame, true);
            self.core.recycle(frame);
            n += 1;
        }
        while n < BATCH {
            let Some(frame) = self.inbox.pop() else { break };
            self.core.rest.io.handoff_received += 1;
            self.core.handle(now, &frame, true);
            self.core.recycle(frame);
            n += 1;
        }
        n
    }

    fn drain_socket(&mut self, now: Nanos, provider: bool) -> usize {
        if let Some(xdp) = &mut self.xdp {
            let core = &mut self.core;
            return xdp.drain(usize::from(provider), |batch| {
                core.receive_batch(now, batch)
            });
        }
        if !self.rings.is_empty() {
            return self.drain_ring(now, usize::from(provider));
        }
        // Up to a batch of frames, each in its own slot of the receive buffer, then
        // through the engine's batch path together, as the ring backend does.
        let mut lens: [(usize, Meta); BATCH] = [(0, Meta::default()); BATCH];
        let mut got = 0;
        let mut n = 0;
        while n < BATCH {
            let Out::Packet { ports, .. } = &self.core.rest.out else {
                break;
            };
            let sock = match (provider, &ports.provider) {
                (false, _) => &ports.external,
                (true, Some(p)) => p,
                (true, None) => break,
            };
            let Some(slot) = self.rx.get_mut(got * RX_BUF..(got + 1) * RX_BUF) else {
                break;
            };
            match sock.recv(slot) {
                Ok(Recv::Frame(len, meta)) => {
                    lens[got] = (len, meta);
                    got += 1;
                }
                Ok(Recv::Truncated(_)) => {
                    self.core.rest.io.rx_frames += 1;
                    self.core.rest.io.rx_truncated += 1;
                }
                Ok(Recv::Empty) => break,
                Err(_) => {
                    self.core.rest.io.rx_errors += 1;
                    break;
                }
            }
            n += 1;
        }
        if got > 0 {
            let mut frames: [RingFrame<'_>; BATCH] = std::array::from_fn(|_| RingFrame::Truncated);
            for (i, (frame, &(len, meta))) in frames.iter_mut().zip(&lens[..got]).enumerate() {
                let bytes = self
                    .rx
                    .get(i * RX_BUF..i * RX_BUF + len.min(RX_BUF))
                    .unwrap_or(&[]);
                *frame = RingFrame::Frame(bytes, meta);
            }
            // Counts each frame received (`rx_frames`) as the ring backend does.
            self.core.receive_batch(now, &frames[..got]);
        }
        n
    }

    fn drain_ring(&mut self, now: Nanos, index: usize) -> usize {
        let Some(ring) = self.rings.get_mut(index) else {
            return 0;
        };
        let core = &mut self.core;
        ring.drain(RING_BLOCKS_PER_BATCH, MAX_BATCH, |batch| {
            core.receive_batch(now, batch)
        })
    }

    /// Waits for frames on any socket or the inbox. The inbox's wakeup is cleared only
    /// here, not every round (that was an eventfd read per round for nothing); a frame
    /// queued just before the clear is taken now, so no wakeup is lost.
    fn sleep(&mut self) {
        self.inbox.clear_wakeup();
        if let Some(frame) = self.inbox.pop() {
            self.held = Some(frame);
            return;
        }
        let mut fds: Vec<BorrowedFd> = match (&self.xdp, &self.core.rest.out) {
            (Some(x), _) => x.fds().collect(),
            (None, Out::Packet { ports, .. }) => ports.all().map(|s| s.as_fd()).collect(),
            (None, Out::Xdp(_)) => Vec::new(),
        };
        fds.push(self.inbox.wake_fd());
        let ms = i32::try_from(IDLE_POLL.as_millis()).unwrap_or(100);
        // An error here (EINTR is already zero) leaves the next round to find out.
        let _ = sys::poll_readable(&fds, ms);
    }

    fn report(mut self) -> Report {
        self.core.rest.flush_tx();
        let mut kernel = Statistics::default();
        match &self.core.rest.out {
            Out::Packet { ports, .. } => {
                for sock in ports.all() {
                    if let Ok(s) = sock.statistics() {
                        kernel.packets += s.packets;
                        kernel.drops += s.drops;
                    }
                }
            }
            // AF_XDP counts no received total, only what it lost.
            Out::Xdp(x) => {
                let s = x.statistics();
                kernel.drops = s.rx_dropped;
                self.core.rest.io.tx_errors += s.invalid;
            }
        }
        self.core.rest.io.kernel_packets = kernel.packets;
        self.core.rest.io.kernel_drops = kernel.drops;
        Report {
            engine: self.core.engine.counters().clone(),
            io: self.core.rest.io,
        }
    }
}
