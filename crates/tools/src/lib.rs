//! nvlb's instruments: what builds, drives and measures a load balancer, never part
//! of one.
//!
//! `lab` (`nvlb lab`) builds the guide's datacenter in network namespaces from a
//! policy and drives it with real clients; `hostsim` (`nvlb host`) is the Hyper-V
//! host simulator the lab runs (no kernel GRE here), deciding as purely as the engine
//! and using its sockets only in `hostsim::run`; `loadgen` (`nvlb gen`) is the NVGRE
//! traffic generator; `pcap` reads and writes the captures of `nvlb replay` and the
//! golden tests.

pub mod hostsim;
pub mod lab;
/// `nvlb gen` (the directory is `gen/`; `gen` is a reserved word in Rust 2024).
#[path = "gen/mod.rs"]
pub mod loadgen;
pub mod pcap;

// The crates below, under the names the modules here were written with.
use nvlb_control as control;
use nvlb_control::metrics;
use nvlb_io as dataplane;
use nvlb_proto::{craft, drop_reasons, engine, policy, wire};
