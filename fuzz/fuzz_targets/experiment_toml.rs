#![no_main]
//! Fuzz target `experiment_toml`: see `harness::experiment_toml` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::experiment_toml(&s, data);
});
