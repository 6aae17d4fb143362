//! The protocol tier of the library's tests: whole experiments, resumed
//! and checked step by step, and AMUN's whole run on a memorising model. `cargo test -p amun --test protocol`.
#[path = "../common/mod.rs"]
mod common;

mod amun_run;
mod experiment;
mod exported;
