//! [`OciRuntime`] through the command line of a runc-compatible runtime (runc, crun,
//! runsc, kata-runtime): one process per call, each with its own JSON log file.

mod args;
mod blocking;
mod exec;
mod invoke;
mod messages;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use oci_spec::runtime::{LinuxResources, Process};

pub use args::ExecArgs;
use exec::ExecHandle;
pub(in crate::runtime) use invoke::scratch_file_in;

/// The handle of a process started by a command that keeps `runc exec`'s
/// contract (attached; `--pid-file`; a JSON `--log`; the process's exit code).
pub(in crate::runtime) fn exec_handle(
    call: Call,
    child: tokio::process::Child,
    log: tempfile::TempPath,
    pid_file: tempfile::TempPath,
    process_file: tempfile::TempPath,
) -> Box<dyn ExecProcess> {
    Box::new(ExecHandle::new(call, child, log, pid_file, process_file))
}

use super::RuntimeHandler;
use super::error::{Call, RuntimeError};
use super::oci::{ContainerState, CreateIo, ExecIo, ExecProcess, OciRuntime, RuntimeFeatures};
use crate::config::resolve_binary;

/// How long one runtime command may take before it is killed. `create` mounts and
/// sets up cgroups and namespaces; the others should take milliseconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A runc-compatible runtime driven by its command line, as a handler configures it.
#[derive(Debug, Clone)]
pub struct OciCli {
    name: String,
    binary: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
    timeout: Duration,
}

impl OciCli {
    pub fn new(handler: &RuntimeHandler) -> Self {
        OciCli {
            name: handler.name.clone(),
            binary: handler.binary.clone(),
            root: handler.root.clone(),
            systemd_cgroup: handler.systemd_cgroup,
            timeout: handler.timeout,
        }
    }

    /// The bound on each of its commands.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The runtime's state directory (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The binary to run: looked up on `PATH` when configured as a bare name, as it
    /// is at each call (so a runtime installed after start-up is found).
    pub fn program(&self) -> PathBuf {
        resolve_binary(&self.binary).unwrap_or_else(|| self.binary.clone())
    }

    /// The context an error of `command` on container `id` names.
    pub fn call(&self, command: &'static str, id: &str) -> Call {
        Call::new(&self.name, command, id)
    }

    /// Runs `command` on `id` for its effect alone.
    async fn effect(
        &self,
        command: &'static str,
        id: &str,
        args: impl FnOnce(&Path) -> Vec<OsString>,
    ) -> Result<(), RuntimeError> {
        self.output(&self.call(command, id), args, None).await.map(drop)
    }
}

/// How long `<runtime> --version` may take before the runtime counts as broken.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl OciRuntime for OciCli {
    /// `<binary> --version`: the first line of what it prints.
    async fn health(&self) -> Result<String, RuntimeError> {
        let binary = resolve_binary(&self.binary).ok_or_else(|| RuntimeError::Spawn {
            call: self.call("--version", ""),
            binary: self.binary.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found or not executable"),
        })?;
        // Named by its binary: which file is broken is what an operator needs.
        let call = Call::new(&binary.display().to_string(), "--version", "");
        let run = tokio::process::Command::new(&binary).arg("--version").kill_on_drop(true).output();
        let output = tokio::time::timeout(VERSION_PROBE_TIMEOUT, run)
            .await
            .map_err(|_| RuntimeError::TimedOut { call: call.clone(), timeout: VERSION_PROBE_TIMEOUT })?
            .map_err(|source| RuntimeError::Spawn { call: call.clone(), binary: binary.clone(), source })?;
        if !output.status.success() {
            return Err(messages::failed(call, output.status, "", &output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().trim().to_string())
    }

    /// What berth does for the runtime, which then only binds or joins (runc 1.1
    /// can make neither): recursive read-only binds, staged read-only all the way
    /// down with mount_setattr(2) (Linux 5.12); user namespaces, made by berth with
    /// the ID-mapped mounts (`idmap.rs`).
    fn features(&self) -> RuntimeFeatures {
        RuntimeFeatures {
            recursive_read_only_mounts: crate::idmap::kernel_has_mount_setattr(),
            user_namespaces: crate::idmap::supported(),
        }
    }

    fn create_blocking(
        &self,
        id: &str,
        bundle: &Path,
        io: CreateIo,
        sigchld: Option<&SignalFd>,
        runtime_stderr: &dyn Fn() -> Vec<u8>,
    ) -> Result<i32, RuntimeError> {
        OciCli::create_blocking(self, id, bundle, io, sigchld, runtime_stderr)
    }

    fn force_delete_blocking(&self, id: &str, sigchld: Option<&SignalFd>) {
        OciCli::force_delete_blocking(self, id, sigchld)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.effect("start", id, |log| self.start_args(log, id)).await
    }

    async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let call = self.call("state", id);
        let stdout = self.output(&call, |log| self.state_args(log, id), None).await?;
        serde_json::from_slice(&stdout).map_err(|e| RuntimeError::json(&call, "reading its state", e))
    }

    async fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        self.effect("kill", id, |log| self.kill_args(log, id, signal, all)).await
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        match self.effect("delete", id, |log| self.delete_args(log, id, force)).await {
            // Already gone is what delete wants: a retry after a lost answer succeeds.
            Err(e) if e.is_not_found() => Ok(()),
            result => result,
        }
    }

    async fn exec(&self, id: &str, process: &Process, io: ExecIo) -> Result<Box<dyn ExecProcess>, RuntimeError> {
        let call = self.call("exec", id);
        let spec = serde_json::to_vec(process).map_err(|e| RuntimeError::json(&call, "encoding the process", e))?;
        let scratch = |prefix, contents| {
            self.scratch_file(prefix, contents).map_err(|e| RuntimeError::io(&call, "creating its files", e))
        };
        let process_file = scratch(".berth-process-", &spec)?;
        let pid_file = scratch(".berth-pid-", b"")?;
        let log = self.log_file(&call)?;
        let exec = ExecArgs {
            process_file: &process_file,
            pid_file: Some(&pid_file),
            console_socket: io.console_socket.as_deref(),
            detach: false,
        };
        let mut command = self.command(self.exec_args(&log, id, exec));
        command.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr);
        if io.controlling_terminal {
            // SAFETY: between fork and exec the closure calls only setsid(2) and
            // ioctl(2), both async-signal-safe, and allocates nothing.
            unsafe { command.pre_exec(take_stdin_as_controlling_terminal) };
        }
        let child = self.spawn(&call, command)?;
        Ok(Box::new(ExecHandle::new(call, child, log, pid_file, process_file)))
    }

    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        let call = self.call("update", id);
        let json = serde_json::to_vec(resources).map_err(|e| RuntimeError::json(&call, "encoding the resources", e))?;
        self.output(&call, |log| self.update_args(log, id), Some(json)).await.map(drop)
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.effect("pause", id, |log| self.pause_args(log, id)).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.effect("resume", id, |log| self.resume_args(log, id)).await
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let call = self.call("list", "");
        let stdout = self.output(&call, |log| self.list_args(log), None).await?;
        // runc prints `null`, not `[]`, for an empty root.
        let states: Option<Vec<ContainerState>> =
            serde_json::from_slice(&stdout).map_err(|e| RuntimeError::json(&call, "reading its list", e))?;
        Ok(states.unwrap_or_default())
    }
}

