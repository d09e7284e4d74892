//! The single-producer/single-consumer protocol of the AF_XDP rings, on top of a
//! mapped ring: user space produces into the fill and TX rings and consumes from the
//! RX and completion rings. Indices run freely (wrapping u32) and are reduced modulo
//! the ring size only to address a slot; the kernel's index is read (acquire) only
//! when the cached one says there is no room or nothing to take, and ours is
//! published (release) once per batch.

use std::sync::atomic::Ordering;

use super::sys::RingMap;

/// The user-space producer side of a fill or TX ring.
#[derive(Debug)]
pub struct Producer {
    ring: RingMap,
    /// Our next index (not yet published until `submit`).
    head: u32,
    /// The kernel's consumer index plus the ring size: how far we may produce.
    limit: u32,
}

impl Producer {
    pub fn new(ring: RingMap) -> Producer {
        let head = ring.producer().load(Ordering::Relaxed);
        let limit = ring
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(ring.entries());
        Producer { ring, head, limit }
    }

    /// Free slots, re-reading the kernel's index when fewer than `want` are known.
    pub fn free(&mut self, want: u32) -> u32 {
        let known = self.limit.wrapping_sub(self.head);
        if known >= want {
            return known;
        }
        self.limit = self
            .ring
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.ring.entries());
        self.limit.wrapping_sub(self.head)
    }

    /// Puts a fill-ring address; false when the ring is full.
    pub fn push_addr(&mut self, addr: u64) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        self.ring.write_addr(self.head, addr);
        self.head = self.head.wrapping_add(1);
        true
    }

    /// Puts a TX descriptor; false when the ring is full.
    pub fn push_desc(&mut self, addr: u64, len: u32) -> bool {
        if self.free(1) == 0 {
            return false;
        }
        self.ring.write_desc(self.head, addr, len);
        self.head = self.head.wrapping_add(1);
        true
    }

    /// Publishes what was pushed since the last call.
    pub fn submit(&mut self) {
        self.ring.producer().store(self.head, Ordering::Release);
    }

    /// Entries produced that the kernel has not consumed yet.
    pub fn outstanding(&self) -> u32 {
        self.head
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }

    /// The kernel asked to be woken (XDP_RING_NEED_WAKEUP) before it takes more.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }
}

/// The user-space consumer side of an RX or completion ring.
#[derive(Debug)]
pub struct Consumer {
    ring: RingMap,
    /// Our next index.
    tail: u32,
    /// The kernel's producer index as last read.
    end: u32,
}

impl Consumer {
    pub fn new(ring: RingMap) -> Consumer {
        let tail = ring.consumer().load(Ordering::Relaxed);
        let end = ring.producer().load(Ordering::Acquire);
        Consumer { ring, tail, end }
    }

    /// Entries ready, re-reading the kernel's index when none are known.
    pub fn ready(&mut self) -> u32 {
        if self.end == self.tail {
            self.end = self.ring.producer().load(Ordering::Acquire);
        }
        self.end.wrapping_sub(self.tail)
    }

    /// Takes the next completion-ring address.
    pub fn pop_addr(&mut self) -> Option<u64> {
        if self.ready() == 0 {
            return None;
        }
        let a = self.ring.read_addr(self.tail);
        self.tail = self.tail.wrapping_add(1);
        Some(a)
    }

    /// Takes the next RX descriptor (address, length).
    pub fn pop_desc(&mut self) -> Option<(u64, u32)> {
        if self.ready() == 0 {
            return None;
        }
        let d = self.ring.read_desc(self.tail);
        self.tail = self.tail.wrapping_add(1);
        Some(d)
    }

    /// Hands the slots taken since the last call back to the kernel.
    pub fn release(&mut self) {
        self.ring.consumer().store(self.tail, Ordering::Release);
    }
}
