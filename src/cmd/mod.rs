//! The subcommands of the `berth` binary.

pub mod node_report;
pub mod pause;
mod reload;
pub mod serve;
