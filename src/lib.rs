//! berth: a Kubernetes CRI server. See ARCHITECTURE.md for the map.

// House rules, checked: every unsafe block says why it is sound, and nothing
// outside tests unwraps (input, files and processes fail; they never panic).
#![deny(clippy::undocumented_unsafe_blocks, clippy::unwrap_used, clippy::expect_used)]

pub mod allocator;
pub mod berth_api;
pub mod cli;
pub mod client;
pub mod cmd;
pub mod config;
pub mod container;
pub mod cri;
pub mod daemon;
pub mod error;
pub mod files;
pub mod handoff;
pub mod idmap;
pub mod ids;
pub mod images;
pub mod in_root;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod nri;
pub mod procfs;
pub mod remote_command;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod stats;
pub mod store;
pub mod streaming;
pub mod time;
