//! The infra process of a pod whose containers share one PID namespace: the
//! berth binary as `berth pause` (see `cmd/pause.rs`), started inside the
//! pod's pinned namespaces. Built in rather than a pause image: no image to
//! pull or unpack, and no OCI runtime call per pod.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::error::SandboxError;
use super::record::PodNamespaces;

/// A process is named by its PID and its start time, so a recycled PID is
/// never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfraProcess {
    pub pid: i32,
    pub start_time: u64,
}

pub fn start(pins: &PodNamespaces, run_dir: &Path) -> Result<InfraProcess, SandboxError> {
    let pid_file = run_dir.join("infra.pid");
    let mut joins: Vec<(File, CloneFlags)> = Vec::new();
    // The user namespace first: the others are its own, joined from inside it,
    // and the PID namespace `berth pause` makes is then the pod's too.
    for (pin, flag) in [
        (&pins.user, CloneFlags::CLONE_NEWUSER),
        (&pins.net, CloneFlags::CLONE_NEWNET),
        (&pins.ipc, CloneFlags::CLONE_NEWIPC),
        (&pins.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if let Some(pin) = pin {
            joins.push((File::open(pin).map_err(|e| SandboxError::host(pin.display().to_string(), e))?, flag));
        }
    }
    let fds: Vec<(i32, CloneFlags)> = joins.iter().map(|(file, flag)| (file.as_raw_fd(), *flag)).collect();
    // In a pod's own user namespace, berth's root is no one there: the exec
    // drops the capabilities setns gave, so the PID namespace is made before.
    let in_user_namespace = pins.user.is_some();
    let mut command = Command::new("/proc/self/exe");
    command.arg("pause").arg("--pid-file").arg(&pid_file);
    if in_user_namespace {
        command.arg("--pid-namespace-made");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setns and unshare are plain system calls, safe between fork and exec; the
    // fds stay open (owned by `joins`) until the child has exec'd.
    unsafe {
        command.pre_exec(move || {
            for (fd, flag) in &fds {
                setns(BorrowedFd::borrow_raw(*fd), *flag).map_err(std::io::Error::from)?;
            }
            if in_user_namespace {
                unshare(CloneFlags::CLONE_NEWPID).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
    let output = command.output().map_err(|e| SandboxError::host("start infra process", e))?;
    drop(joins);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SandboxError::host("infra process", format!("{}: {}", output.status, stderr.trim())));
    }
    let text = std::fs::read_to_string(&pid_file).map_err(|e| SandboxError::host(pid_file.display().to_string(), e))?;
    let pid: i32 = text.trim().parse().map_err(|_| SandboxError::host(pid_file.display().to_string(), "not a pid"))?;
    let start_time = start_time(pid).ok_or_else(|| SandboxError::host("infra process", "exited at once"))?;
    Ok(InfraProcess { pid, start_time })
}

fn start_time(pid: i32) -> Option<u64> {
    crate::procfs::stat(pid).map(|stat| stat.start_time)
}

pub fn is_running(infra: &InfraProcess) -> bool {
    start_time(infra.pid) == Some(infra.start_time)
}

/// Kills the infra process named by a pod's pid file, for a pod whose record
/// was never saved; only if that pid is still a `berth pause` for this pod.
pub fn stop_recorded(run_dir: &Path) {
    let pid_file = run_dir.join("infra.pid");
    let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&pid_file.display().to_string());
    if ours {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills the infra process if it is still the one berth started.
pub fn stop(infra: &InfraProcess) {
    if is_running(infra) {
        let _ = kill(Pid::from_raw(infra.pid), Signal::SIGKILL);
    }
}
