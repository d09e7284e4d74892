//! The harnesses behind nvlb's fuzz targets (`fuzz_targets/`), kept in a library so
//! that the targets stay one line, the seed generator shares the input formats, and a
//! finding replays as an ordinary call of `run`.
//!
//! Each harness returns `Err(message)` when an invariant breaks; the targets turn that
//! into a panic, which libFuzzer records as a crash. Must never: swallow a panic of the
//! code under test, or read anything but the input and the policy compiled in.

pub mod api;
pub mod check;
pub mod config;
pub mod decode;
pub mod engine;
pub mod seeds;

/// The lab's policy (the guide's Figures 4-6), compiled into the targets.
pub const EXAMPLE: &str = include_str!("../../lb-config/example.toml");
