//! The engine harness: arbitrary frames through `Engine::process` with the lab's policy
//! (lb-config/example.toml) plus a rule of every kind ([`crate::policy`]), one engine
//! per worker, and the invariants of [`crate::check`] on everything emitted, the idle
//! resets the expiry sweeps queue included.
//!
//! Input layout: one control byte, then frames separated by [`SEP`].
//! - bit 0: two workers instead of one (frames are dealt round-robin, handoffs are
//!   delivered to their owner once, as the data plane does);
//! - bit 1: answer every forwarded frame as its receiver would (addresses and ports
//!   swapped, SYN -> SYN+ACK -> ACK), up to three round trips, so that the return
//!   paths and established state are reached without the fuzzer guessing NAT ports;
//! - bits 2-7: seconds (x 0.5) the clock advances after each frame, with an expiry sweep.
//!
//! Every input runs a second time through `Engine::process_batch` on twin engines, the
//! frames of each worker cut into batches of 1 + (input length mod 64) between clock
//! steps, and must give the same verdicts and output frames ([`replay_batched`]). The
//! first run takes the general path alone (`Engine::set_shortcut(false)`), the twins
//! the established-flow shortcut, so the shortcut is fuzzed against the general path.
//!
//! Must never: hide a panic, skip a check on a frame the engine emitted, or feed the
//! engine anything but the bytes it would get from a socket.

use std::sync::{Arc, OnceLock};

use nvlb::engine::{Engine, MAX_BATCH, Outputs, Verdict, output_len};
use nvlb::policy::Snapshot;
use nvlb::wire::{checksum, ethernet, gre, ip_proto, ipv6, tcp};

use crate::check::{self, Emitted};

/// Separates frames in a fuzz input.
pub const SEP: &[u8] = b"NVLB";
const SEC: u64 = 1_000_000_000;
/// Round trips answered per forwarded frame when bit 1 is set.
const ANSWERS: u8 = 3;

/// The lab's policy with a rule of every kind ([`crate::policy`]), compiled once per
/// process.
pub fn policy() -> Arc<Snapshot> {
    static POLICY: OnceLock<Arc<Snapshot>> = OnceLock::new();
    POLICY
        .get_or_init(|| {
            Arc::new(
                Snapshot::from_toml(&crate::policy::text(), "engine-policy.toml")
                    .unwrap_or_else(|e| panic!("the engine target's policy is invalid: {e}")),
            )
        })
        .clone()
}

/// Splits a fuzz input after its control byte into frames.
pub fn split(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while let Some(at) = rest.windows(SEP.len()).position(|w| w == SEP) {
        frames.push(&rest[..at]);
        rest = &rest[at + SEP.len()..];
    }
    frames.push(rest);
    frames
}

/// Joins frames into one fuzz input (the inverse of [`split`] after the control byte).
pub fn join(ctl: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![ctl];
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            v.extend_from_slice(SEP);
        }
        v.extend_from_slice(f);
    }
    v
}

/// A few workers' engines over one policy, and the clock.
pub struct Harness {
    policy: Arc<Snapshot>,
    engines: Vec<Engine>,
    now: u64,
    /// Frames processed, for messages.
    pub frames: u64,
    /// What happened, in order, for [`replay_batched`].
    log: Vec<Step>,
}

/// One event of a harness run.
enum Step {
    /// Worker `w` decided `frame` at `now`.
    Frame {
        w: usize,
        now: u64,
        frame: Vec<u8>,
        verdict: Verdict,
        out: Vec<u8>,
    },
    /// The clock moved to `now`; every engine swept and sent its resets.
    Advance { now: u64 },
}

/// The bytes a verdict names in `out`.
fn emitted(v: &Verdict, out: &[u8]) -> Vec<u8> {
    match *v {
        Verdict::Forward { len, .. } | Verdict::Reply { len, .. } => {
            out.get(..len).unwrap_or(&[]).to_vec()
        }
        _ => Vec::new(),
    }
}

