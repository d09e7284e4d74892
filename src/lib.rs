//! nvlb: an NVGRE-aware, multi-tenant L4 load balancer.
//!
//! The code lives in the workspace's crates (docs/architecture.md, "Crates"): the
//! packet logic in `nvlb-proto`, the data plane in `nvlb-io`, the control plane in
//! `nvlb-control`, the lab and its instruments in `nvlb-tools`. This library is the
//! `nvlb` binary's view of them under one name, so that the integration tests, the
//! benches and the fuzz crate reach every part by the paths they always used.

pub use nvlb_control as control;
pub use nvlb_control::{health, metrics};
pub use nvlb_io as dataplane;
pub use nvlb_proto::{craft, engine, flow, maglev, policy, wire};
pub use nvlb_tools::{hostsim, lab, loadgen, pcap};
