//! Per-worker counters.
//!
//! Each worker owns its counters outright (plain integers, no atomics on the packet
//! path); the metrics collector reads snapshots of them at scrape time and sums.
//! The struct is cache-line aligned so that two workers' counters never share a line.

use super::Verdict;
use super::drop::DropReason;
use crate::flow::Direction;
use crate::policy::Snapshot;

const REASONS: usize = DropReason::ALL.len();

/// What one worker has done since it started.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(align(64))]
pub struct Counters {
    /// Frames handed to `process`, whatever the verdict (handoffs and drops included).
    pub packets_in: u64,
    /// Bytes of those frames, as received.
    pub bytes_in: u64,
    /// Frames forwarded (verdict `Forward`).
    pub forwarded: u64,
    /// Bytes of the frames the worker wrote: forwarded and replies.
    pub bytes_out: u64,
    /// Frames the LB answered itself (verdict `Reply`: ARP/ND, echo, packet-too-big).
    pub replied: u64,
    /// Frames handed to another worker's shard; that worker counts them again as `packets_in`.
    pub handoffs: u64,
    /// Flow bindings created (not counting those undone because their first packet was not
    /// forwarded after all).
    pub new_flows: u64,
    /// RST segments sent to the ends of TCP flows that timed out idle under a
    /// `tcp_reset` rule (two per flow: client, then DIP).
    pub idle_resets_sent: u64,
    /// RST segments such flows should have had but did not: their queue was full, a
    /// policy change came first, or their path was gone.
    pub idle_resets_unsent: u64,
    /// Drops per reason, indexed by `DropReason as usize` (the order of [`DropReason::ALL`]);
    /// see [`Counters::dropped`].
    pub drops: [u64; REASONS],
    /// Per VIP pool, indexed like the snapshot's pools (empty until sized by
    /// [`Counters::for_policy`]; a pool index beyond it is simply not counted).
    pub pools: Vec<PoolCounters>,
}

/// Traffic of one VIP pool; `[forward, return]` pairs are client->DIP, DIP->client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Frames forwarded, `[forward, return]`.
    pub packets: [u64; 2],
    /// Bytes of the frames received (outer headers included).
    pub bytes_in: [u64; 2],
    /// Bytes of the frames sent.
    pub bytes_out: [u64; 2],
    /// Flow bindings created for this pool.
    pub new_flows: u64,
    /// Packets per DIP, in the pool's DIP order: `[forward, return]`.
    pub dip_packets: Vec<[u64; 2]>,
}

impl PoolCounters {
    fn add(&mut self, o: &PoolCounters) {
        for i in 0..2 {
            self.packets[i] += o.packets[i];
            self.bytes_in[i] += o.bytes_in[i];
            self.bytes_out[i] += o.bytes_out[i];
        }
        self.new_flows += o.new_flows;
        if self.dip_packets.len() < o.dip_packets.len() {
            self.dip_packets.resize(o.dip_packets.len(), [0; 2]);
        }
        for (a, b) in self.dip_packets.iter_mut().zip(&o.dip_packets) {
            a[0] += b[0];
            a[1] += b[1];
        }
    }
}

/// Index of a direction in the `[forward, return]` pairs.
fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Forward => 0,
        Direction::Return => 1,
    }
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
            idle_resets_sent: 0,
            idle_resets_unsent: 0,
            drops: [0; REASONS],
            pools: Vec::new(),
        }
    }
}

impl Counters {
    /// Zeroed counters with one slot per pool and DIP of `policy`.
    pub fn for_policy(policy: &Snapshot) -> Counters {
        Counters {
            pools: policy
                .pools()
                .iter()
                .map(|p| PoolCounters {
                    dip_packets: vec![[0; 2]; p.dips.len()],
                    ..PoolCounters::default()
                })
                .collect(),
            ..Counters::default()
        }
    }

