//! The runtime commands the monitor runs, synchronously: `create`, and the
//! `delete --force` that cleans up after one that failed, hung or came too late.
//! Each is bounded: a `create` that hangs must not hold the monitor (and berth's
//! CreateContainer) forever, and what it left behind goes before the monitor answers.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signalfd::SignalFd;
use std::os::fd::AsFd;

use super::OciCli;
use crate::runtime::error::RuntimeError;
use crate::runtime::oci::CreateIo;

/// The longest one wait lasts without a SIGCHLD to end it: a caller whose
/// SIGCHLD does not reach `sigchld` (or that has none) still sees the exit.
const WAKE_AT_LEAST_EVERY: Duration = Duration::from_millis(100);

impl OciCli {
    /// `create` with the given stdio, bounded by the handler's timeout; past it the
    /// runtime is killed and what it made deleted. The init's PID, read from
    /// `io.pid_file` (required). `runtime_stderr` reads what the runtime wrote to the
    /// stderr it was given, for the error of a failed create.
    pub(super) fn create_blocking(
        &self,
        id: &str,
        bundle: &Path,
        io: CreateIo,
        sigchld: Option<&SignalFd>,
        runtime_stderr: &dyn Fn() -> Vec<u8>,
    ) -> Result<i32, RuntimeError> {
        let call = self.call("create", id);
        let pid_file = io.pid_file.clone().ok_or_else(|| {
            RuntimeError::io(&call, "finding its pid file", std::io::Error::other("no pid file was given"))
        })?;
        let _ = std::fs::remove_file(&pid_file);
        let log = self.scratch_file(".berth-log-", b"").map_err(|e| RuntimeError::io(&call, "creating its log file", e))?;
        let mut command = std::process::Command::new(self.program());
        command.args(self.create_args(&log, id, bundle, Some(&pid_file), io.console_socket.as_deref()));
        let stdio = |fd: Option<std::os::fd::OwnedFd>| fd.map_or_else(Stdio::null, Stdio::from);
        command.stdin(stdio(io.stdin)).stdout(stdio(io.stdout)).stderr(stdio(io.stderr));
        let spawned = command.spawn();
        // Our copies of the container's ends must go, or its output would never end.
        drop(command);
        let mut child =
            spawned.map_err(|source| RuntimeError::Spawn { call: call.clone(), binary: self.program(), source })?;
        let Some(status) = wait_bounded(&mut child, sigchld, self.timeout).map_err(|e| RuntimeError::io(&call, "waiting for it", e))?
        else {
            self.force_delete_blocking(id, sigchld);
            return Err(RuntimeError::TimedOut { call, timeout: self.timeout });
        };
        if !status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(super::messages::failed(call, status, &log, &runtime_stderr()));
        }
        let text = std::fs::read_to_string(&pid_file).map_err(|e| RuntimeError::io(&call, "reading its pid file", e))?;
        let _ = std::fs::remove_file(&pid_file);
        text.trim().parse::<i32>().map_err(|e| {
            RuntimeError::io(&call, "reading its pid file", std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })
    }

    /// `delete --force`: kills the container's processes and removes the runtime's
    /// state of it, whatever state a failed or killed `create` left. Best effort and
    /// bounded: berth's undo deletes it again, and a container the runtime never
    /// recorded is already gone.
    pub(super) fn force_delete_blocking(&self, id: &str, sigchld: Option<&SignalFd>) {
        let Ok(log) = self.scratch_file(".berth-log-", b"") else { return };
        let mut command = std::process::Command::new(self.program());
        command.args(self.delete_args(&log, id, true)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        if let Ok(mut child) = command.spawn() {
            let _ = wait_bounded(&mut child, sigchld, self.timeout);
        }
    }
}

/// Waits for `child` at most `timeout`, woken by the SIGCHLDs `sigchld` collects
/// (and at least every [`WAKE_AT_LEAST_EVERY`]). Past the bound the child is
/// killed and reaped, and `None` returned.
///
/// Only `child` is reaped: the container's init, once orphaned to the monitor,
/// stays a zombie for the monitor's first reap, which the drained signal would
/// otherwise have announced.
fn wait_bounded(child: &mut Child, sigchld: Option<&SignalFd>, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        let nap = PollTimeout::try_from(left.min(WAKE_AT_LEAST_EVERY)).unwrap_or(PollTimeout::ZERO);
        match sigchld {
            Some(signals) => {
                let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
                match nix::poll::poll(&mut fds, nap) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                while let Ok(Some(_)) = signals.read_signal() {}
            }
            None => std::thread::sleep(left.min(WAKE_AT_LEAST_EVERY)),
        }
    }
}
