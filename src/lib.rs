//! nvlb: an NVGRE-aware, multi-tenant L4 load balancer.
//!
//! The library holds everything that can be tested without a socket: packet views
//! (`wire`), the declared world (`policy`), consistent hashing (`maglev`), flow state
//! (`flow`) and the pure per-packet pipeline (`engine`). The `nvlb` binary adds I/O.

pub mod craft;
pub mod engine;
pub mod flow;
pub mod maglev;
pub mod pcap;
pub mod policy;
pub mod wire;
