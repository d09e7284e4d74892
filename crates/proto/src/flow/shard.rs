//! One worker's flow table: a slab of [`Flow`] bindings indexed twice, by the key of the
//! client's packets and by the key of the DIP's replies.
//!
//! Why a slab plus two id indexes rather than two maps of full keys: each binding is
//! stored once (~116 bytes) and each index costs ~5–8 bytes a binding
//! ([`BucketIndex`]), which keeps a flow under the 128 bytes the design allows, and
//! both directions find the same entry. The slab and both indexes are sized up front
//! for [`ShardLimits::preallocate`] bindings, so that new flows do not pay for growth.
//! The table is bounded (per shard and per tenant) and never evicts a live binding to
//! make room: a full table refuses the new flow, so established connections survive a
//! flood. It must never allocate on the lookup path.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

pub use super::binding::{Acks, Flow, FlowId, ForwardKey, ReturnKey};
use super::idle::{self, IdleRules};
use super::index::BucketIndex;
use super::prefetch::{prefetch, prefetch_all};
use super::state::{Direction, Timeouts};
use super::wheel::{self, Wheel};

/// Bounds and timeouts of a shard.
#[derive(Clone, Copy, Debug)]
pub struct ShardLimits {
    /// Most live bindings in the shard; a new flow beyond it is refused with
    /// [`InsertError::TableFull`].
    pub max_flows: u32,
    /// Most live bindings one tenant may hold in the shard ([`InsertError::TenantQuota`]).
    pub max_per_tenant: u32,
    /// Bindings the shard has room for before it first grows (at most `max_flows`).
    pub preallocate: u32,
    /// Idle timeouts per state, used where a rule sets none.
    pub timeouts: Timeouts,
}

/// Why a new binding was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// The shard holds `max_flows` live bindings, even after reclaiming expired ones.
    #[error("flow table full")]
    TableFull,
    /// The flow's tenant holds `max_per_tenant` live bindings in this shard.
    #[error("tenant flow quota reached")]
    TenantQuota,
    /// A live or expired binding already has the same forward or return key.
    #[error("a binding with the same key exists")]
    Duplicate,
}

/// Expired bindings a full table reclaims before it refuses a new flow: bounded, so a
/// flood against a full table costs a fixed amount of work per packet.
const RECLAIM_ON_FULL: usize = 16;

/// A worker's flow table. See the module docs.
pub struct FlowShard {
    slab: Vec<Flow>,
    free: Vec<FlowId>,
    by_forward: BucketIndex,
    by_return: BucketIndex,
    hasher: RandomState,
    per_tenant: Vec<u32>,
    len: u32,
    limits: ShardLimits,
    /// When each binding is next looked at for expiry.
    wheel: Wheel,
    port_cursor: u32,
    /// Per pool: idle timeout and reset of its rule (`idle.rs`).
    rules: IdleRules,
    /// Expired flows whose ends the engine must reset, oldest first.
    resets: std::collections::VecDeque<(Flow, Acks)>,
    /// By slot: acknowledgment numbers of `tcp_reset` rules' flows; empty until one
    /// is noted, then as long as the highest slot noted.
    acks: Vec<Acks>,
    /// Expired flows that asked for resets but found the queue full, since the engine
    /// last took the count ([`FlowShard::take_unqueued_resets`]).
    unqueued_resets: u64,
}

/// Seconds from nanoseconds, as bindings keep them.
pub fn seconds(now_nanos: u64) -> u32 {
    (now_nanos / 1_000_000_000) as u32
}

impl FlowShard {
    /// An empty shard with room for `min(preallocate, max_flows)` bindings; it grows
    /// from there, up to `max_flows`.
    pub fn new(limits: ShardLimits) -> FlowShard {
        let initial = limits.preallocate.min(limits.max_flows) as usize;
        FlowShard {
            slab: Vec::with_capacity(initial),
            free: Vec::new(),
            by_forward: BucketIndex::with_capacity(initial),
            by_return: BucketIndex::with_capacity(initial),
            hasher: RandomState::default(),
            per_tenant: Vec::new(),
            len: 0,
            limits,
            wheel: Wheel::default(),
            port_cursor: 0,
            rules: IdleRules::default(),
            resets: std::collections::VecDeque::new(),
            acks: Vec::new(),
            unqueued_resets: 0,
        }
    }

