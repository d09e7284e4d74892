//! When each binding is due to be looked at for expiry: a timer wheel of one slot per
//! second.
//!
//! Why: the shard used to find expired bindings by walking its slab, up to 1 024 slots
//! between two batches whether anything had expired or not. At a million flows that
//! walk streamed 118 KB of bindings per batch (a third of the time of a new flow in
//! `benches/engine.rs`), and in cache it cost ~130 instructions a packet. Here each
//! live binding has one entry, filed under the second it may expire in; a sweep reads
//! only the entries that are due, so it costs nothing while nothing expires.
//!
//! Entries are lazy: a packet that refreshes a binding does not touch the wheel. When
//! an entry comes due, a binding that has not expired is filed again under its new
//! deadline, so a long flow is looked at about once per idle timeout. An entry names
//! its binding's slot and the generation of that binding's schedule; a binding that was
//! removed, replaced or rescheduled earlier (a shorter timeout: FIN, RST) has moved on
//! to another generation, and the old entry is dropped when it comes due.

/// Seconds the wheel spans; an entry further out is filed at the far end and filed
/// again from there.
const SPAN: u32 = 1024;

/// Slot ids an entry can carry (24 bits; the generation takes the other 8).
pub(crate) const MAX_ID: u32 = (1 << 24) - 1;

/// See the module docs.
pub(crate) struct Wheel {
    slots: Vec<Vec<u32>>,
    /// The second whose slot is read next; every earlier second is done.
    next: Option<u32>,
    /// Entries filed, stale ones included.
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel {
            slots: (0..SPAN).map(|_| Vec::new()).collect(),
            next: None,
            len: 0,
        }
    }
}

impl Wheel {
    /// Files slot `id` (at most [`MAX_ID`]) with schedule generation `generation` to
    /// be looked at in second `at`; `now` is the caller's time.
    pub(crate) fn schedule(&mut self, id: u32, generation: u8, at: u32, now: u32) {
        let next = match self.next {
            Some(n) if self.len > 0 => n,
            // An empty wheel starts from now, not from where it last stopped.
            _ => now,
        };
        self.next = Some(next);
        let at = at.clamp(next, next.saturating_add(SPAN - 1));
        self.slots[(at % SPAN) as usize].push((id & MAX_ID) | (u32::from(generation) << 24));
        self.len += 1;
    }

    /// The next entry due at or before `now`, as (slot id, generation).
    pub(crate) fn pop_due(&mut self, now: u32) -> Option<(u32, u8)> {
        let mut n = self.next?;
        if self.len == 0 {
            return None;
        }
        // Every entry lies within SPAN seconds of `next`: one turn finds it.
        for _ in 0..SPAN {
            if n > now {
                break;
            }
            if let Some(e) = self.slots[(n % SPAN) as usize].pop() {
                self.next = Some(n);
                self.len -= 1;
                return Some((e & MAX_ID, (e >> 24) as u8));
            }
            n = n.saturating_add(1);
        }
        self.next = Some(n);
        None
    }

    /// Forgets every entry (before filing every binding again).
    pub(crate) fn clear(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
        self.len = 0;
    }

    /// Bytes held, for the shard's memory figure.
    pub(crate) fn allocation_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Vec<u32>>()
            + self
                .slots
                .iter()
                .map(|s| s.capacity() * std::mem::size_of::<u32>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut Wheel, now: u32) -> Vec<(u32, u8)> {
        std::iter::from_fn(|| w.pop_due(now)).collect()
    }

    #[test]
    fn entries_come_due_in_their_second_and_not_before() {
        let mut w = Wheel::default();
        w.schedule(7, 1, 105, 100);
        w.schedule(8, 2, 103, 100);
        w.schedule(9, 3, 90, 100); // in the past: due at once
        assert_eq!(drain(&mut w, 100), vec![(9, 3)]);
        assert_eq!(drain(&mut w, 104), vec![(8, 2)]);
        assert_eq!(drain(&mut w, 104), vec![]);
        assert_eq!(drain(&mut w, 200), vec![(7, 1)]);
        assert_eq!(w.len, 0);
    }

    #[test]
    fn far_deadlines_wait_at_the_far_end_and_time_may_jump() {
        let mut w = Wheel::default();
        w.schedule(MAX_ID, 255, 1_000_000, 0);
        assert_eq!(drain(&mut w, SPAN - 2), vec![]);
        assert_eq!(drain(&mut w, SPAN - 1), vec![(MAX_ID, 255)]);
        // An empty wheel restarts from the time of its next entry.
        w.schedule(1, 0, 50_000, 50_000);
        assert_eq!(drain(&mut w, 49_999), vec![]);
        assert_eq!(drain(&mut w, 60_000), vec![(1, 0)]);
    }
}