    /// These counters re-indexed for the `new` snapshot, carried over by identity:
    /// a pool by its name, a DIP by (VSID, CA, port). Pools and DIPs that are gone
    /// lose their counts (the totals keep them); new ones start at zero. Call when a
    /// reload replaces the policy, so that per-VIP series neither jump nor swap.
    pub fn remap(&self, old: &Snapshot, new: &Snapshot) -> Counters {
        let mut out = Counters::for_policy(new);
        out.packets_in = self.packets_in;
        out.bytes_in = self.bytes_in;
        out.forwarded = self.forwarded;
        out.bytes_out = self.bytes_out;
        out.replied = self.replied;
        out.handoffs = self.handoffs;
        out.new_flows = self.new_flows;
        out.idle_resets_sent = self.idle_resets_sent;
        out.idle_resets_unsent = self.idle_resets_unsent;
        out.drops = self.drops;
        for (old_pool, counts) in old.pools().iter().zip(&self.pools) {
            let Some((new_i, new_pool)) = new
                .pools()
                .iter()
                .enumerate()
                .find(|(_, p)| p.name == old_pool.name)
            else {
                continue;
            };
            let Some(slot) = out.pools.get_mut(new_i) else {
                continue;
            };
            slot.packets = counts.packets;
            slot.bytes_in = counts.bytes_in;
            slot.bytes_out = counts.bytes_out;
            slot.new_flows = counts.new_flows;
            for (old_dip, n) in old_pool.dips.iter().zip(&counts.dip_packets) {
                let same = |d: &&crate::policy::Dip| {
                    d.vsid == old_dip.vsid && d.ca == old_dip.ca && d.port == old_dip.port
                };
                if let Some(j) = new_pool.dips.iter().position(|d| same(&d))
                    && let Some(dst) = slot.dip_packets.get_mut(j)
                {
                    *dst = *n;
                }
            }
        }
        out
    }

