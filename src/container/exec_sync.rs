//! The `ExecSync` RPC: a command run to completion in a running container, its
//! output captured (kubelet's exec probes use it every few seconds).

use std::process::Stdio;
use std::time::Duration;

use oci_spec::runtime::{Process, Spec};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::record::ContainerRecord;
use super::{ContainerError, ContainerService};
use crate::runtime::ExecIo;

/// Output kept per stream; the rest is read and dropped, so the process never
/// blocks on a full pipe (cri-o and containerd cap it the same way).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;
/// Both streams together, in one reply: kubelet's gRPC client takes messages
/// of at most 16 MiB, so a reply carrying two full streams would fail the
/// call. The margin holds the reply's framing and exit code.
const MAX_REPLY_OUTPUT: usize = 16 * 1024 * 1024 - 64 * 1024;
/// How long output is still read after the process exited: a background child
/// that inherited the pipes would otherwise hold the call open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

impl ContainerService {
    /// The process spec of a command run in `container`: its own process's
    /// environment, user, capabilities and limits, with `cmd` and `terminal`.
    pub(super) fn exec_process(
        &self,
        container: &ContainerRecord,
        cmd: Vec<String>,
        terminal: bool,
    ) -> Result<Process, ContainerError> {
        let spec_path = self.run_dir(&container.id).join("config.json");
        let spec = Spec::load(&spec_path).map_err(|e| ContainerError::host(spec_path.display().to_string(), e))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd)).set_terminal(Some(terminal)).set_console_size(None);
        Ok(process)
    }

    /// Runs `cmd` with the container's environment, user and limits; past
    /// `timeout` seconds (0: none) the process is killed and the error is
    /// DeadlineExceeded, which kubelet counts as a failed probe.
    pub async fn exec_sync(&self, wanted: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecOutput, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::invalid("cmd", "must not be empty"));
        }
        if timeout < 0 {
            return Err(ContainerError::invalid("timeout", "must not be negative"));
        }
        let container = self.running(wanted, "commands run only in a running container")?;
        let process = self.exec_process(&container, cmd, false)?;

        let io = ExecIo { stdout: Stdio::piped(), stderr: Stdio::piped(), ..ExecIo::null() };
        let mut handle = self.runtime_for(&container)?.exec(&container.id, &process, io).await?;
        let stdout = handle.stdout().map(capture);
        let stderr = handle.stderr().map(capture);
        let exit_code = if timeout > 0 {
            handle.wait_timeout(Duration::from_secs(timeout.unsigned_abs())).await?
        } else {
            handle.wait().await?
        };
        let (stdout, stderr) = fit_in_reply(drained(stdout).await, drained(stderr).await);
        Ok(ExecOutput { stdout, stderr, exit_code })
    }
}

/// Cuts the two streams' tails so that together they fit [`MAX_REPLY_OUTPUT`]:
/// each keeps up to half, and what one leaves unused goes to the other.
fn fit_in_reply(mut stdout: Vec<u8>, mut stderr: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    if stdout.len() + stderr.len() > MAX_REPLY_OUTPUT {
        let half = MAX_REPLY_OUTPUT / 2;
        let stdout_share = stdout.len().min(MAX_REPLY_OUTPUT - stderr.len().min(half));
        stdout.truncate(stdout_share);
        stderr.truncate(MAX_REPLY_OUTPUT - stdout.len());
    }
    (stdout, stderr)
}

type Captured = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads `stream` to its end into a buffer shared with the caller, who takes
/// what is there when it stops waiting.
fn capture(mut stream: impl AsyncRead + Unpin + Send + 'static) -> (Captured, tokio::task::JoinHandle<()>) {
    let captured = Captured::default();
    let sink = captured.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut kept = sink.lock().unwrap_or_else(|p| p.into_inner());
                    let room = MAX_OUTPUT.saturating_sub(kept.len());
                    kept.extend_from_slice(&buffer[..n.min(room)]);
                }
            }
        }
    });
    (captured, reader)
}

/// What a stream's reader captured, once it reached the end or `DRAIN_AFTER_EXIT`
/// passed (a background process still holding the pipe is not waited for).
async fn drained(capture: Option<(Captured, tokio::task::JoinHandle<()>)>) -> Vec<u8> {
    let Some((captured, mut reader)) = capture else { return Vec::new() };
    if tokio::time::timeout(DRAIN_AFTER_EXIT, &mut reader).await.is_err() {
        reader.abort();
    }
    std::mem::take(&mut *captured.lock().unwrap_or_else(|p| p.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_streams_fit_one_reply() {
        let fitted = |out: usize, err: usize| {
            let (stdout, stderr) = fit_in_reply(vec![b'o'; out], vec![b'e'; err]);
            (stdout.len(), stderr.len())
        };
        let half = MAX_REPLY_OUTPUT / 2;
        assert_eq!(fitted(10, 20), (10, 20));
        assert_eq!(fitted(MAX_OUTPUT, MAX_OUTPUT), (half, MAX_REPLY_OUTPUT - half));
        assert_eq!(fitted(MAX_OUTPUT, 100), (MAX_REPLY_OUTPUT - 100, 100));
        assert_eq!(fitted(100, MAX_OUTPUT), (100, MAX_REPLY_OUTPUT - 100));
        assert_eq!(fitted(MAX_OUTPUT, 0), (MAX_REPLY_OUTPUT, 0));
    }
}
