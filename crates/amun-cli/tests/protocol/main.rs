//! The protocol tier of the binary's tests: PyTorch import and export,
//! tuning and calibration, reliability under faults, and the executors
//! (local workers and a real Slurm cluster). `cargo test -p amun-cli --test
//! protocol`.
#[path = "../common/mod.rs"]
mod common;

mod calibration;
mod exported;
mod import;
mod registry;
mod reliability;
mod scale_out;
mod tuning;
