//! Links `amun` so it starts without LD_LIBRARY_PATH and sees CUDA.
include!("../torch_link.rs");

fn main() {
    println!("cargo:rerun-if-changed=../torch_link.rs");
    emit_torch_link_args(&libtorch_lib());
}
