#![no_main]
//! Fuzz target: see `nvlb_fuzz::api`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nvlb_fuzz::small_tables();
    if let Err(e) = nvlb_fuzz::api::run(data) {
        panic!("api invariant broken: {e}");
    }
});
