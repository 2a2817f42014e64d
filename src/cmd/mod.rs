//! The subcommands of the `berth` binary.

pub mod serve;
