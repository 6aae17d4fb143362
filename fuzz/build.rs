//! Links the fuzz targets so they start without LD_LIBRARY_PATH: the rpath
//! to the venv's libtorch, as for the `amun` binary (a library's link
//! arguments do not reach the binaries that depend on it).
include!("../crates/torch_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../crates/torch_link.rs");
    emit_torch_link_args(&libtorch_lib());
}
