#![no_main]
//! Fuzz target `image_folder`: see `harness::image_folder` (fuzz/harness.rs).
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::image_folder(&s, data);
});