    /// The bounds and default timeouts the shard was built with.
    pub fn limits(&self) -> &ShardLimits {
        &self.limits
    }

    /// Live bindings in the shard (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the shard holds no binding.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Live bindings of one tenant in this shard.
    pub fn tenant_len(&self, tenant: u16) -> u32 {
        self.per_tenant.get(tenant as usize).copied().unwrap_or(0)
    }

    /// The binding in slot `id`.
    ///
    /// # Panics
    /// If `id` is not a slot of the slab (see [`FlowShard::slots`]).
    pub fn flow(&self, id: FlowId) -> &Flow {
        &self.slab[id as usize]
    }

    /// Slots in the slab, live or free: the bound of a scan with [`FlowShard::live`].
    pub fn slots(&self) -> usize {
        self.slab.len()
    }

    /// The binding in slot `id`, if that slot holds a live one (expired or not): lets
    /// the metrics publisher count flows per DIP a slice of the slab at a time.
    pub fn live(&self, id: FlowId) -> Option<&Flow> {
        self.slab.get(id as usize).filter(|f| f.live)
    }

    fn expired(&self, flow: &Flow, now: u32) -> bool {
        now.wrapping_sub(flow.last_seen) > idle::timeout(&self.rules, &self.limits.timeouts, flow)
    }

    /// Removes an expired binding, keeping it for its resets if its rule asks for them.
    fn expire(&mut self, id: FlowId) {
        let flow = self.slab[id as usize];
        let acks = self.acks(id);
        if idle::wants_reset(&self.rules, &flow, &acks) {
            if self.resets.len() < idle::MAX_PENDING_RESETS {
                if self.resets.capacity() == 0 {
                    self.resets.reserve_exact(idle::MAX_PENDING_RESETS);
                }
                self.resets.push_back((flow, acks));
            } else {
                self.unqueued_resets += 1;
            }
        }
        self.remove(id);
    }

    /// The idle rules of the current policy's pools and outbound rules (after a policy
    /// change, with the flows already renumbered to it).
    ///
    /// Every binding's expiry is filed again: its timeout may have changed.
    pub fn set_rules(&mut self, rules: IdleRules) {
        self.rules = rules;
        self.refile();
    }

    /// Files every live binding in the wheel anew under its current deadline (after
    /// the rules or the timeouts changed); entries filed before become stale.
    fn refile(&mut self) {
        self.wheel.clear();
        for id in 0..self.slab.len() {
            if self.slab[id].live {
                self.slab[id].schedule = self.slab[id].schedule.wrapping_add(1);
                let f = self.slab[id];
                let at = self.deadline(&f);
                self.wheel
                    .schedule(id as FlowId, f.schedule, at, f.last_seen);
            }
        }
    }

    /// The first second in which `flow` is expired if no packet refreshes it.
    fn deadline(&self, flow: &Flow) -> u32 {
        flow.last_seen
            .saturating_add(idle::timeout(&self.rules, &self.limits.timeouts, flow))
            .saturating_add(1)
    }

    /// Whether flow `id` belongs to a rule that resets both ends when it times out idle.
    pub fn resets_on_idle(&self, id: FlowId) -> bool {
        self.slab
            .get(id as usize)
            .and_then(|f| self.rules.pools.get(f.pool as usize))
            .is_some_and(|r| r.reset)
    }

    /// Records the acknowledgment number of a TCP segment that travelled in `dir`.
    pub fn note_ack(&mut self, id: FlowId, dir: Direction, ack: u32) {
        let i = id as usize;
        if i >= self.slab.len() {
            return;
        }
        if i >= self.acks.len() {
            // Once per slab size, not per new slot: no allocation on most packets.
            self.acks
                .resize(self.slab.capacity().max(i + 1), Acks::default());
        }
        let a = &mut self.acks[i];
        match dir {
            Direction::Forward => {
                a.client = ack;
                a.seen |= idle::ACK_FROM_CLIENT;
            }
            Direction::Return => {
                a.dip = ack;
                a.seen |= idle::ACK_FROM_DIP;
            }
        }
    }

