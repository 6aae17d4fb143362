#![no_main]
//! Fuzz target `safetensors_checkpoint`: see `harness::safetensors_checkpoint` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::safetensors_checkpoint(&s, data);
});
