//! Running one runtime command: a fresh log file, a deadline, and on failure the
//! runtime's own words read back from the log.

use std::ffi::OsString;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Instant;

use tempfile::TempPath;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::OciCli;
use crate::runtime::error::{Call, RuntimeError};

/// What a command berth reads the output of left behind.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl OciCli {
    /// Creates the runtime root if it is missing: 0700, as it holds every container's
    /// state. Synchronous (one `mkdir` on a tmpfs) so the monitor can call it too.
    pub fn ensure_root(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root)
    }

    /// A new empty file in the root, removed when the returned path drops. Dot-named:
    /// runc and crun list only directories there, and skip dot entries.
    pub fn scratch_file(&self, prefix: &str, contents: &[u8]) -> std::io::Result<TempPath> {
        self.ensure_root()?;
        scratch_file_in(&self.root, prefix, contents)
    }

    /// A fresh file for one command's `--log`, so concurrent commands never mix their
    /// messages and the last error in it is this command's.
    pub(super) fn log_file(&self, call: &Call) -> Result<TempPath, RuntimeError> {
        self.scratch_file(".berth-log-", b"").map_err(|e| RuntimeError::io(call, "creating its log file", e))
    }

    /// Runs a command whose output is berth's to read (all but `create` and `exec`),
    /// `stdin` fed to it, and returns its stdout.
    pub(super) async fn output(
        &self,
        call: &Call,
        args: impl FnOnce(&Path) -> Vec<OsString>,
        stdin: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let log = self.log_file(call)?;
        let mut command = self.command(args(&log));
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.spawn(call, command)?;
        let finished = tokio::time::timeout(self.timeout, communicate(&mut child, stdin.unwrap_or_default()));
        let output = match finished.await {
            Ok(output) => output.map_err(|e| RuntimeError::io(call, "reading its output", e))?,
            Err(_elapsed) => return Err(self.timed_out(call, child).await),
        };
        trace(call, started, output.status);
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(failure(call, output.status, &log, &output.stderr).await)
    }

    pub(super) fn command(&self, args: Vec<OsString>) -> Command {
        let mut command = Command::new(self.program());
        // A caller giving up (a cancelled RPC) must not leave the runtime running.
        command.args(args).kill_on_drop(true);
        command
    }

    pub(super) fn spawn(&self, call: &Call, mut command: Command) -> Result<Child, RuntimeError> {
        command.spawn().map_err(|source| RuntimeError::Spawn { call: call.clone(), binary: self.program(), source })
    }

    /// Kills a command past its deadline. Only the runtime process is killed, never a
    /// process group: a container's init may share it while `create` runs.
    async fn timed_out(&self, call: &Call, mut child: Child) -> RuntimeError {
        tracing::warn!(%call, timeout = ?self.timeout, "OCI runtime command timed out; killing it");
        if let Err(e) = child.start_kill() {
            tracing::debug!(%call, error = %e, "killing a timed-out runtime command");
        }
        // Reaped here, so no zombie is left behind.
        let _ = child.wait().await;
        RuntimeError::TimedOut { call: call.clone(), timeout: self.timeout }
    }
}

fn trace(call: &Call, started: Instant, status: ExitStatus) {
    tracing::debug!(%call, elapsed = ?started.elapsed(), %status, "ran OCI runtime command");
}

/// The error for a failed command, from its log file and stderr.
pub(super) async fn failure(call: &Call, status: ExitStatus, log: &Path, stderr: &[u8]) -> RuntimeError {
    super::messages::failed(call.clone(), status, &read_log(log).await, stderr)
}

/// A log that cannot be read gives no reason, but the failure is still reported.
pub(super) async fn read_log(log: &Path) -> String {
    match tokio::fs::read(log).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::debug!(log = %log.display(), error = %e, "reading an OCI runtime log");
            String::new()
        }
    }
}

/// Feeds stdin and drains stdout and stderr at once, so that no full pipe can block
/// either side, then waits for the exit.
async fn communicate(child: &mut Child, input: Vec<u8>) -> std::io::Result<Output> {
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A runtime that fails before reading stdin breaks the pipe: its exit status
            // and log are then the error worth reporting, not EPIPE.
            if let Err(e) = stdin.write_all(&input).await {
                tracing::debug!(error = %e, "writing an OCI runtime's stdin");
            }
        }
    };
    let (_, stdout, stderr) = tokio::join!(write, read_all(child.stdout.take()), read_all(child.stderr.take()));
    let status = child.wait().await?;
    Ok(Output { status, stdout: stdout?, stderr: stderr? })
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

/// A new file in a runtime's state directory holding `contents`, removed when
/// the returned path drops. Dot-named: runtimes list only directories there, and
/// skip dot entries.
pub(in crate::runtime) fn scratch_file_in(dir: &Path, prefix: &str, contents: &[u8]) -> std::io::Result<TempPath> {
    let mut file = tempfile::Builder::new().prefix(prefix).suffix(".json").tempfile_in(dir)?;
    std::io::Write::write_all(&mut file, contents)?;
    Ok(file.into_temp_path())
}