/// A new session whose controlling terminal is stdin.
pub(in crate::runtime) fn take_stdin_as_controlling_terminal() -> std::io::Result<()> {
    nix::unistd::setsid().map_err(std::io::Error::from)?;
    // SAFETY: TIOCSCTTY takes an int argument and touches no memory of ours.
    if unsafe { nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::RuntimeKind;
    use crate::error::{Classify, ErrorKind};

    fn cli(binary: &str, root: &Path) -> OciCli {
        OciCli::new(&RuntimeHandler {
            name: "fake".into(),
            kind: RuntimeKind::Oci,
            binary: binary.into(),
            root: root.to_path_buf(),
            systemd_cgroup: false,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// A stand-in runtime: a shell script that logs like runc and exits 1.
    fn failing_runtime(dir: &Path, message: &str) -> PathBuf {
        let script = dir.join("fake-runtime");
        let body = format!(
            "#!/bin/sh\nwhile [ \"$1\" != --log ]; do shift; done\necho '{{\"level\":\"error\",\"msg\":\"{message}\"}}' >> \"$2\"\nexit 1\n"
        );
        std::fs::write(&script, body).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[tokio::test]
    async fn the_logged_error_is_reported_with_its_kind_and_no_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let cli = cli(failing_runtime(dir.path(), "container does not exist").to_str().unwrap(), &root);
        let err = cli.state("c1").await.unwrap_err();
        assert_eq!(err.to_string(), "fake state c1: container does not exist");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        cli.delete("c1", false).await.unwrap();
        assert_eq!(std::fs::metadata(&root).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "log files are removed");
    }

    #[tokio::test]
    async fn a_missing_binary_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let err = cli("/nonexistent/runc", dir.path()).start("c1").await.unwrap_err();
        assert!(matches!(err, RuntimeError::Spawn { .. }), "{err}");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
    }

    /// This process's children named `name`, zombies included (they keep their name).
    fn children_named(name: &str) -> Vec<i32> {
        let me = std::process::id().to_string();
        let entries = std::fs::read_dir("/proc").unwrap().flatten();
        entries
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = crate::procfs::stat(pid)?;
                (stat.name == name && stat.ppid.to_string() == me).then_some(pid)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_hung_runtime_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        // A script runs under its own name, which no other test uses.
        let script = dir.path().join("hung-runtime");
        // It never ends by itself, so only the deadline can end the call.
        std::fs::write(&script, "#!/bin/sh\nwhile :; do sleep 1; done\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cli = cli(script.to_str().unwrap(), dir.path()).with_timeout(Duration::from_millis(200));
        // Only a guard against a hang: the call ends at its own deadline.
        let call = tokio::time::timeout(Duration::from_secs(60), cli.pause("c1")).await;
        let err = call.expect("the call outlived its deadline").unwrap_err();
        assert!(matches!(err, RuntimeError::TimedOut { .. }), "{err}");
        assert_eq!(children_named("hung-runtime"), Vec::<i32>::new(), "killed and reaped, not even a zombie");
    }
}
