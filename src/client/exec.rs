//! `berth exec` and `berth attach`. Without `-i` or `-t`, exec is one
//! ExecSync call; otherwise Exec or Attach gives a streaming URL, and
//! `stream.rs` relays the terminal or stdin to it.

use clap::Args;

use crate::cri::v1::{AttachRequest, ExecRequest, ExecSyncRequest};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output;
use super::resolve;
use super::stream::{self, Wanted};
use super::terminal;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Send stdin to the command
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a terminal (stdin must be one)
    #[arg(short, long)]
    pub tty: bool,
    /// Container by ID or unique prefix
    pub container: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Send stdin to the container
    #[arg(short, long)]
    pub interactive: bool,
    /// The container has a terminal: relay this one to it (stdin must be one)
    #[arg(short, long)]
    pub tty: bool,
    /// Container by ID or unique prefix
    pub container: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// The command's exit code.
pub async fn exec(args: ExecArgs) -> Result<u8, ClientError> {
    if args.tty {
        terminal::require()?;
    }
    let cri = Cri::connect(&args.connection).await?;
    let container_id = resolve::container(&cri, &args.container).await?;
    if !args.interactive && !args.tty {
        // As long as the command runs: its time is the caller's to choose.
        let request = ExecSyncRequest { container_id, cmd: args.command, timeout: 0 };
        let answer = cri.unbounded("ExecSync", cri.runtime().exec_sync(request).await)?;
        output::emit_bytes(&answer.stdout).await?;
        output::emit_stderr(&answer.stderr).await?;
        return Ok(u8::try_from(answer.exit_code).unwrap_or(u8::MAX));
    }
    let request = ExecRequest {
        container_id,
        cmd: args.command,
        tty: args.tty,
        stdin: args.interactive,
        stdout: true,
        // A terminal has one output stream.
        stderr: !args.tty,
    };
    let url = cri.call("Exec", cri.runtime().exec(request)).await?.url;
    stream::run(&url, Wanted { stdin: args.interactive, tty: args.tty }, cri.timeout).await
}

pub async fn attach(args: AttachArgs) -> Result<u8, ClientError> {
    if args.tty {
        terminal::require()?;
    }
    let cri = Cri::connect(&args.connection).await?;
    let container_id = resolve::container(&cri, &args.container).await?;
    let request =
        AttachRequest { container_id, stdin: args.interactive, tty: args.tty, stdout: true, stderr: !args.tty };
    let url = cri.call("Attach", cri.runtime().attach(request)).await?.url;
    stream::run(&url, Wanted { stdin: args.interactive, tty: args.tty }, cri.timeout).await
}
