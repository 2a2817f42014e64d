//! The subcommands of the `berth` binary.

pub mod pause;
mod reload;
pub mod serve;