    /// The acknowledgment numbers noted for the binding in slot `id`.
    pub fn acks(&self, id: FlowId) -> Acks {
        self.acks.get(id as usize).copied().unwrap_or_default()
    }

    /// The next expired flow to reset, with its acknowledgment numbers, if any
    /// (between batches, by the engine).
    pub fn take_reset(&mut self) -> Option<(Flow, Acks)> {
        self.resets.pop_front()
    }

    /// How many expired flows were not queued for their resets (queue full) since the
    /// last call; the engine counts them as resets not sent.
    pub fn take_unqueued_resets(&mut self) -> u64 {
        std::mem::take(&mut self.unqueued_resets)
    }

    /// Expired flows waiting for their resets.
    pub fn pending_resets(&self) -> usize {
        self.resets.len()
    }

    /// The hash both indexes file a key under: a packet's (VSID, protocol, source,
    /// source port, destination, destination port) hashes alike as a forward and as a
    /// return key, so a batch hashes each packet once for either index.
    #[inline(always)]
    pub fn hash<K: std::hash::Hash>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Asks for the index buckets of a packet whose key hashes to `h`, in both indexes
    /// (the batch path's first stage: it cannot yet tell which direction it is).
    #[inline(always)]
    pub fn prefetch_buckets(&self, h: u64) {
        self.by_forward.prefetch(h);
        self.by_return.prefetch(h);
    }

    /// Asks for the slab entries the buckets of `h` name for its tag (the batch path's
    /// second stage, once the buckets are in cache).
    #[inline(always)]
    pub fn prefetch_entries(&self, h: u64) {
        for id in [self.by_forward.candidate(h), self.by_return.candidate(h)]
            .into_iter()
            .flatten()
        {
            if let Some(f) = self.slab.get(id as usize) {
                prefetch_all(f);
            }
        }
    }

    /// Finds the binding of a client's packet; an expired binding is removed and missed.
    #[inline]
    pub fn find_forward(&mut self, key: &ForwardKey, now: u32) -> Option<FlowId> {
        let hash = self.hasher.hash_one(key);
        let slab = &self.slab;
        let id = self
            .by_forward
            .find(hash, |i| slab[i as usize].forward == *key)?;
        self.live_or_expire(id, now)
    }

    /// The live, unexpired binding of a forward key, changing nothing: an expired one
    /// is left for [`FlowShard::find_forward`] to retire.
    #[inline(always)]
    pub fn find_forward_live(&self, key: &ForwardKey, now: u32) -> Option<FlowId> {
        self.find_forward_live_hashed(key, self.hasher.hash_one(key), now)
    }

    /// [`FlowShard::find_forward_live`] with the key's [`FlowShard::hash`] already
    /// known (the batch path hashed it for its lookahead).
    #[inline(always)]
    pub fn find_forward_live_hashed(
        &self,
        key: &ForwardKey,
        hash: u64,
        now: u32,
    ) -> Option<FlowId> {
        let slab = &self.slab;
        let id = self
            .by_forward
            .find(hash, |i| slab[i as usize].forward == *key)?;
        (!self.expired(&self.slab[id as usize], now)).then_some(id)
    }

