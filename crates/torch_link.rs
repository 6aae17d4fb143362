// Included by both crates' build.rs: link arguments that make a binary find
// libtorch at run time without LD_LIBRARY_PATH (rpath), and keep
// libtorch_cuda in its needed libraries (--no-as-needed; otherwise the linker
// drops it and CUDA reports "not available", tch-rs issue #980) — except in
// the CPU-only set-up, whose venv lacks the CUDA libraries libtorch_cuda needs.

/// The libtorch lib folder torch-sys found (torch-sys must be a direct
/// dependency for `DEP_TCH_LIBTORCH_LIB` to be visible).
fn libtorch_lib() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "torch-sys did not report DEP_TCH_LIBTORCH_LIB; build through scripts/setup.sh \
         (or `source scripts/env.sh`, which sets LIBTORCH to the venv's torch)",
    ))
}

fn emit_torch_link_args(lib: &std::path::Path) {
    // Set by scripts/env.sh from the venv's record of its set-up.
    println!("cargo:rerun-if-env-changed=AMUN_TORCH_FLAVOR");
    let cpu_only = std::env::var("AMUN_TORCH_FLAVOR").as_deref() == Ok("cpu");
    println!("cargo:rustc-check-cfg=cfg(amun_cpu_only_libtorch)");
    if cpu_only {
        println!("cargo:rustc-cfg=amun_cpu_only_libtorch");
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The GPU machine's own torch, so a binary built here runs there as is.
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,/opt/torch/.venv/lib/python3.12/site-packages/torch/lib"
    );
    if cpu_only {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
