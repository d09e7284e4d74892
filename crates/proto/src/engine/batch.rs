//! The batch path: a data plane's whole receive batch in one call, its flow-table
//! misses overlapped.
//!
//! One frame at a time, a flow lookup in a table larger than the cache waits for two
//! misses in a row (the index bucket, then the binding it names), and nothing else runs
//! meanwhile. Given a batch, the engine first reads just enough of every frame to hash
//! its flow key and asks for its buckets, then asks for the bindings those buckets
//! name, and only then decides each frame, in order, exactly as [`Engine::process`]
//! does: the first two stages only warm the cache, so the batch path's verdicts,
//! output frames and counters are the single-frame path's, frame by frame (the tests
//! below and the engine fuzz target hold it to that). Figures: docs/performance.md.

use crate::flow::Nanos;

use super::peek;
use super::{Engine, Verdict, output_len};

/// Most frames the engine looks ahead over; longer batches are taken this many at a
/// time (a data plane's receive batch is at most 64 frames).
pub const MAX_BATCH: usize = 64;

/// Where the batch path writes each frame's output and leaves each verdict: the data
/// plane's send arena (AF_PACKET) or its UMEM (AF_XDP).
pub trait Outputs {
    /// A buffer of at least `need` bytes ([`output_len`] of the frame) for the next
    /// frame's output; what a verdict says was written lies at its start.
    fn buffer(&mut self, need: usize) -> &mut [u8];
    /// The verdict on `frame`, the frame at `index` of the batch; an output frame it
    /// names was written into the buffer that [`Outputs::buffer`] gave just before.
    fn verdict(&mut self, index: usize, frame: &[u8], verdict: Verdict);
}

impl Engine {
    /// Decides every frame of `frames`, in order, as [`Engine::process`] would one by
    /// one, with the flow table's cache misses of the whole batch overlapped.
    pub fn process_batch(&mut self, now: Nanos, frames: &[&[u8]], outs: &mut impl Outputs) {
        let mut hashes = [0u64; MAX_BATCH];
        let mut keys = [None; MAX_BATCH];
        for (c, chunk) in frames.chunks(MAX_BATCH).enumerate() {
            // Stage 1: hash every frame's flow key and ask for its buckets.
            let mut keyed: u64 = 0;
            for (i, frame) in chunk.iter().enumerate() {
                keys[i] = peek::flow_key(frame);
                if let Some(key) = &keys[i] {
                    let h = self.shard.hash(key);
                    self.shard.prefetch_buckets(h);
                    hashes[i] = h;
                    keyed |= 1 << i;
                }
            }
            // Stage 2: ask for the bindings the buckets name.
            let mut rest = keyed;
            while rest != 0 {
                let i = rest.trailing_zeros() as usize;
                self.shard.prefetch_entries(hashes[i]);
                rest &= rest - 1;
            }
            // Stage 3: decide and emit, in order; a bound flow's packet by the shortcut,
            // with the hash of stage 1.
            for (i, frame) in chunk.iter().enumerate() {
                let out = outs.buffer(output_len(frame.len()));
                let hint = keys[i].as_ref().map(|k| (k, hashes[i]));
                let verdict = match self.shortcut {
                    true => match self.shortcut(now, frame, out, hint) {
                        Some(v) => v,
                        None => self.process_general(now, frame, out),
                    },
                    false => self.process_general(now, frame, out),
                };
                outs.verdict(c * MAX_BATCH + i, frame, verdict);
            }
        }
    }
}
