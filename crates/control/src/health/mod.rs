//! Health checks: TCP (SYN / SYN-ACK) and HTTP (status, optional body match) probes of
//! every DIP of every pool that declares `health`, with interval, timeout, rise and
//! fall (see docs/health.md).
//!
//! Probes travel as data does: NVGRE to the DIP's host PA, from the LB's SNAT CA in the
//! DIP's VSID and a source port of `[balancer.health] probe_ports`, so a DIP reachable
//! only through its host is checked through its host. The engine recognises replies by
//! that port (`Verdict::Local`) and the workers queue them here. A state change goes to
//! [`crate::Control::set_dip_health`], which rebuilds that pool's Maglev table
//! without the DIP: new flows avoid it, established flows keep their binding.
//!
//! `conn` is the probe's client TCP, `frame` builds and reads the frames, `prober`
//! schedules and counts (all pure, driven by tests with crafted frames and a made-up
//! clock); `run` is the thread with the socket; `status` is what others may read.
//! This module must never touch a flow, never send anything but probes, and never make
//! a worker wait.

pub mod conn;
pub mod frame;
pub mod prober;
pub mod run;
pub mod status;

pub use conn::Failure;
pub use prober::{Prober, Transition};
pub use run::Checker;
pub use status::{DipHealth, HealthStatus};

#[cfg(test)]
mod tests;
