//! What berth asks of an OCI runtime, whatever drives it (today the command line of a
//! runc-compatible binary, [`super::OciCli`]).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use oci_spec::runtime::{LinuxResources, Process, Spec};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use super::error::RuntimeError;

/// The lifecycle of one container in an OCI runtime. Container IDs are the runtime's:
/// unique per runtime root.
#[async_trait::async_trait]
pub trait OciRuntime: Send + Sync {
    /// Fits `spec` to what this runtime reads, before berth writes it to the
    /// bundle (`bundle`, its rootfs mounted): the runc form berth builds serves
    /// a runc-compatible binary as it is. Blocking: reads the rootfs.
    fn prepare_spec(&self, _spec: &mut Spec, _bundle: &Path) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// Creates the container from `bundle` (its `config.json` and rootfs): its process
    /// waits, in all its namespaces and cgroups, for [`OciRuntime::start`]. Returns
    /// the init's host PID.
    ///
    /// Called from the per-container monitor, synchronously and while it has no
    /// other thread (a runtime library may fork there); the monitor is the child
    /// subreaper of whatever the runtime forks. `sigchld`, the monitor's signalfd
    /// for SIGCHLD, wakes its waits. Bounded by the handler's timeout: past it what
    /// the create made is deleted, and the error is [`RuntimeError::TimedOut`].
    /// `runtime_stderr` reads what the runtime wrote to the stderr it was given,
    /// for the error of a failed create.
    fn create_blocking(
        &self,
        id: &str,
        bundle: &Path,
        io: CreateIo,
        sigchld: Option<&SignalFd>,
        runtime_stderr: &dyn Fn() -> Vec<u8>,
    ) -> Result<i32, RuntimeError>;
    /// From the monitor, as `create_blocking`: kills and deletes the container
    /// whatever its state. Best effort and bounded.
    fn force_delete_blocking(&self, id: &str, sigchld: Option<&SignalFd>);
    /// Runs the container's process (`process.args` of its spec).
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// A NotFound error when the runtime does not know `id`.
    async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError>;
    /// Signals the container's init process, or with `all` every process in it.
    async fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError>;
    /// Deletes a stopped container (any container with `force`, killing it). Deleting
    /// an ID the runtime does not know succeeds: a retried delete is not an error.
    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// Starts `process` in the running container; the handle waits for its exit code.
    async fn exec(&self, id: &str, process: &Process, io: ExecIo) -> Result<Box<dyn ExecProcess>, RuntimeError>;
    /// Changes the container's cgroup limits to `resources`.
    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError>;
    /// Freezes every process of the container.
    async fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    async fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    /// Every container the runtime knows under its root.
    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError>;
    /// Whether the runtime can run containers at all; what it says of itself
    /// (its version) when it can.
    async fn health(&self) -> Result<String, RuntimeError>;
    /// What the runtime can do beyond the OCI basics, as the CRI reports it per handler.
    fn features(&self) -> RuntimeFeatures;
}

/// A handler's capabilities the CRI lets kubelet ask about (`RuntimeHandlerFeatures`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// Read-only mounts that are read-only all the way down (`rro`).
    pub recursive_read_only_mounts: bool,
    /// Pods in a user namespace of their own (uid/gid mappings).
    pub user_namespaces: bool,
}

/// The writing end of an exec'd process's stdin.
pub type ExecInput = Box<dyn AsyncWrite + Send + Unpin>;
/// The reading end of an exec'd process's stdout or stderr.
pub type ExecOutput = Box<dyn AsyncRead + Send + Unpin>;

/// A process [`OciRuntime::exec`] started, whatever runs it. Dropping it kills the
/// process: a caller that goes away (a cancelled ExecSync, a client gone) must
/// not leave it running in the container.
#[async_trait::async_trait]
pub trait ExecProcess: Send {
    /// The ends of the streams [`ExecIo`] asked to be piped, each taken once.
    fn stdin(&mut self) -> Option<ExecInput>;
    fn stdout(&mut self) -> Option<ExecOutput>;
    fn stderr(&mut self) -> Option<ExecOutput>;
    /// The process's PID on the host, once it has started.
    fn pid(&self) -> Option<nix::unistd::Pid>;
    /// Waits for the process; its exit code (128 + N for signal N). An error when
    /// the runtime could not start it at all.
    async fn wait(&mut self) -> Result<i32, RuntimeError>;
    /// As [`ExecProcess::wait`], but past `timeout` the process is killed and the
    /// error is [`RuntimeError::ExecTimedOut`].
    async fn wait_timeout(&mut self, timeout: Duration) -> Result<i32, RuntimeError>;
    /// Kills the process and every process it started.
    async fn kill(&mut self);
}

/// What `state` and `list` say of a container: the OCI runtime spec's state, plus
/// `paused`, which runc reports though the spec has no such status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: ContainerStatus,
    /// The init process, as the host sees it; 0 once it has stopped.
    #[serde(default)]
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<PathBuf>,
    /// RFC 3339, as the runtime wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    /// A status this version of berth does not know; treat it as broken.
    #[serde(other)]
    Unknown,
}

/// The container process's stdio and the files `create` is asked to write.
///
/// Without a terminal the process inherits the three streams as given (files or
/// pipes; `None` is `/dev/null`), so they must not be pipes berth reads to the end
/// while the container may still run.
#[derive(Debug)]
pub struct CreateIo {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// For `process.terminal`: the AF_UNIX socket the runtime sends the pty master to.
    pub console_socket: Option<PathBuf>,
    /// Where the runtime writes the init process's PID once created.
    pub pid_file: Option<PathBuf>,
}

impl CreateIo {
    /// All three streams on `/dev/null`, no console, no PID file.
    pub fn null() -> Self {
        CreateIo { stdin: None, stdout: None, stderr: None, console_socket: None, pid_file: None }
    }
}

/// An exec'd process's stdio: as for [`CreateIo`], and `Stdio::piped()` works too, its
/// ends being taken from the [`ExecProcess`].
#[derive(Debug)]
pub struct ExecIo {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    /// For `process.terminal`: the AF_UNIX socket the runtime sends the pty master to.
    pub console_socket: Option<PathBuf>,
    /// Start the runtime in a session of its own whose controlling terminal is its
    /// stdin (a pty slave): an attached runtime with `process.terminal` then relays
    /// that terminal, and the kernel tells it of resizes with SIGWINCH.
    pub controlling_terminal: bool,
}

impl ExecIo {
    /// All three streams on `/dev/null`, no console.
    pub fn null() -> Self {
        ExecIo {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
            console_socket: None,
            controlling_terminal: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_state_json_parses() {
        let json = r#"{"ociVersion":"1.0.2-dev","id":"x1","pid":19532,"status":"running",
            "bundle":"/tmp/b","rootfs":"/tmp/b/rootfs","created":"2024-11-23T08:01:30.5Z","owner":"root"}"#;
        let state: ContainerState = serde_json::from_str(json).unwrap();
        assert_eq!(state.id, "x1");
        assert_eq!(state.status, ContainerStatus::Running);
        assert_eq!(state.pid, 19532);
        assert_eq!(state.bundle, PathBuf::from("/tmp/b"));
        assert_eq!(state.rootfs, Some(PathBuf::from("/tmp/b/rootfs")));
    }

    #[test]
    fn unknown_statuses_do_not_fail_parsing() {
        let state: ContainerState = serde_json::from_str(r#"{"id":"x","status":"hibernating","bundle":"/b"}"#).unwrap();
        assert_eq!(state.status, ContainerStatus::Unknown);
        assert_eq!(state.pid, 0);
    }
}
