#![no_main]
//! Fuzz target `mnist_csv`: see `harness::mnist_csv` (fuzz/harness.rs).
//!
//! `read_mnist5k` lives in a private module and its public path checks the
//! file's pinned sha256 first, so its source file is compiled in here as
//! `mnist_impl`, with the two things it takes from its parent module
//! (`Split`, `split_from_bytes`) and from `crate::error` (`IoContext`)
//! provided below: the parser fuzzed is the library's own code.
#[path = "../harness.rs"]
mod harness;

#[path = "../../crates/amun/src/data/mnist.rs"]
#[allow(dead_code)]
mod mnist_impl;

use amun::data::Split;

/// Same as the library's `data::split_from_bytes`.
fn split_from_bytes(
    path: &std::path::Path,
    images: Vec<u8>,
    labels: Vec<i64>,
    chw: [i64; 3],
) -> amun::Result<Split> {
    let n = labels.len() as i64;
    let per = chw.iter().product::<i64>();
    if images.len() as i64 != n * per {
        return Err(amun::Error::format(
            path,
            format!(
                "{} label(s) but {} image byte(s); expected {} per image",
                n,
                images.len(),
                per
            ),
        ));
    }
    Ok(Split {
        images: tch::Tensor::from_slice(&images).view([n, chw[0], chw[1], chw[2]]),
        labels: tch::Tensor::from_slice(&labels),
    })
}

mod error {
    pub use amun::error::{Error, Result};
    use std::path::Path;

    /// Same as the library's `error::IoContext`.
    pub trait IoContext<T> {
        fn at(self, path: impl AsRef<Path>) -> Result<T>;
    }

    impl<T> IoContext<T> for std::result::Result<T, std::io::Error> {
        fn at(self, path: impl AsRef<Path>) -> Result<T> {
            self.map_err(|err| Error::Io {
                path: path.as_ref().to_path_buf(),
                err,
            })
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = harness::scratch();
    let _ = harness::mnist_csv(&s, data, |p| mnist_impl::read_mnist5k(p).map(|_| ()));
});
