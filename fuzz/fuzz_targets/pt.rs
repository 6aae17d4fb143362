#![no_main]
//! Fuzz target `pt`: see `harness::pt` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::pt(&s, data);
});
