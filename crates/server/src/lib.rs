//! The `ipfs-stream` binary's parts: its command line and configuration, the wiring of the model,
//! persistence and controllers into a server, and its commands. A library so that its own fuzz
//! targets and tests reach the configuration as the binary reads it.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod impaired_link;
pub mod process;
pub mod serve;
pub mod simulate;
pub mod tls;
pub mod tokens;
pub mod wiring;
