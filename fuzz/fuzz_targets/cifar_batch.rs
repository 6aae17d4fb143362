#![no_main]
//! Fuzz target `cifar_batch`: see `harness::cifar_batch` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::cifar_batch(&s, data);
});
