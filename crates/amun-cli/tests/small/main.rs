//! The small-data tier of the binary's tests: every command on small real
//! data in temporary folders, bad input included. `cargo test -p amun-cli
//! --test small`.
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod data_content;
mod experiment_input;
mod hostile;
mod hostile11;
mod hostile12;
mod hostile13;
mod hostile14;
mod ignored_settings;
mod lineage;
mod outputs;
mod own_data;
mod registry;
mod registry_anchor;
mod registry_cap;
mod registry_errors;
mod registry_evidence;
mod registry_hostile11;
mod registry_paths;
mod unchecked;
