//! Frames a worker has decided to send, gathered per egress and handed to the kernel
//! with one sendmmsg per batch instead of one send per frame.
//!
//! Measured with `benches/forward.sh`: with one send per frame, most of a worker's core
//! went to the kernel's per-call cost. Frames wait at most until the end of the
//! worker's current round (one batch per source), so batching adds no timer and no
//! latency beyond that round. It must never reorder frames of one egress, and never
//! hold a frame across a sleep: the worker flushes before it polls.

use std::io;

use super::afpacket::{MAX_SEND_BATCH, Socket};

/// Outcome of one flush, for the worker's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    /// Not sent because the device queue was full (EAGAIN/ENOBUFS).
    pub queue_full: u64,
    pub errors: u64,
}

/// One egress's pending frames, packed back to back.
#[derive(Debug, Default)]
pub struct TxBatch {
    bytes: Vec<u8>,
    /// (start, len) of each frame in `bytes`.
    frames: Vec<(usize, usize)>,
}

impl TxBatch {
    /// Queues a copy of `frame`; true when the batch is full and should be flushed.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        self.frames.push((self.bytes.len(), frame.len()));
        self.bytes.extend_from_slice(frame);
        self.frames.len() >= MAX_SEND_BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Sends every queued frame on `sock`, in order; what the kernel refused is
    /// counted and dropped (a full device queue will not empty while we retry).
    pub fn flush(&mut self, sock: &Socket) -> Flushed {
        let mut out = Flushed::default();
        let mut slices: Vec<&[u8]> = Vec::with_capacity(self.frames.len());
        for &(start, len) in &self.frames {
            match self.bytes.get(start..start + len) {
                Some(f) => slices.push(f),
                None => out.errors += 1,
            }
        }
        let mut rest: &[&[u8]] = &slices;
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
                    // The frame at the front did not fit the device queue: drop it and
                    // try the others, as per-frame sends would have.
                    out.queue_full += 1;
                    rest = rest.get(1..).unwrap_or(&[]);
                }
                Err(_) => {
                    out.errors += 1;
                    rest = rest.get(1..).unwrap_or(&[]);
                }
            }
        }
        self.frames.clear();
        self.bytes.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_pack_in_order_and_report_full_at_the_batch_size() {
        let mut b = TxBatch::default();
        for i in 0..MAX_SEND_BATCH - 1 {
            assert!(!b.push(&[i as u8; 3]));
        }
        assert!(b.push(b"last"));
        assert_eq!(b.frames.len(), MAX_SEND_BATCH);
        assert_eq!(b.frames[1], (3, 3));
        assert_eq!(&b.bytes[3..6], &[1, 1, 1]);
        assert!(!b.is_empty());
    }
}
