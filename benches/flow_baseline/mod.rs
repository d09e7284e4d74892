//! The flow table nvlb had before its own bucket index (flow/index.rs): a slab of
//! bindings and two hashbrown `HashTable<u32>` indexes, foldhash. Kept here as the
//! baseline that `benches/flow.rs` measures the shard against in the same run; only the
//! operations the bench times (no limits, no expiry).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use nvlb::flow::{Flow, ForwardKey};

pub struct HashbrownShard {
    slab: Vec<Flow>,
    free: Vec<u32>,
    by_forward: HashTable<u32>,
    by_return: HashTable<u32>,
    hasher: RandomState,
}

impl HashbrownShard {
    /// Room for `capacity` bindings before the first growth, as the old shard's 4096.
    pub fn with_capacity(capacity: usize) -> Self {
        HashbrownShard {
            slab: Vec::with_capacity(capacity),
            free: Vec::new(),
            by_forward: HashTable::with_capacity(capacity),
            by_return: HashTable::with_capacity(capacity),
            hasher: RandomState::default(),
        }
    }

    pub fn insert(&mut self, flow: Flow) -> u32 {
        let fwd = self.hasher.hash_one(flow.forward);
        let ret = self.hasher.hash_one(flow.ret);
        let id = match self.free.pop() {
            Some(id) => {
                self.slab[id as usize] = flow;
                id
            }
            None => {
                self.slab.push(flow);
                (self.slab.len() - 1) as u32
            }
        };
        let (slab, hasher) = (&self.slab, &self.hasher);
        self.by_forward
            .insert_unique(fwd, id, |&i| hasher.hash_one(slab[i as usize].forward));
        self.by_return
            .insert_unique(ret, id, |&i| hasher.hash_one(slab[i as usize].ret));
        id
    }

    pub fn find_forward(&self, key: &ForwardKey) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.by_forward
            .find(h, |&i| self.slab[i as usize].forward == *key)
            .copied()
    }

    pub fn remove(&mut self, id: u32) {
        let flow = self.slab[id as usize];
        let fwd = self.hasher.hash_one(flow.forward);
        let ret = self.hasher.hash_one(flow.ret);
        if let Ok(e) = self.by_forward.find_entry(fwd, |&i| i == id) {
            e.remove();
        }
        if let Ok(e) = self.by_return.find_entry(ret, |&i| i == id) {
            e.remove();
        }
        self.free.push(id);
    }

    pub fn memory_bytes(&self) -> usize {
        self.slab.capacity() * std::mem::size_of::<Flow>()
            + self.free.capacity() * 4
            + self.by_forward.allocation_size()
            + self.by_return.allocation_size()
    }
}
