//! berth: a Kubernetes CRI server. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod container;
pub mod daemon;
pub mod error;
pub mod files;
pub mod handoff;
pub mod ids;
pub mod images;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod network;
pub mod procfs;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod stats;
pub mod store;
pub mod streaming;
pub mod time;