impl Harness {
    pub fn new(workers: u16) -> Harness {
        let policy = policy();
        let workers = workers.max(1);
        Harness {
            engines: (0..workers)
                .map(|w| {
                    // The general path alone: the twins of `replay_batched` take the
                    // established-flow shortcut and are held to it.
                    let mut e = Engine::new(policy.clone(), w, workers);
                    e.set_shortcut(false);
                    e
                })
                .collect(),
            policy,
            now: SEC,
            frames: 0,
            log: Vec::new(),
        }
    }

    pub fn engine(&self, w: usize) -> &Engine {
        &self.engines[w]
    }

    /// Moves the clock, sweeps every engine and checks the idle resets the sweeps
    /// queued, as a worker sends them between batches.
    pub fn advance(&mut self, nanos: u64) -> Result<(), String> {
        if nanos == 0 {
            return Ok(());
        }
        self.now = self.now.saturating_add(nanos);
        self.log.push(Step::Advance { now: self.now });
        let mut out = vec![0u8; nvlb::engine::MAX_RESET_FRAME];
        for e in &mut self.engines {
            e.expire(self.now, 256);
            while let Some((egress, len)) = e.next_reset(&mut out) {
                let emitted = out
                    .get(..len)
                    .ok_or_else(|| format!("reset length {len} beyond its buffer"))?;
                check::output(&self.policy, &[], emitted, Emitted::Reset { egress })
                    .map_err(|m| format!("{m}\nidle reset {}", hex(emitted)))?;
            }
        }
        Ok(())
    }

    /// Delivers `frame` to worker `w`, checks what comes out, answers forwarded frames
    /// (`answers` round trips left) and follows a handoff once. Returns the verdict
    /// of the first engine, or the message of the first broken invariant.
    pub fn deliver(
        &mut self,
        w: usize,
        frame: &[u8],
        answers: u8,
        handed: bool,
    ) -> Result<Verdict, String> {
        self.frames += 1;
        let workers = self.engines.len();
        let engine = &mut self.engines[w];
        let before = engine.counters().clone();
        let flows_before = engine.shard().len();
        let mut out = vec![0u8; output_len(frame.len())];
        let v = engine.process(self.now, frame, &mut out);
        self.log.push(Step::Frame {
            w,
            now: self.now,
            frame: frame.to_vec(),
            verdict: v,
            out: emitted(&v, &out),
        });
        let engine = &self.engines[w];
        let c = engine.counters();
        let flows_after = engine.shard().len();
        let ctx = |msg: String| format!("{msg}\nverdict {v:?}\nframe {}", hex(frame));
        if c.packets_in != before.packets_in + 1 {
            return Err(ctx("packets_in not counted once".into()));
        }
        let counted = match v {
            Verdict::Forward { .. } => c.forwarded == before.forwarded + 1,
            Verdict::Reply { .. } => c.replied == before.replied + 1,
            Verdict::Handoff { .. } => c.handoffs == before.handoffs + 1,
            Verdict::Drop(r) => c.dropped(r) == before.dropped(r) + 1,
            // The health checker's business: counted by it, not as an outcome here.
            Verdict::Local => true,
        };
        let outcomes = u64::from(v != Verdict::Local);
        let total =
            |c: &nvlb::engine::Counters| c.forwarded + c.replied + c.handoffs + c.dropped_total();
        if !counted || total(c) != total(&before) + outcomes {
            return Err(ctx("verdict not counted exactly once".into()));
        }
        match v {
            Verdict::Forward {
                egress,
                len,
                matched,
            } => {
                let emitted = out
                    .get(..len)
                    .ok_or_else(|| ctx(format!("length {len} beyond the output buffer")))?;
                check::output(
                    &self.policy,
                    frame,
                    emitted,
                    Emitted::Forward { egress, matched },
                )
                .map_err(|e| ctx(format!("{e}\nout {}", hex(emitted))))?;
                if answers > 0
                    && let Some(reply) = answer(emitted)
                {
                    let next = (w + 1) % workers;
                    self.deliver(next, &reply, answers - 1, false)?;
                }
            }
            Verdict::Reply { egress, len } => {
                let emitted = out
                    .get(..len)
                    .ok_or_else(|| ctx(format!("length {len} beyond the output buffer")))?;
                check::output(&self.policy, frame, emitted, Emitted::Reply { egress })
                    .map_err(|e| ctx(format!("{e}\nout {}", hex(emitted))))?;
                if flows_after != flows_before {
                    return Err(ctx(
                        "an answer of the LB's own changed the flow table".into()
                    ));
                }
            }
            Verdict::Handoff { worker } => {
                let to = usize::from(worker);
                if to >= workers || to == w {
                    return Err(ctx(format!("handoff to worker {worker} of {workers}")));
                }
                if flows_after != flows_before {
                    return Err(ctx("a handoff changed the sender's flow table".into()));
                }
                if !handed {
                    self.deliver(to, frame, answers, true)?;
                }
            }
            Verdict::Local => {
                if flows_after != flows_before {
                    return Err(ctx(
                        "a frame for the control plane changed the flow table".into()
                    ));
                }
            }
            Verdict::Drop(reason) => {
                if flows_after != flows_before {
                    return Err(ctx(format!(
                        "dropped ({}) but the flow table went from {flows_before} to {flows_after}",
                        reason.name()
                    )));
                }
            }
        }
        Ok(v)
    }
}

