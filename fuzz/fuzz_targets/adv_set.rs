#![no_main]
//! Fuzz target `adv_set`: see `harness::adv_set` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::adv_set(&s, data);
});
