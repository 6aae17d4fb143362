//! Compiles the small C++ shim (bf16 autocast, TF32, channels-last; ATen
//! operators called by name for exported programs) against
//! the libtorch torch-sys found, and links this crate's tests to libtorch.
include!("../torch_link.rs");

fn main() {
    let lib = libtorch_lib();
    // torch-sys reports <torch>/lib; the headers sit beside it.
    let include = lib
        .parent()
        .expect("libtorch lib folder has a parent")
        .join("include");
    println!("cargo:rerun-if-changed=csrc/shim.cpp");
    println!("cargo:rerun-if-changed=csrc/ops.cpp");
    println!("cargo:rerun-if-changed=../torch_link.rs");
    cc::Build::new()
        .cpp(true)
        .file("csrc/shim.cpp")
        .file("csrc/ops.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .warnings(false)
        .compile("amun_shim");
    emit_torch_link_args(&lib);
}
