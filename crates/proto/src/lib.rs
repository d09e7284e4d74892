//! nvlb's packet logic: everything that decides what happens to a frame, and nothing
//! that moves one.
//!
//! Zero-copy packet views (`wire`), the declared world compiled from a policy file's
//! text (`policy`), consistent hashing (`maglev`), flow state (`flow`) and the
//! per-packet pipeline (`engine`), with the frame builders tests, benches and the
//! generator share (`craft`). This crate opens no file or socket, reads no clock,
//! starts no thread and takes no lock: the I/O crates hand it bytes and the time,
//! and every decision can be replayed from a capture. tests/layering.rs and
//! `clippy.toml` hold it to that.

pub mod craft;
pub mod engine;
pub mod flow;
pub mod maglev;
pub mod policy;
mod reasons;
pub mod wire;

/// The guide's datacenter (`lb-config/example.toml`), the fixture of the unit tests.
#[cfg(test)]
pub(crate) const EXAMPLE_POLICY: &str = include_str!("../../../lb-config/example.toml");
