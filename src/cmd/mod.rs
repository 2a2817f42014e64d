//! The subcommands of the `berth` binary.

pub mod pause;
pub mod serve;
