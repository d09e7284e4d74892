//! nvlb: an NVGRE-aware, multi-tenant L4 load balancer.
//!
//! Everything but `dataplane` can be tested without a socket: packet views
//! (`wire`), the declared world (`policy`), consistent hashing (`maglev`), flow state
//! (`flow`) and the pure per-packet pipeline (`engine`). `dataplane` is the one part
//! that touches sockets and threads (AF_PACKET, workers, handoff queues); the lab's
//! Hyper-V host simulator (`hostsim`, `nvlb host`) decides as purely and uses its
//! sockets only in `hostsim::run`. `lab` (`nvlb lab`) builds the guide's datacenter
//! in network namespaces from a policy and drives it with real clients.

pub mod control;
pub mod craft;
pub mod dataplane;
pub mod engine;
pub mod flow;
pub mod health;
pub mod hostsim;
pub mod lab;
/// `nvlb gen` (the directory is `gen/`; `gen` is a reserved word in Rust 2024).
#[path = "gen/mod.rs"]
pub mod loadgen;
pub mod maglev;
pub mod metrics;
pub mod pcap;
pub mod policy;
mod reasons;
pub mod wire;
