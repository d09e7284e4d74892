#![no_main]
//! Fuzz target: see `nvlb_fuzz::engine`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = nvlb_fuzz::engine::run(data) {
        panic!("engine invariant broken: {e}");
    }
});
