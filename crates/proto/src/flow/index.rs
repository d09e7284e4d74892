//! A hash index from a 64-bit key hash to a flow id, in cache-line buckets.
//!
//! Why not hashbrown, which the shard used before: a lookup in hashbrown is a chain of
//! dependent loads (control bytes, then the slab entry the id names) whose addresses are
//! private to it, so a batch cannot ask for them ahead; and its tables double, so a
//! million-flow shard holds up to twice the slots it needs. Here a bucket is one
//! 64-byte line with 12 slots: an 8-bit tag of the hash and a 32-bit id each. A lookup
//! reads one line (two for the few keys that spilled), compares 12 tags at once and
//! reads the slab only for a matching tag (one in 255 of the others, by chance): so a
//! batch can prefetch the bucket of every key, then the entry each first tag names,
//! before it resolves any of them. Sized from the expected count at 3/4 load, it
//! doubles only when that count is passed. Figures: docs/performance.md, "Flow table".
//!
//! Placement: each hash names two buckets. An id goes to the first while it has room,
//! else to the second (the first counts it in `spilled`, so a lookup that misses the
//! first reads the second only when something spilled from there); when both are
//! full, one id of either moves to its own other bucket to make room, and only when no
//! id can move does the index grow.

use super::prefetch::prefetch;

/// Slots per bucket: 12 tags, a spill count and 12 ids fill one 64-byte line.
const SLOTS: usize = 12;

/// Highest share of slots in use that `with_capacity` plans for (3/4).
const LOAD_NUM: usize = 3;
const LOAD_DEN: usize = 4;

/// Tag of an empty slot; a hash's tag is never 0.
const EMPTY: u8 = 0;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u8; SLOTS],
    /// Ids whose first bucket this is but which live in their second.
    spilled: u32,
    ids: [u32; SLOTS],
}

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [EMPTY; SLOTS],
    spilled: 0,
    ids: [0; SLOTS],
};

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bit 8·i+7 set where byte i of `x` is zero (exact, no false positives).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7).wrapping_add(LOW7)) | x) & HIGH
}

