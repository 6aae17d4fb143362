//! Links the extension to libtorch by soname only: it runs inside a Python
//! process whose `import torch` has loaded torch's libtorch already (amun's
//! `__init__.py` imports torch first), so the process holds one libtorch,
//! PyTorch's. The rpath names the torch package beside the installed
//! module, for a process that has not imported torch yet.

fn main() {
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../torch/lib");
}
