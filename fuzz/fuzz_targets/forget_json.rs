#![no_main]
//! Fuzz target `forget_json`: see `harness::forget_json` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::forget_json(&s, data);
});
