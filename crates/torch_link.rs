// Included by both crates' build.rs: link arguments that make a binary find
// libtorch at run time without LD_LIBRARY_PATH (rpath), and keep
// libtorch_cuda in its needed libraries (--no-as-needed; otherwise the linker
// drops it and CUDA reports "not available", tch-rs issue #980).

/// The libtorch lib folder torch-sys found (torch-sys must be a direct
/// dependency for `DEP_TCH_LIBTORCH_LIB` to be visible).
fn libtorch_lib() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
        "torch-sys did not report DEP_TCH_LIBTORCH_LIB; build through scripts/setup.sh \
         (LIBTORCH_USE_PYTORCH=1 with the torch 2.11.0 virtual environment first on PATH)",
    ))
}

fn emit_torch_link_args(lib: &std::path::Path) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The GPU machine's own torch, so a binary built here runs there as is.
    println!(
        "cargo:rustc-link-arg=-Wl,-rpath,/opt/torch/.venv/lib/python3.12/site-packages/torch/lib"
    );
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-lc10_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
}
