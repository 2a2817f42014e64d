#![deny(clippy::undocumented_unsafe_blocks, clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use clap::Parser;

use berth::cli::{Cli, Command};
use berth::{cmd, config, logging, monitor};

/// Exit codes operators and unit files can tell apart.
const EXIT_FAILURE: u8 = 1;
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    berth::allocator::tune();
    let cli = Cli::parse();
    // The infra process needs no configuration, and must stay single-threaded.
    if let Command::Pause { pid_file, pid_namespace_made } = &cli.command {
        return match cmd::pause::run(pid_file, *pid_namespace_made) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth pause: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    // Nor does the container monitor, which must stay small and synchronous.
    if let Command::InternalExec { args } = &cli.command {
        return ExitCode::from(berth::runtime::internal::run_exec_helper(args));
    }
    if let Command::InternalPropagation { args } = &cli.command {
        return ExitCode::from(berth::runtime::internal::run_propagation_hook(args));
    }
    if let Command::Monitor { args } = &cli.command {
        return match monitor::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Seen only when run by hand: berth gives the monitor /dev/null.
                eprintln!("berth monitor: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    if let Command::NodeReport { args } = &cli.command {
        return match cmd::node_report::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth node-report: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        };
    }
    // The defaults need no file: the installer writes them from this.
    if let Command::Config { default: true } = &cli.command {
        print!("{}", config::reference::default_file());
        return ExitCode::SUCCESS;
    }
    // A client runs on nodes without berth's configuration, and never reads it.
    if let Command::Client(command) = cli.command {
        return run_client(command);
    }
    let config = match config::load(&cli.config_sources()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth: configuration error: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match cli.command {
        Command::Config { .. } => match toml::to_string(&config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("berth: cannot print configuration: {e}");
                ExitCode::from(EXIT_FAILURE)
            }
        },
        Command::Pause { .. }
        | Command::NodeReport { .. }
        | Command::Client(_)
        | Command::Monitor { .. }
        | Command::InternalExec { .. }
        | Command::InternalPropagation { .. } => ExitCode::SUCCESS,
        Command::Serve => {
            let levels = logging::init(&config.log);
            // The runtime is built here, not by #[tokio::main], so that later
            // subcommands (the per-container monitor) run without one.
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("berth: cannot start the async runtime: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            match runtime.block_on(cmd::serve::run(config, cli.config_sources(), levels)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "berth failed");
                    eprintln!("berth: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            }
        }
    }
}

fn run_client(command: berth::client::ClientCommand) -> ExitCode {
    // One thread is plenty for one client's calls; stdin has a thread of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(berth::client::run(command));
    // Nothing left running is worth waiting for once the command is done.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
