//! Flow state: one shard per data-plane worker, holding both directions of every NAT
//! binding, bounded per shard and per tenant, expiring by TCP state or UDP idle time.
//!
//! A shard is owned by exactly one worker and is never shared: there are no locks here.
//! Keeping both directions of a flow on one shard is the job of [`steer`]; this module
//! must never read a clock (time comes in as an argument) or do I/O.

mod binding;
pub mod idle;
mod index;
mod prefetch;
pub mod shard;
pub mod state;
pub mod steer;
mod wheel;

pub use binding::{NO_HOST, Owner};
pub use idle::{IdleRules, RuleIdle};
pub use shard::{Acks, Flow, FlowId, FlowShard, ForwardKey, InsertError, ReturnKey, ShardLimits};
pub use state::{Direction, State, Timeouts};

/// Nanoseconds on the caller's clock. The engine never reads a clock itself, so that
/// `nvlb replay` can drive it with pcap timestamps and tests can step time at will.
pub type Nanos = u64;
