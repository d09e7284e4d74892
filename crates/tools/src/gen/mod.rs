//! `nvlb gen`: the NVGRE traffic generator an operator qualifies a load balancer with,
//! and its counterpart `nvlb gen --reflect`, which plays every Hyper-V host at once.
//!
//! The generator sends TCP (SYN, then established-like segments) and UDP flows, IPv4
//! and IPv6, to the public VIPs (plain IP, as the Internet router) and CA VIPs (NVGRE,
//! as a client VM's host) of the policy the LB reads, at a target rate or as fast as it
//! can, with a probe (flow, sequence, send time) in every payload. The reflector
//! answers as each DIP would, so the probe comes back through both NAT directions; the
//! generator measures rates, loss, round trips, the per-DIP and per-VSID distribution
//! and wrong-tenant deliveries.
//!
//! `plan`, `payload`, `layers`, `reflect::reflect` and `stats` are pure; `run` and
//! `Reflector::run` own the sockets and threads. Must never send outside the
//! interfaces it was given, nor answer a frame the policy does not explain.

pub mod layers;
pub mod payload;
pub mod plan;
pub mod plot;
pub mod reflect;
pub mod run;
mod skip;
pub mod stats;

pub use plan::{Plan, PlanError, Selection};
pub use reflect::{Reflector, Skip};
pub use run::Options;
pub use stats::Summary;

/// What can stop a generator or reflector run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::Error),
    #[error("--{0}: {1}")]
    Flag(&'static str, String),
    #[error("{op}: {cause}")]
    Io {
        op: &'static str,
        cause: std::io::Error,
    },
    #[error("plot: {0}")]
    Plot(String),
    #[error("interface {0:?} is down (ip link set {0} up)")]
    LinkDown(String),
    #[error(
        "interface {0:?} is up but not operational after {1:?} (no carrier: is the other end of the link up?)"
    )]
    NoCarrier(String, std::time::Duration),
}

/// Waits until `ifname` is up and operational: the kernel drops what is sent on a link
/// before its link watch has run, which would count as loss.
pub fn wait_operational(ifname: &str, limit: std::time::Duration) -> Result<(), Error> {
    let start = std::time::Instant::now();
    loop {
        let (up, running) = crate::dataplane::afpacket::link_state(ifname)?;
        if !up {
            return Err(Error::LinkDown(ifname.to_string()));
        }
        if running {
            return Ok(());
        }
        if start.elapsed() >= limit {
            return Err(Error::NoCarrier(ifname.to_string(), limit));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests;
