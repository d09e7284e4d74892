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
pub mod policy;
pub mod seeds;

/// The lab's policy (the guide's Figures 4-6), compiled into the targets.
pub const EXAMPLE: &str = include_str!("../../lb-config/example.toml");

/// Maglev table size of every policy the config and api targets compile: prime and
/// small, so that an input costs microseconds instead of a 65537-slot table per pool
/// (about 70 % of the time at the default, by perf). What is fuzzed — parsing,
/// validation, the API's routes and persistence, an engine built from the policy — does
/// not depend on the size; the default-size tables are covered by nvlb's own tests.
pub const FUZZ_TABLE_SIZE: u32 = 1021;

static SMALL_TABLES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes the harnesses of this process compile with [`FUZZ_TABLE_SIZE`] tables
/// (idempotent). The targets call it; the replay tests do not, so a finding also
/// replays at the default size. The choice is the harness's: nvlb itself takes the
/// size as an argument ([`options`]).
pub fn small_tables() {
    SMALL_TABLES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The options every harness compiles policies with.
pub fn options() -> nvlb::policy::CompileOptions {
    let options = nvlb::policy::CompileOptions::default();
    if SMALL_TABLES.load(std::sync::atomic::Ordering::Relaxed) {
        options
            .with_table_size(FUZZ_TABLE_SIZE)
            .expect("1021 is prime")
    } else {
        options
    }
}