    /// [`FlowShard::find_forward`] for a batch of keys, each answer in `found` at the
    /// key's position: every key is hashed and its bucket and entry prefetched before
    /// any is resolved, so the cache misses of a large table overlap.
    pub fn find_forward_batch(
        &mut self,
        keys: &[ForwardKey],
        now: u32,
        found: &mut [Option<FlowId>],
    ) {
        let mut hashes = [0u64; 64];
        for chunk in keys.chunks(64).zip(found.chunks_mut(64)) {
            let (keys, found) = chunk;
            for (h, k) in hashes.iter_mut().zip(keys) {
                *h = self.hasher.hash_one(k);
                self.by_forward.prefetch(*h);
            }
            for h in &hashes[..keys.len()] {
                if let Some(f) = self
                    .by_forward
                    .candidate(*h)
                    .and_then(|id| self.slab.get(id as usize))
                {
                    prefetch(f);
                }
            }
            for ((k, h), out) in keys.iter().zip(&hashes).zip(found.iter_mut()) {
                let slab = &self.slab;
                *out = self
                    .by_forward
                    .find(*h, |i| slab[i as usize].forward == *k)
                    .and_then(|id| self.live_or_expire(id, now));
            }
        }
    }

    /// Finds the binding of a DIP's reply; an expired binding is removed and missed.
    #[inline]
    pub fn find_return(&mut self, key: &ReturnKey, now: u32) -> Option<FlowId> {
        let hash = self.hasher.hash_one(key);
        let slab = &self.slab;
        let id = self
            .by_return
            .find(hash, |i| slab[i as usize].ret == *key)?;
        self.live_or_expire(id, now)
    }

    #[inline]
    fn live_or_expire(&mut self, id: FlowId, now: u32) -> Option<FlowId> {
        if self.expired(&self.slab[id as usize], now) {
            self.expire(id);
            None
        } else {
            Some(id)
        }
    }

    /// The live, unexpired binding of a return key with its [`FlowShard::hash`],
    /// changing nothing (see [`FlowShard::find_forward_live`]).
    #[inline(always)]
    pub fn find_return_live_hashed(&self, key: &ReturnKey, hash: u64, now: u32) -> Option<FlowId> {
        let slab = &self.slab;
        let id = self
            .by_return
            .find(hash, |i| slab[i as usize].ret == *key)?;
        (!self.expired(&self.slab[id as usize], now)).then_some(id)
    }

    /// [`FlowShard::find_return_live_hashed`], hashing the key.
    #[inline(always)]
    pub fn find_return_live(&self, key: &ReturnKey, now: u32) -> Option<FlowId> {
        self.find_return_live_hashed(key, self.hasher.hash_one(key), now)
    }

    /// Whether a return key is taken (expired or not): the port allocator must not
    /// reuse a port whose old binding could still receive stray replies.
    pub fn return_key_in_use(&self, key: &ReturnKey) -> bool {
        let hash = self.hasher.hash_one(key);
        self.by_return
            .find(hash, |i| self.slab[i as usize].ret == *key)
            .is_some()
    }

    /// Records a packet on a binding: refreshes its idle timer and advances its state.
    pub fn touch(&mut self, id: FlowId, dir: Direction, tcp_flags: Option<u8>, now: u32) {
        let flow = &mut self.slab[id as usize];
        let before = flow.state;
        flow.state = flow.state.next(dir, tcp_flags);
        flow.last_seen = now;
        if flow.state != before {
            self.state_changed(id, before);
        }
    }

    /// [`FlowShard::touch`] for a packet that leaves the binding's state as it is.
    #[inline]
    pub fn refresh(&mut self, id: FlowId, now: u32) {
        self.slab[id as usize].last_seen = now;
    }

    /// A binding whose state changed may have a shorter timeout now (a FIN or a RST):
    /// its wheel entry, filed under the longer one, gives way to one under the new
    /// deadline. A longer timeout needs nothing: the old entry files it again.
    #[cold]
    fn state_changed(&mut self, id: FlowId, before: super::State) {
        let flow = self.slab[id as usize];
        let old = idle::timeout(
            &self.rules,
            &self.limits.timeouts,
            &Flow {
                state: before,
                ..flow
            },
        );
        if idle::timeout(&self.rules, &self.limits.timeouts, &flow) < old {
            let generation = flow.schedule.wrapping_add(1);
            self.slab[id as usize].schedule = generation;
            self.wheel
                .schedule(id, generation, self.deadline(&flow), flow.last_seen);
        }
    }

