//! A process started in a container by `<runtime> exec`, attached: the runtime stays
//! its parent, waits for it and exits with its exit code.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tempfile::TempPath;
use tokio::process::Child;

use super::invoke::read_log;
use super::messages::last_logged_error;
use crate::runtime::error::{Call, RuntimeError};
use crate::runtime::oci::{ExecInput, ExecOutput, ExecProcess};

/// How long the runtime gets to notice its killed process and exit before it is
/// killed too.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// An exec'd process. Its streams given as `Stdio::piped()` are taken with
/// [`ExecHandle::stdout`] and friends, and must be read while waiting: a full pipe
/// stops the process. Dropping the handle before the process ends kills it.
#[derive(Debug)]
pub(super) struct ExecHandle {
    call: Call,
    /// `<runtime> exec`, not the process itself: that one lives in the container.
    child: Child,
    log: TempPath,
    /// Where the runtime writes the process's host PID, for a kill.
    pid_file: TempPath,
    /// The process spec the runtime read; kept until the end, removed on drop.
    _process_file: TempPath,
}

impl ExecHandle {
    pub(super) fn new(call: Call, child: Child, log: TempPath, pid_file: TempPath, process_file: TempPath) -> Self {
        ExecHandle { call, child, log, pid_file, _process_file: process_file }
    }

    /// Sends `signal` to the process; false when it could not be (not started yet, or
    /// already reaped). Only while the runtime still runs: the runtime reaps the process
    /// and exits, so once it is gone the PID may be someone else's.
    fn signal_process(&mut self, signal: Signal) -> bool {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return false;
        }
        let Some(pid) = self.pid() else { return false };
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(call = %self.call, %pid, error = %e, "signalling an exec'd process");
                false
            }
        }
    }

    /// runc exits with the process's code, and with 255 (or 1) when it could not start
    /// it: then, and only then, its log holds an error.
    async fn exit_code(&self, status: ExitStatus) -> Result<i32, RuntimeError> {
        let log = read_log(&self.log).await;
        if let Some(message) = last_logged_error(&log) {
            return Err(super::messages::from_message(self.call.clone(), message));
        }
        Ok(status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(-1))
    }
}

#[async_trait::async_trait]
impl ExecProcess for ExecHandle {
    fn stdin(&mut self) -> Option<ExecInput> {
        self.child.stdin.take().map(|pipe| Box::new(pipe) as ExecInput)
    }

    fn stdout(&mut self) -> Option<ExecOutput> {
        self.child.stdout.take().map(|pipe| Box::new(pipe) as ExecOutput)
    }

    fn stderr(&mut self) -> Option<ExecOutput> {
        self.child.stderr.take().map(|pipe| Box::new(pipe) as ExecOutput)
    }

    /// From the PID file the runtime writes once it has started the process.
    fn pid(&self) -> Option<Pid> {
        let text = std::fs::read_to_string(&self.pid_file).ok()?;
        text.trim().parse::<i32>().ok().filter(|pid| *pid > 0).map(Pid::from_raw)
    }

    /// Waits for the process and returns its exit code (128 + N for signal N). An
    /// error when the runtime could not start it at all.
    async fn wait(&mut self) -> Result<i32, RuntimeError> {
        let status = self.child.wait().await.map_err(|e| RuntimeError::io(&self.call, "waiting for it", e))?;
        self.exit_code(status).await
    }

    /// As [`ExecHandle::wait`], but past `timeout` the process is killed and the error
    /// is DeadlineExceeded.
    async fn wait_timeout(&mut self, timeout: Duration) -> Result<i32, RuntimeError> {
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(code) => code,
            Err(_elapsed) => {
                self.kill().await;
                Err(RuntimeError::ExecTimedOut { call: self.call.clone(), timeout })
            }
        }
    }

    /// Kills the process and every process it started, then reaps the runtime.
    /// SIGKILL to the runtime alone would orphan the process in the container,
    /// so the process goes first; its descendants are listed before it dies,
    /// since they are re-parented (out of reach of a walk) once it has.
    async fn kill(&mut self) {
        let descendants = self.pid().map(descendants_of).unwrap_or_default();
        let signalled = self.signal_process(Signal::SIGKILL);
        for pid in descendants {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
        if !signalled || tokio::time::timeout(KILL_GRACE, self.child.wait()).await.is_err() {
            if let Err(e) = self.child.start_kill() {
                tracing::debug!(call = %self.call, error = %e, "killing an exec'ing runtime");
            }
        }
        let _ = self.child.wait().await;
    }
}

/// The processes below `root`, from each process's parent in `/proc/<pid>/stat`.
fn descendants_of(root: Pid) -> Vec<Pid> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else { continue };
        if let Some(stat) = crate::procfs::stat(pid) {
            parents.push((pid, stat.ppid));
        }
    }
    let mut found = vec![root.as_raw()];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.into_iter().skip(1).map(Pid::from_raw).collect()
}

impl Drop for ExecHandle {
    /// A handle dropped mid-run (a cancelled ExecSync) must not leave its process
    /// behind; `kill_on_drop` only reaches the runtime.
    fn drop(&mut self) {
        self.signal_process(Signal::SIGKILL);
    }
}
