//! nomaly's shared core: what every entry point (the `nomaly` command, the local
//! server, the Lambda functions) does the same way: the domain, the ports its storage
//! and messaging sit behind, and reading tables.

pub mod asyncapi;
pub mod atomic_file;
pub mod bounded;
pub mod claim_check;
pub mod constant_time;
pub mod domain;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod ids;
pub mod limits;
pub mod local_files;
pub mod log_targets;
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod service;
pub mod table;
pub mod time;
pub mod webhook;
