//! `berth-monitor monitor ...`: the per-container monitor as a binary of its
//! own, which berth runs when it finds it beside itself (`monitor::spawn`).
//! The same code as `berth monitor`, with the same command line, without the
//! daemon, the client and their dependencies: a monitor lives as long as its
//! container, one per container, so its size is paid many times over.
#![deny(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(name = "berth-monitor", version, about = "berth's per-container monitor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Creates the container and watches it (started by berth; see `monitor::spawn`).
    Monitor {
        #[command(flatten)]
        args: berth::monitor::MonitorArgs,
    },
    /// The internal runtime's createContainer hook, run as `/proc/self/exe` by
    /// the container's creation, which happens in the monitor.
    #[command(hide = true, name = "internal-propagation")]
    InternalPropagation {
        #[command(flatten)]
        args: berth::runtime::internal::PropagationHookArgs,
    },
}

fn main() -> ExitCode {
    berth::allocator::tune();
    match Cli::parse().command {
        Command::Monitor { args } => match berth::monitor::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Seen only when run by hand: berth gives the monitor /dev/null.
                eprintln!("berth-monitor: {e}");
                ExitCode::FAILURE
            }
        },
        Command::InternalPropagation { args } => ExitCode::from(berth::runtime::internal::run_propagation_hook(&args)),
    }
}