/// Slots of `b` whose tag is `t`, as a bit mask (bit i = slot i).
#[inline(always)]
fn slots_with(b: &Bucket, t: u8) -> u32 {
    let wide = u64::from(t) * 0x0101_0101_0101_0101;
    let lo = u64::from_le_bytes([
        b.tags[0], b.tags[1], b.tags[2], b.tags[3], b.tags[4], b.tags[5], b.tags[6], b.tags[7],
    ]);
    // The last four tags, with four bytes that can never be zero above them.
    let hi = u64::from_le_bytes([
        b.tags[8], b.tags[9], b.tags[10], b.tags[11], 0xff, 0xff, 0xff, 0xff,
    ]) ^ (wide & 0xffff_ffff);
    let lo = zero_bytes(lo ^ wide);
    let hi = zero_bytes(hi);
    // Gather bit 7 of each byte into one bit per slot.
    let gather = |m: u64| ((m >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32;
    gather(lo) | (gather(hi) << 8)
}

/// The tag of a hash: its low byte, never [`EMPTY`].
#[inline(always)]
fn tag(h: u64) -> u8 {
    (h as u8).max(1)
}

/// `x` scaled into `0..n` (multiply-shift, so any bucket count works).
#[inline(always)]
fn reduce(x: u32, n: usize) -> usize {
    ((u64::from(x) * n as u64) >> 32) as usize
}

/// The two buckets of a hash: from its high 32 bits, and from bits 8..40 (apart from
/// the tag, and from the bits that place the first).
#[inline(always)]
fn homes(h: u64, n: usize) -> (usize, usize) {
    (reduce((h >> 32) as u32, n), reduce((h >> 8) as u32, n))
}

/// See the module docs.
pub(crate) struct BucketIndex {
    buckets: Vec<Bucket>,
    len: usize,
}

impl BucketIndex {
    /// An index planned for `entries` ids at 3/4 load; it grows past that.
    pub(crate) fn with_capacity(entries: usize) -> BucketIndex {
        BucketIndex {
            buckets: vec![EMPTY_BUCKET; Self::buckets_for(entries)],
            len: 0,
        }
    }

    fn buckets_for(entries: usize) -> usize {
        (entries * LOAD_DEN).div_ceil(SLOTS * LOAD_NUM).max(1)
    }

    /// Ids held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes of buckets held (for the shard's memory figure).
    pub(crate) fn allocation_size(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    /// Asks for the first bucket of `h`, which almost every lookup reads.
    #[inline(always)]
    pub(crate) fn prefetch(&self, h: u64) {
        let (first, _) = homes(h, self.buckets.len());
        prefetch(&self.buckets[first]);
    }

    /// The id in the first slot of `h`'s first bucket whose tag matches, without
    /// checking the key: what a batch prefetches the entry of.
    #[inline(always)]
    pub(crate) fn candidate(&self, h: u64) -> Option<u32> {
        let (first, _) = homes(h, self.buckets.len());
        let b = &self.buckets[first];
        let m = slots_with(b, tag(h));
        (m != 0).then(|| b.ids[m.trailing_zeros() as usize])
    }

    /// The id stored under `h` for which `eq` holds.
    #[inline(always)]
    pub(crate) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let n = self.buckets.len();
        let first = reduce((h >> 32) as u32, n);
        let t = tag(h);
        let b = &self.buckets[first];
        let mut m = slots_with(b, t);
        while m != 0 {
            let id = b.ids[m.trailing_zeros() as usize];
            if eq(id) {
                return Some(id);
            }
            m &= m - 1;
        }
        if b.spilled == 0 {
            return None;
        }
        let (_, second) = homes(h, n);
        let b = &self.buckets[second];
        let mut m = slots_with(b, t);
        while m != 0 {
            let id = b.ids[m.trailing_zeros() as usize];
            if eq(id) {
                return Some(id);
            }
            m &= m - 1;
        }
        None
    }

    /// A free slot of bucket `b` (an empty slot's tag is [`EMPTY`]).
    fn free_slot(&self, b: usize) -> Option<usize> {
        let m = slots_with(&self.buckets[b], EMPTY);
        (m != 0).then(|| m.trailing_zeros() as usize)
    }

    fn put(&mut self, b: usize, slot: usize, t: u8, id: u32) {
        self.buckets[b].tags[slot] = t;
        self.buckets[b].ids[slot] = id;
    }

    /// Stores `id` under `h`; `hash_of` gives the hash of any stored id, for moving
    /// ids to make room and for growing.
    pub(crate) fn insert(&mut self, h: u64, id: u32, hash_of: impl Fn(u32) -> u64) {
        if self.len >= Self::capacity_of(self.buckets.len()) {
            self.grow(&hash_of);
        }
        while !self.try_insert(h, id, &hash_of) {
            self.grow(&hash_of);
        }
        self.len += 1;
    }

    fn capacity_of(buckets: usize) -> usize {
        buckets * SLOTS * LOAD_NUM / LOAD_DEN
    }

    fn try_insert(&mut self, h: u64, id: u32, hash_of: &impl Fn(u32) -> u64) -> bool {
        let (first, second) = homes(h, self.buckets.len());
        let t = tag(h);
        if let Some(s) = self.free_slot(first) {
            self.put(first, s, t, id);
            return true;
        }
        if let Some(s) = self.free_slot(second) {
            self.put(second, s, t, id);
            self.buckets[first].spilled += 1;
            return true;
        }
        // Both full: move one id of either bucket to its other bucket.
        for b in [first, second] {
            if let Some(slot) = self.make_room(b, hash_of) {
                self.put(b, slot, t, id);
                if b != first {
                    self.buckets[first].spilled += 1;
                }
                return true;
            }
        }
        false
    }

    /// Moves one id of the full bucket `b` to its other bucket, if any has room there;
    /// returns the slot freed.
    fn make_room(&mut self, b: usize, hash_of: &impl Fn(u32) -> u64) -> Option<usize> {
        let n = self.buckets.len();
        for slot in 0..SLOTS {
            let id = self.buckets[b].ids[slot];
            let h = hash_of(id);
            let (first, second) = homes(h, n);
            let to = if b == first { second } else { first };
            if to == b {
                continue;
            }
            let Some(free) = self.free_slot(to) else {
                continue;
            };
            self.put(to, free, tag(h), id);
            self.buckets[b].tags[slot] = EMPTY;
            // Leaving its first bucket spills it; going back to it unspills it.
            if b == first {
                self.buckets[first].spilled += 1;
            } else {
                self.buckets[first].spilled -= 1;
            }
            return Some(slot);
        }
        None
    }

    /// Doubles the buckets and places every id again.
    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let old = std::mem::take(&mut self.buckets);
        let mut n = old.len() * 2;
        'again: loop {
            self.buckets = vec![EMPTY_BUCKET; n];
            for b in &old {
                for slot in 0..SLOTS {
                    if b.tags[slot] != EMPTY {
                        let id = b.ids[slot];
                        if !self.try_insert(hash_of(id), id, hash_of) {
                            n *= 2;
                            continue 'again;
                        }
                    }
                }
            }
            return;
        }
    }

    /// Removes `id`, stored under `h`; false if it is not there.
    pub(crate) fn remove(&mut self, h: u64, id: u32) -> bool {
        let (first, second) = homes(h, self.buckets.len());
        let t = tag(h);
        for b in [first, second] {
            let bucket = &mut self.buckets[b];
            let mut m = slots_with(bucket, t);
            while m != 0 {
                let slot = m.trailing_zeros() as usize;
                if bucket.ids[slot] == id {
                    bucket.tags[slot] = EMPTY;
                    if b != first {
                        self.buckets[first].spilled -= 1;
                    }
                    self.len -= 1;
                    return true;
                }
                m &= m - 1;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn tag_masks_are_exact() {
        let mut b = EMPTY_BUCKET;
        b.tags = [1, 2, 3, 2, 0, 255, 2, 7, 2, 9, 0, 2];
        b.spilled = 0x0202_0202;
        assert_eq!(slots_with(&b, 2), 0b1001_0100_1010);
        assert_eq!(slots_with(&b, 255), 0b10_0000);
        assert_eq!(slots_with(&b, 4), 0);
        assert_eq!(slots_with(&b, EMPTY), 0b0100_0001_0000);
    }

    /// Hashes that crowd a handful of buckets, so that spilling, moving and growing
    /// all happen in a small test.
    fn crowded(key: u32) -> u64 {
        let h = u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h & 0x0000_0fff_ffff_ff00) | u64::from((key % 7) as u8 + 1)
    }

    proptest! {
        /// Against a map, through inserts and removes in any order, with a hash that
        /// piles keys into few buckets: every stored id is found, no removed one is.
        #[test]
        fn agrees_with_a_map(ops in prop::collection::vec((any::<bool>(), 0u32..400), 1..2000),
                             cap in 1usize..64) {
            let mut index = BucketIndex::with_capacity(cap);
            let mut model: HashMap<u32, ()> = HashMap::new();
            for (add, key) in ops {
                let h = crowded(key);
                if add {
                    if model.insert(key, ()).is_none() {
                        index.insert(h, key, crowded);
                    }
                } else if model.remove(&key).is_some() {
                    prop_assert!(index.remove(h, key));
                } else {
                    prop_assert!(!index.remove(h, key));
                }
                prop_assert_eq!(index.len(), model.len());
            }
            for key in 0..400u32 {
                let found = index.find(crowded(key), |id| id == key);
                prop_assert_eq!(found.is_some(), model.contains_key(&key), "key {}", key);
            }
            let spilled: u64 = index.buckets.iter().map(|b| u64::from(b.spilled)).sum();
            let in_second = index.buckets.iter().enumerate().map(|(i, b)| {
                (0..SLOTS).filter(|&s| b.tags[s] != EMPTY
                    && homes(crowded(b.ids[s]), index.buckets.len()).0 != i).count() as u64
            }).sum::<u64>();
            prop_assert_eq!(spilled, in_second);
        }
    }

    #[test]
    fn planned_size_holds_without_growing() {
        let n = 100_000;
        let mix = |k: u32| {
            let mut z = u64::from(k).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z ^ (z >> 27)
        };
        let mut index = BucketIndex::with_capacity(n);
        let before = index.allocation_size();
        for k in 0..n as u32 {
            index.insert(mix(k), k, mix);
        }
        assert_eq!(
            index.allocation_size(),
            before,
            "grew below its planned size"
        );
        assert!(before / n <= 8, "{} bytes an entry", before / n);
        for k in 0..n as u32 {
            assert_eq!(index.find(mix(k), |id| id == k), Some(k));
        }
    }
}