/// Runs one fuzz input; `Err` names the broken invariant.
pub fn run(data: &[u8]) -> Result<(), String> {
    let Some((&ctl, rest)) = data.split_first() else {
        return Ok(());
    };
    let workers = 1 + u16::from(ctl & 1);
    let answers = if ctl & 2 != 0 { ANSWERS } else { 0 };
    let step = u64::from(ctl >> 2) * SEC / 2;
    let mut h = Harness::new(workers);
    for (i, frame) in split(rest).into_iter().enumerate() {
        h.deliver(i % usize::from(workers), frame, answers, false)?;
        h.advance(step)?;
    }
    replay_batched(&h, 1 + data.len() % MAX_BATCH)
}

/// Collects the batch path's verdicts and output frames.
struct Collected {
    buf: Vec<u8>,
    got: Vec<(Verdict, Vec<u8>)>,
}

impl Outputs for Collected {
    fn buffer(&mut self, need: usize) -> &mut [u8] {
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        &mut self.buf
    }
    fn verdict(&mut self, _index: usize, _frame: &[u8], verdict: Verdict) {
        self.got.push((verdict, emitted(&verdict, &self.buf)));
    }
}

/// Replays a harness run on twin engines through `process_batch`: each run of
/// consecutive frames to one worker at one time, cut every `cut` frames, is one batch.
/// Every verdict and output frame must equal the single-frame run's.
pub fn replay_batched(h: &Harness, cut: usize) -> Result<(), String> {
    let workers = h.engines.len() as u16;
    let mut twins: Vec<Engine> = (0..workers)
        .map(|w| Engine::new(h.policy.clone(), w, workers))
        .collect();
    let mut reset = vec![0u8; nvlb::engine::MAX_RESET_FRAME];
    let mut i = 0;
    while i < h.log.len() {
        match &h.log[i] {
            Step::Advance { now } => {
                for e in &mut twins {
                    e.expire(*now, 256);
                    while e.next_reset(&mut reset).is_some() {}
                }
                i += 1;
            }
            Step::Frame { w, now, .. } => {
                let (w, now) = (*w, *now);
                let mut batch: Vec<(&[u8], &Verdict, &[u8])> = Vec::new();
                while let Some(Step::Frame {
                    w: fw,
                    now: fnow,
                    frame,
                    verdict,
                    out,
                }) = h.log.get(i)
                {
                    if *fw != w || *fnow != now || batch.len() == cut {
                        break;
                    }
                    batch.push((frame, verdict, out));
                    i += 1;
                }
                let frames: Vec<&[u8]> = batch.iter().map(|b| b.0).collect();
                let mut got = Collected {
                    buf: Vec::new(),
                    got: Vec::new(),
                };
                twins[w].process_batch(now, &frames, &mut got);
                if got.got.len() != batch.len() {
                    return Err(format!(
                        "process_batch gave {} verdicts for {} frames",
                        got.got.len(),
                        batch.len()
                    ));
                }
                for ((frame, verdict, out), (v, o)) in batch.iter().zip(&got.got) {
                    if *verdict != v || out != o {
                        return Err(format!(
                            "the batch path disagrees with process (batches of {cut})\n\
                             process: {verdict:?} {}\nbatch:   {v:?} {}\nframe {}",
                            hex(out),
                            hex(o),
                            hex(frame)
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Lowercase hex, for messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Swaps the two 16-byte-or-shorter fields `a` and `b` (same length) of `f`.
fn swap(f: &mut [u8], a: usize, b: usize, len: usize) -> Option<()> {
    let end = a.max(b).checked_add(len)?;
    if end > f.len() || a.abs_diff(b) < len {
        return None;
    }
    for i in 0..len {
        f.swap(a + i, b + i);
    }
    Some(())
}

/// Swaps the IP addresses of the packet at `off`; returns (protocol, upper-layer
/// offset). Swapping is checksum-neutral: the ones'-complement sum does not change.
fn swap_ip(f: &mut [u8], off: usize, ethertype: u16) -> Option<(u8, usize)> {
    if ethertype == ethernet::ethertype::IPV6 {
        swap(f, off + 8, off + 24, 16)?;
        let p = ipv6::Packet::new_checked(f.get(off..)?).ok()?;
        let ul = p.upper_layer().ok()?;
        Some((ul.protocol, off + ul.offset))
    } else if ethertype == ethernet::ethertype::IPV4 {
        swap(f, off + 12, off + 16, 4)?;
        let ihl = usize::from(*f.get(off)? & 0x0F) * 4;
        Some((*f.get(off + 9)?, off + ihl))
    } else {
        None
    }
}

/// What the receiver of `out` sends back: MACs, addresses and ports swapped; a SYN is
/// answered with SYN+ACK and a SYN+ACK with ACK (TCP checksum patched, RFC 1624).
pub fn answer(out: &[u8]) -> Option<Vec<u8>> {
    let mut f = out.to_vec();
    swap(&mut f, 0, 6, 6)?;
    let et = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (mut proto, mut l4) = swap_ip(&mut f, ethernet::HEADER_LEN, et)?;
    if proto == ip_proto::GRE {
        let inner = l4 + gre::NVGRE_HEADER_LEN;
        swap(&mut f, inner, inner + 6, 6)?;
        let et = u16::from_be_bytes([*f.get(inner + 12)?, *f.get(inner + 13)?]);
        (proto, l4) = swap_ip(&mut f, inner + ethernet::HEADER_LEN, et)?;
    }
    match proto {
        ip_proto::TCP => {
            swap(&mut f, l4, l4 + 2, 2)?;
            let word = u16::from_be_bytes([*f.get(l4 + 12)?, *f.get(l4 + 13)?]);
            let flags = (word & 0xFF) as u8;
            let new = if flags == tcp::flags::SYN {
                tcp::flags::SYN | tcp::flags::ACK
            } else if flags == tcp::flags::SYN | tcp::flags::ACK {
                tcp::flags::ACK
            } else {
                flags
            };
            let new_word = (word & 0xFF00) | u16::from(new);
            let ck = u16::from_be_bytes([*f.get(l4 + 16)?, *f.get(l4 + 17)?]);
            let ck = checksum::update16(ck, word, new_word);
            f.get_mut(l4 + 12..l4 + 14)?
                .copy_from_slice(&new_word.to_be_bytes());
            f.get_mut(l4 + 16..l4 + 18)?
                .copy_from_slice(&ck.to_be_bytes());
        }
        ip_proto::UDP => swap(&mut f, l4, l4 + 2, 2)?,
        _ => {}
    }
    Some(f)
}
