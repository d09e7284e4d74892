#![no_main]
//! Fuzz target: see `nvlb_fuzz::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvlb_fuzz::small_tables();
    if let Err(e) = nvlb_fuzz::config::run(data) {
        panic!("config invariant broken: {e}");
    }
});
