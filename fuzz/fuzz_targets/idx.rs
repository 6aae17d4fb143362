#![no_main]
//! Fuzz target `idx`: see `harness::idx` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::idx(&s, data);
});