    /// Adds a binding. Refuses rather than evicts when the shard or the tenant is full.
    pub fn insert(&mut self, mut flow: Flow, now: u32) -> Result<FlowId, InsertError> {
        let full = |s: &Self| {
            s.len >= s.limits.max_flows || s.tenant_len(flow.tenant) >= s.limits.max_per_tenant
        };
        if full(self) {
            // Expired bindings may still hold the room: reclaim a few before refusing.
            self.sweep(now, RECLAIM_ON_FULL);
        }
        if self.len >= self.limits.max_flows {
            return Err(InsertError::TableFull);
        }
        if self.tenant_len(flow.tenant) >= self.limits.max_per_tenant {
            return Err(InsertError::TenantQuota);
        }
        let fwd_hash = self.hasher.hash_one(flow.forward);
        let ret_hash = self.hasher.hash_one(flow.ret);
        let slab = &self.slab;
        if self
            .by_forward
            .find(fwd_hash, |i| slab[i as usize].forward == flow.forward)
            .is_some()
            || self
                .by_return
                .find(ret_hash, |i| slab[i as usize].ret == flow.ret)
                .is_some()
        {
            return Err(InsertError::Duplicate);
        }
        flow.live = true;
        flow.last_seen = now;
        let id = match self.free.pop() {
            Some(id) => {
                // The slot's acknowledgment numbers were its last binding's.
                if let Some(a) = self.acks.get_mut(id as usize) {
                    *a = Acks::default();
                }
                // A new generation, so that the slot's old wheel entry is stale.
                flow.schedule = self.slab[id as usize].schedule.wrapping_add(1);
                self.slab[id as usize] = flow;
                id
            }
            None if self.slab.len() > wheel::MAX_ID as usize => {
                return Err(InsertError::TableFull);
            }
            None => {
                flow.schedule = 0;
                self.slab.push(flow);
                (self.slab.len() - 1) as FlowId
            }
        };
        let at = self.deadline(&flow);
        self.wheel.schedule(id, flow.schedule, at, now);
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.by_forward
            .insert(fwd_hash, id, |i| hasher.hash_one(slab[i as usize].forward));
        self.by_return
            .insert(ret_hash, id, |i| hasher.hash_one(slab[i as usize].ret));
        let t = flow.tenant as usize;
        if self.per_tenant.len() <= t {
            self.per_tenant.resize(t + 1, 0);
        }
        self.per_tenant[t] += 1;
        self.len += 1;
        Ok(id)
    }