    /// Counts one frame; `new_flow` when it created a binding. Per packet: a few adds
    /// into this worker's own memory, no atomics.
    pub(crate) fn record(
        &mut self,
        in_len: usize,
        verdict: &Verdict,
        new_flow: bool,
        direction: Direction,
    ) {
        self.packets_in += 1;
        self.bytes_in += in_len as u64;
        match verdict {
            Verdict::Forward { len, matched, .. } => {
                self.forwarded += 1;
                self.bytes_out += *len as u64;
                if let Some(p) = self.pools.get_mut(matched.pool as usize) {
                    let d = dir_index(direction);
                    p.packets[d] += 1;
                    p.bytes_in[d] += in_len as u64;
                    p.bytes_out[d] += *len as u64;
                    p.new_flows += u64::from(new_flow);
                    if let Some(n) = p.dip_packets.get_mut(usize::from(matched.dip)) {
                        n[d] += 1;
                    }
                }
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

    /// [`Counters::record`] of a frame of `in_len` bytes forwarded as `out_len` on an
    /// existing binding `flow`, for a path that knows that much already.
    #[inline]
    pub(crate) fn record_forward(
        &mut self,
        in_len: usize,
        out_len: usize,
        flow: &crate::flow::Flow,
        direction: Direction,
    ) {
        self.packets_in += 1;
        self.bytes_in += in_len as u64;
        self.forwarded += 1;
        self.bytes_out += out_len as u64;
        if let Some(p) = self.pools.get_mut(flow.pool as usize) {
            let d = dir_index(direction);
            p.packets[d] += 1;
            p.bytes_in[d] += in_len as u64;
            p.bytes_out[d] += out_len as u64;
            if let Some(n) = p.dip_packets.get_mut(usize::from(flow.dip)) {
                n[d] += 1;
            }
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
        self.idle_resets_sent += other.idle_resets_sent;
        self.idle_resets_unsent += other.idle_resets_unsent;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        if self.pools.len() < other.pools.len() {
            self.pools
                .resize(other.pools.len(), PoolCounters::default());
        }
        for (a, b) in self.pools.iter_mut().zip(&other.pools) {
            a.add(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Egress, Matched};

    fn policy(text: &str) -> Snapshot {
        Snapshot::from_toml(text, "example.toml").expect("policy")
    }

    fn forward(pool: u32, dip: u16, len: usize) -> Verdict {
        Verdict::Forward {
            egress: Egress::Provider,
            len,
            matched: Matched {
                tenant: 0,
                pool,
                dip,
            },
        }
    }

    #[test]
    fn forwarded_packets_count_per_pool_dip_and_direction() {
        let p = policy(crate::EXAMPLE_POLICY);
        let mut c = Counters::for_policy(&p);
        c.record(100, &forward(1, 1, 142), true, Direction::Forward);
        c.record(100, &forward(1, 1, 142), false, Direction::Forward);
        c.record(200, &forward(1, 0, 158), false, Direction::Return);
        // An index from another snapshot is not counted per pool (and does not panic).
        c.record(60, &forward(9999, 0, 60), false, Direction::Forward);
        let pool = &c.pools[1];
        assert_eq!(pool.packets, [2, 1]);
        assert_eq!(pool.bytes_in, [200, 200]);
        assert_eq!(pool.bytes_out, [284, 158]);
        assert_eq!(pool.new_flows, 1);
        assert_eq!(pool.dip_packets[1], [2, 0]);
        assert_eq!(pool.dip_packets[0], [0, 1]);
        assert_eq!(c.forwarded, 4);
        let mut sum = Counters::default();
        sum.add(&c);
        sum.add(&c);
        assert_eq!(sum.pools[1].dip_packets[1], [4, 0]);
    }

    #[test]
    fn remap_follows_pools_by_name_and_dips_by_endpoint() {
        let old = policy(crate::EXAMPLE_POLICY);
        // The new policy lists the first pool last and drops the first pool's first DIP.
        let first = &old.pools()[0];
        let mut c = Counters::for_policy(&old);
        c.packets_in = 77;
        c.pools[0].packets = [5, 6];
        for (j, n) in c.pools[0].dip_packets.iter_mut().enumerate() {
            *n = [10 + j as u64, 0];
        }
        c.pools[1].new_flows = 3;
        let new = policy(&reordered(crate::EXAMPLE_POLICY, &first.name));
        let r = c.remap(&old, &new);
        assert_eq!(r.packets_in, 77);
        let at = new
            .pools()
            .iter()
            .position(|p| p.name == first.name)
            .unwrap();
        assert_ne!(at, 0, "the pool moved");
        assert_eq!(r.pools[at].packets, [5, 6]);
        for (j, d) in new.pools()[at].dips.iter().enumerate() {
            let k = first
                .dips
                .iter()
                .position(|o| (o.vsid, o.ca, o.port) == (d.vsid, d.ca, d.port))
                .unwrap();
            assert_eq!(r.pools[at].dip_packets[j], [10 + k as u64, 0]);
        }
        let second = &old.pools()[1].name;
        let at2 = new.pools().iter().position(|p| &p.name == second).unwrap();
        assert_eq!(r.pools[at2].new_flows, 3);
    }

    /// The example policy with pool `name` (the first, `blue-web`) moved after the
    /// tenant's other pools and its first DIP removed.
    fn reordered(text: &str, name: &str) -> String {
        let head = format!("[[tenant.vip]]\nname = \"{name}\"\n");
        let start = text.find(&head).expect("pool block");
        let len = text[start + head.len()..]
            .find("[[tenant.vip]]")
            .expect("next pool")
            + head.len();
        let block = text[start..start + len]
            .replace("  { ca = \"10.0.0.5\", port = 80, weight = 1 },\n", "");
        let without = format!("{}{}", &text[..start], &text[start + len..]);
        let red = start + without[start..].find("# ------").expect("red tenant");
        format!("{}{}{}", &without[..red], block, &without[red..])
    }
}
