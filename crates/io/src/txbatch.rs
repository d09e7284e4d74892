//! Frames a worker has decided to send, gathered in one arena and handed to the kernel
//! with one sendmmsg per egress and batch instead of one send per frame.
//!
//! Measured with `benches/forward.sh` (docs/performance.md): with one send per frame
//! most of a worker's core went to the kernel's per-call cost. The engine writes each
//! output frame straight into the arena (no copy), which is allocated once and never
//! cleared, so gathering costs nothing per byte. Frames wait at most until the end of
//! the worker's current round, so batching adds no timer. It must never reorder the
//! frames of one egress, and never hold a frame across a sleep: the worker flushes
//! before it polls.

use std::io;

use crate::engine::Egress;

use super::afpacket::{MAX_SEND_BATCH, Socket};

/// Outcome of one flush, for the worker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    /// Not sent because the device queue was full (EAGAIN/ENOBUFS).
    pub queue_full: u64,
    pub errors: u64,
}

impl Flushed {
    fn add(&mut self, o: Flushed) {
        self.sent += o.sent;
        self.queue_full += o.queue_full;
        self.errors += o.errors;
    }
}

/// Pending frames of both egresses, packed back to back in a fixed arena.
#[derive(Debug)]
pub struct TxBatch {
    arena: Vec<u8>,
    used: usize,
    /// (egress, start, len) of each frame in `arena`, in decision order.
    frames: Vec<(Egress, usize, usize)>,
}

impl TxBatch {
    /// An arena that holds a full batch of typical frames, and always at least one of
    /// `max_frame` bytes (the largest output the engine can write).
    pub fn new(max_frame: usize) -> TxBatch {
        TxBatch {
            arena: vec![0; MAX_SEND_BATCH * 2048 + max_frame],
            used: 0,
            frames: Vec::with_capacity(MAX_SEND_BATCH),
        }
    }

    /// Whether `need` more bytes fit, and another frame: else flush first.
    pub fn has_room(&self, need: usize) -> bool {
        self.frames.len() < MAX_SEND_BATCH && self.used.saturating_add(need) <= self.arena.len()
    }

    /// The free tail of the arena, for the engine to write the next frame into.
    pub fn tail(&mut self) -> &mut [u8] {
        self.arena.get_mut(self.used..).unwrap_or(&mut [])
    }

    /// Keeps the first `len` bytes written into [`TxBatch::tail`] as a frame for
    /// `egress`; false if they do not fit (nothing is kept).
    pub fn commit(&mut self, egress: Egress, len: usize) -> bool {
        let end = self.used.saturating_add(len);
        if end > self.arena.len() {
            return false;
        }
        self.frames.push((egress, self.used, len));
        self.used = end;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Sends every queued frame on its egress's socket, in order per egress; what the
    /// kernel refuses is counted and dropped (a full device queue will not empty while
    /// we retry). `external` and `provider` may be the same socket.
    pub fn flush(&mut self, external: &Socket, provider: &Socket) -> Flushed {
        let mut out = Flushed::default();
        for (egress, sock) in [(Egress::External, external), (Egress::Provider, provider)] {
            // On the stack: a flush runs every round, and must not allocate.
            let mut slices: [&[u8]; MAX_SEND_BATCH] = [&[]; MAX_SEND_BATCH];
            let mut n = 0;
            for &(e, start, len) in &self.frames {
                if e != egress {
                    continue;
                }
                match (
                    self.arena.get(start..start.saturating_add(len)),
                    slices.get_mut(n),
                ) {
                    (Some(frame), Some(slot)) => {
                        *slot = frame;
                        n += 1;
                    }
                    _ => out.errors += 1,
                }
            }
            out.add(send_all(sock, slices.get(..n).unwrap_or(&[])));
        }
        self.frames.clear();
        self.used = 0;
        out
    }
}

fn send_all(sock: &Socket, frames: &[&[u8]]) -> Flushed {
    let mut out = Flushed::default();
    let mut rest = frames;
    while !rest.is_empty() {
        match sock.send_batch(rest) {
            Ok(0) => {
                out.queue_full += rest.len() as u64;
                break;
            }
            Ok(n) => {
                out.sent += n as u64;
                rest = rest.get(n..).unwrap_or(&[]);
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                // The frame at the front did not fit the device queue: drop it and try
                // the others, as per-frame sends would have.
                out.queue_full += 1;
                rest = rest.get(1..).unwrap_or(&[]);
            }
            Err(_) => {
                out.errors += 1;
                rest = rest.get(1..).unwrap_or(&[]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_written_in_place_and_room_runs_out() {
        let mut b = TxBatch::new(100);
        assert!(b.is_empty());
        b.tail()[..3].copy_from_slice(b"abc");
        assert!(b.commit(Egress::Provider, 3));
        b.tail()[..2].copy_from_slice(b"de");
        assert!(b.commit(Egress::External, 2));
        assert_eq!(
            b.frames,
            vec![(Egress::Provider, 0, 3), (Egress::External, 3, 2)]
        );
        assert_eq!(&b.arena[..5], b"abcde");
        let len = b.arena.len();
        assert!(
            !b.commit(Egress::External, len),
            "more than the arena holds"
        );
        assert!(b.has_room(100));
        assert!(!b.has_room(len));
        for _ in 2..MAX_SEND_BATCH {
            assert!(b.commit(Egress::External, 1));
        }
        assert!(!b.has_room(1), "a full batch has no room");
    }
}