    /// Removes a binding (both directions).
    pub fn remove(&mut self, id: FlowId) {
        let flow = self.slab[id as usize];
        if !flow.live {
            return;
        }
        let fwd_hash = self.hasher.hash_one(flow.forward);
        let ret_hash = self.hasher.hash_one(flow.ret);
        self.by_forward.remove(fwd_hash, id);
        self.by_return.remove(ret_hash, id);
        self.slab[id as usize].live = false;
        self.free.push(id);
        self.len -= 1;
        if let Some(n) = self.per_tenant.get_mut(flow.tenant as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Rewrites or removes every binding after a policy change: `f` may renumber a
    /// flow's pool, DIP, tenant or client host (the keys must stay as they are) and
    /// returns false to forget it. Returns how many were removed.
    ///
    /// Walks the whole slab: a reload is rare and a full walk of a million bindings
    /// costs milliseconds, against a per-packet indirection on every lookup otherwise.
    pub fn remap(&mut self, mut f: impl FnMut(&mut Flow) -> bool) -> usize {
        let mut removed = 0;
        for id in 0..self.slab.len() {
            let Some(flow) = self.slab.get_mut(id) else {
                break;
            };
            if !flow.live {
                continue;
            }
            let (forward, ret) = (flow.forward, flow.ret);
            if f(flow) {
                // Keys index the hash tables; a renumbering may not change them.
                flow.forward = forward;
                flow.ret = ret;
            } else {
                self.remove(id as FlowId);
                removed += 1;
            }
        }
        self.per_tenant.clear();
        for flow in self.slab.iter().filter(|f| f.live) {
            let t = flow.tenant as usize;
            if self.per_tenant.len() <= t {
                self.per_tenant.resize(t + 1, 0);
            }
            self.per_tenant[t] += 1;
        }
        removed
    }

    /// New bounds and timeouts from a new policy; existing bindings stay even above a
    /// lowered bound (they expire as usual, new ones are refused meanwhile).
    pub fn set_limits(&mut self, limits: ShardLimits) {
        self.limits = limits;
    }

    /// Removes up to `budget` expired bindings, looking at no more than `4 * budget`
    /// wheel entries that are due by `now` (bindings not expired yet are filed again
    /// under their deadline). Called between batches: it costs nothing while nothing is
    /// due.
    pub fn sweep(&mut self, now: u32, budget: usize) -> usize {
        let mut removed = 0;
        let mut looked = 0;
        while removed < budget && looked < budget.saturating_mul(4) {
            let Some((id, generation)) = self.wheel.pop_due(now) else {
                break;
            };
            looked += 1;
            let Some(&flow) = self.slab.get(id as usize) else {
                continue;
            };
            if !flow.live || flow.schedule != generation {
                continue; // removed, replaced or filed again since
            }
            if self.expired(&flow, now) {
                self.expire(id);
                removed += 1;
            } else {
                let at = self.deadline(&flow);
                self.wheel.schedule(id, generation, at, now);
            }
        }
        removed
    }

    /// Picks a source-NAT port in `first..=last` for a new full-NAT binding.
    ///
    /// Only ports `p` with `p % workers == worker` are handed out, so that a reply
    /// addressed to (LB CA, p) can be steered to this worker by its port alone. A port
    /// is free for this binding when no binding with the same return key holds it: ports
    /// are reused across different DIPs, as a NAT may, which multiplies the pool.
    pub fn allocate_port(
        &mut self,
        template: &ReturnKey,
        first: u16,
        last: u16,
        worker: u16,
        workers: u16,
    ) -> Option<u16> {
        let w = u32::from(workers.max(1));
        let (first, last) = (u32::from(first), u32::from(last));
        let own = u32::from(worker) % w;
        let start = first + (own + w - first % w) % w;
        if start > last {
            return None;
        }
        let count = (last - start) / w + 1;
        const PROBES: u32 = 64;
        for _ in 0..PROBES.min(count) {
            let k = self.port_cursor % count;
            self.port_cursor = self.port_cursor.wrapping_add(1);
            let port = (start + k * w) as u16;
            let key = ReturnKey {
                peer_port: port,
                ..*template
            };
            if !self.return_key_in_use(&key) {
                return Some(port);
            }
        }
        None
    }

    /// Bytes held per binding, counting the slab and both index tables at their
    /// current capacity (for docs/performance.md and the flow-table fill metric).
    pub fn memory_bytes(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Flow>()
            + self.free.capacity() * std::mem::size_of::<FlowId>()
            + self.by_forward.allocation_size()
            + self.by_return.allocation_size()
            + self.wheel.allocation_size()
            + self.acks.capacity() * std::mem::size_of::<Acks>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::State;
    use std::net::{IpAddr, Ipv4Addr};

    fn limits(max: u32, per_tenant: u32) -> ShardLimits {
        ShardLimits {
            max_flows: max,
            max_per_tenant: per_tenant,
            preallocate: max,
            timeouts: Timeouts::default(),
        }
    }

    fn flow(i: u16, tenant: u16) -> Flow {
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let vip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));
        let dip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
        Flow::new(
            ForwardKey {
                vsid: 0,
                proto: 6,
                client,
                client_port: 1000 + i,
                vip,
                vip_port: 80,
            },
            ReturnKey {
                vsid: 5001,
                proto: 6,
                dip,
                dip_port: 80,
                peer: client,
                peer_port: 1000 + i,
            },
            tenant,
            0,
            0,
            State::SynSent,
        )
    }

    #[test]
    fn both_directions_find_the_same_binding() {
        let mut s = FlowShard::new(limits(10, 10));
        let f = flow(1, 0);
        let id = s.insert(f, 100).unwrap();
        assert_eq!(s.find_forward(&f.forward, 101), Some(id));
        assert_eq!(s.find_return(&f.ret, 101), Some(id));
        let other = flow(2, 0);
        assert_eq!(s.find_forward(&other.forward, 101), None);
        assert_eq!(s.insert(f, 100), Err(InsertError::Duplicate));
        s.remove(id);
        assert_eq!(s.find_forward(&f.forward, 101), None);
        assert_eq!(s.find_return(&f.ret, 101), None);
        assert!(s.is_empty());
    }

    /// The batch lookup answers as one lookup at a time does, over more keys than one
    /// lookahead round (64), present, absent and expired alike.
    #[test]
    fn batch_lookup_answers_as_single_lookups() {
        let mut s = FlowShard::new(limits(1000, 1000));
        for i in (0..150).step_by(2) {
            s.insert(flow(i, 0), if i % 6 == 0 { 0 } else { 100 })
                .unwrap();
        }
        let keys: Vec<ForwardKey> = (0..150).map(|i| flow(i, 0).forward).collect();
        let mut batch = vec![None; keys.len()];
        let mut twin = FlowShard::new(limits(1000, 1000));
        for i in (0..150).step_by(2) {
            twin.insert(flow(i, 0), if i % 6 == 0 { 0 } else { 100 })
                .unwrap();
        }
        // At 110 the bindings inserted at 0 (SYN, 20 s) have expired and are removed.
        s.find_forward_batch(&keys, 110, &mut batch);
        let single: Vec<Option<FlowId>> = keys.iter().map(|k| twin.find_forward(k, 110)).collect();
        assert_eq!(batch, single);
        assert_eq!(batch.iter().flatten().count(), 50);
        assert_eq!(s.len(), twin.len());
    }

    #[test]
    fn full_table_refuses_and_keeps_old_flows() {
        let mut s = FlowShard::new(limits(3, 2));
        let a = s.insert(flow(1, 0), 0).unwrap();
        s.insert(flow(2, 0), 0).unwrap();
        assert_eq!(s.insert(flow(3, 0), 0), Err(InsertError::TenantQuota));
        s.insert(flow(4, 1), 0).unwrap();
        assert_eq!(s.insert(flow(5, 1), 0), Err(InsertError::TableFull));
        assert_eq!(s.find_forward(&flow(1, 0).forward, 1), Some(a));
        assert_eq!(s.tenant_len(0), 2);
        assert_eq!(s.tenant_len(1), 1);
    }

    #[test]
    fn expiry_by_state() {
        let mut s = FlowShard::new(limits(10, 10));
        let f = flow(1, 0);
        let id = s.insert(f, 1000).unwrap();
        // SYN timeout is 20 s.
        assert_eq!(s.find_forward(&f.forward, 1020), Some(id));
        assert_eq!(
            s.find_forward(&f.forward, 1021),
            None,
            "expired SYN binding missed"
        );
        assert!(s.is_empty(), "expired binding removed on lookup");
        let id = s.insert(f, 2000).unwrap();
        s.touch(id, Direction::Return, Some(0x12), 2000);
        assert_eq!(s.flow(id).state, State::SynReceived);
        s.touch(id, Direction::Forward, Some(0x10), 2000);
        assert_eq!(s.flow(id).state, State::Established);
        assert_eq!(s.find_return(&f.ret, 2300), Some(id));
        assert_eq!(
            s.sweep(2300, 10),
            0,
            "touched at 2000, established timeout 300 s"
        );
        assert_eq!(s.sweep(2301, 10), 1);
        assert!(s.is_empty());
    }

    #[test]
    fn slots_are_reused() {
        let mut s = FlowShard::new(limits(10, 10));
        let a = s.insert(flow(1, 0), 0).unwrap();
        s.remove(a);
        s.remove(a); // a second remove is harmless
        let b = s.insert(flow(2, 0), 0).unwrap();
        assert_eq!(a, b);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn ports_belong_to_their_worker_and_are_unique() {
        let mut s = FlowShard::new(limits(1000, 1000));
        let base = flow(0, 0);
        let snat = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 250));
        let template = ReturnKey {
            peer: snat,
            ..base.ret
        };
        let mut seen = std::collections::HashSet::new();
        for i in 0..50u16 {
            let p = s.allocate_port(&template, 20000, 20099, 1, 2).unwrap();
            assert_eq!(p % 2, 1);
            assert!((20000..=20099).contains(&p));
            assert!(seen.insert(p), "port {p} handed out twice");
            let mut f = flow(i, 0);
            f.ret = ReturnKey {
                peer_port: p,
                ..template
            };
            s.insert(f, 0).unwrap();
        }
        assert_eq!(
            s.allocate_port(&template, 20000, 20099, 1, 2),
            None,
            "50 odd ports exhausted"
        );
        // Another DIP may reuse the same ports.
        let other = ReturnKey {
            dip_port: 81,
            ..template
        };
        assert!(s.allocate_port(&other, 20000, 20099, 1, 2).is_some());
        // A range with no port of this worker.
        assert_eq!(s.allocate_port(&template, 20000, 20000, 1, 2), None);
    }

