//! `berth`'s client commands: crictl's, speaking CRI to any endpoint,
//! berth's or another runtime's. Each prints a table, or the CRI message as
//! JSON or YAML (`-o`); an error is one line, and the exit code 1.
//!
//! One file per command or pair of commands; beneath them `connect` (the
//! endpoint and its calls), `resolve` (ID prefixes), `output` (tables,
//! JSON, YAML), `stream` + `terminal` (interactive exec and attach),
//! `cri_log` (the log format). They need no configuration file: a client
//! runs on nodes without one.

mod connect;
mod containers;
mod cri_log;
mod error;
mod exec;
mod images;
mod info;
mod logs;
mod output;
mod pods;
mod pull;
mod resolve;
mod stats;
mod stream;
mod terminal;

use clap::Subcommand;

pub use error::ClientError;

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Pull an image, with a progress bar per layer
    Pull(pull::PullArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Remove images
    Rmi(images::RmiArgs),
    /// List pod sandboxes
    Pods(pods::PodsArgs),
    /// List containers (the running ones, or all with -a)
    Ps(containers::PsArgs),
    /// Show containers' status
    Inspect(containers::InspectArgs),
    /// Show pod sandboxes' status
    Inspectp(pods::InspectpArgs),
    /// Print a container's log
    Logs(logs::LogsArgs),
    /// Run a command in a running container
    Exec(exec::ExecArgs),
    /// Attach to a running container's streams
    Attach(exec::AttachArgs),
    /// Show containers' resource usage
    Stats(stats::StatsArgs),
    /// Show the runtime's status and details
    Info(info::InfoArgs),
    /// Show the runtime's name and version; exits 0 only when it answers
    Version(info::VersionArgs),
}

/// Runs `command`; its exit code when it succeeds (a command's in the
/// container, for exec and attach).
pub async fn run(command: ClientCommand) -> Result<u8, ClientError> {
    match command {
        ClientCommand::Pull(args) => pull::pull(args).await.map(|()| 0),
        ClientCommand::Images(args) => images::images(args).await.map(|()| 0),
        ClientCommand::Rmi(args) => images::rmi(args).await.map(|()| 0),
        ClientCommand::Pods(args) => pods::pods(args).await.map(|()| 0),
        ClientCommand::Ps(args) => containers::ps(args).await.map(|()| 0),
        ClientCommand::Inspect(args) => containers::inspect(args).await.map(|()| 0),
        ClientCommand::Inspectp(args) => pods::inspectp(args).await.map(|()| 0),
        ClientCommand::Logs(args) => logs::logs(args).await.map(|()| 0),
        ClientCommand::Exec(args) => exec::exec(args).await,
        ClientCommand::Attach(args) => exec::attach(args).await,
        ClientCommand::Stats(args) => stats::stats(args).await.map(|()| 0),
        ClientCommand::Info(args) => info::info(args).await.map(|()| 0),
        ClientCommand::Version(args) => info::version(args).await.map(|()| 0),
    }
}
