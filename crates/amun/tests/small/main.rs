//! The small-data tier of the library's tests: each stage on real MNIST-5k
//! and CIFAR-10 slices (fetched into the data cache on first use), a few
//! minutes on 2 cores. `cargo test -p amun --test small`.
#[path = "../common/mod.rs"]
mod common;

mod attack;
mod audit;
mod baselines;
mod data;
mod train;
mod unlearn;