    proptest::proptest! {
        /// Whatever happens to bindings (new ones, packets in either direction with any
        /// flags, removals, time going on), a sweep with room enough leaves no expired
        /// binding and removes no live one: the wheel never loses a binding's deadline,
        /// also when a FIN or RST shortens it.
        #[test]
        fn a_full_sweep_removes_exactly_the_expired(
            ops in proptest::collection::vec((0u8..4, 0u16..40, proptest::prelude::any::<u8>(), 0u32..40), 1..300),
        ) {
            let mut s = FlowShard::new(limits(1000, 1000));
            let mut now = 1000u32;
            for (op, i, flags, dt) in ops {
                match op {
                    0 => { let _ = s.insert(flow(i, 0), now); }
                    1 | 2 => {
                        if let Some(id) = s.find_forward(&flow(i, 0).forward, now) {
                            let dir = if op == 1 { Direction::Forward } else { Direction::Return };
                            s.touch(id, dir, Some(flags & 0x17), now);
                        }
                    }
                    _ => {
                        if let Some(id) = s.find_forward(&flow(i, 0).forward, now) {
                            s.remove(id);
                        }
                    }
                }
                now += dt;
                if dt % 3 == 0 {
                    s.sweep(now, usize::MAX);
                    for id in 0..s.slots() as FlowId {
                        if let Some(f) = s.live(id) {
                            proptest::prop_assert!(!s.expired(f, now), "expired binding left at {}", now);
                        }
                    }
                }
            }
            let before = s.len();
            let expired = (0..s.slots() as FlowId)
                .filter(|&id| s.live(id).is_some_and(|f| s.expired(f, now)))
                .count();
            proptest::prop_assert_eq!(s.sweep(now, usize::MAX), expired);
            proptest::prop_assert_eq!(s.len(), before - expired);
        }
    }

    /// The binding's byte budget: at most 116 bytes with what the features on the
    /// way need. Today 108: the two keys (44 each), tenant, pool, DIP, FlowID, client
    /// host, state, clock, liveness and wheel generation. Budgeted: the SYN proxy's
    /// sequence delta and timestamp offset (4 + 4 bytes) go in the entry, since every
    /// packet of a proxied flow needs them. Not in the entry: the idle-reset
    /// acknowledgment numbers ([`Acks`], beside the slab, only for `tcp_reset` rules),
    /// and a flow log's packet and byte counters per direction (24 bytes), which
    /// belong in an array beside the slab allocated only when a collector is
    /// configured, so that a shard without flow logs carries none of them.
    #[test]
    fn flow_entry_keeps_its_byte_budget() {
        const SYN_PROXY: usize = 8;
        let size = std::mem::size_of::<Flow>();
        assert!(size + SYN_PROXY <= 116, "Flow is {size} bytes");
    }
}
