//! Per-worker counters.
//!
//! Each worker owns its counters outright (plain integers, no atomics on the packet
//! path); the metrics collector reads snapshots of them at scrape time and sums.
//! The struct is cache-line aligned so that two workers' counters never share a line.

use super::Verdict;
use super::drop::DropReason;

const REASONS: usize = DropReason::ALL.len();

/// What one worker has done since it started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub struct Counters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub forwarded: u64,
    pub bytes_out: u64,
    pub replied: u64,
    pub handoffs: u64,
    pub new_flows: u64,
    pub drops: [u64; REASONS],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            packets_in: 0,
            bytes_in: 0,
            forwarded: 0,
            bytes_out: 0,
            replied: 0,
            handoffs: 0,
            new_flows: 0,
            drops: [0; REASONS],
        }
    }
}

impl Counters {
    pub(crate) fn record(&mut self, in_len: usize, verdict: &Verdict) {
        self.packets_in += 1;
        self.bytes_in += in_len as u64;
        match verdict {
            Verdict::Forward { len, .. } => {
                self.forwarded += 1;
                self.bytes_out += *len as u64;
            }
            Verdict::Reply { len, .. } => {
                self.replied += 1;
                self.bytes_out += *len as u64;
            }
            Verdict::Handoff { .. } => self.handoffs += 1,
            Verdict::Local => {}
            Verdict::Drop(r) => self.drops[*r as usize] += 1,
        }
    }

    /// Drops counted for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds another worker's counters (the collector's sum).
    pub fn add(&mut self, other: &Counters) {
        self.packets_in += other.packets_in;
        self.bytes_in += other.bytes_in;
        self.forwarded += other.forwarded;
        self.bytes_out += other.bytes_out;
        self.replied += other.replied;
        self.handoffs += other.handoffs;
        self.new_flows += other.new_flows;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
    }
}
