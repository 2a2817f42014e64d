//! Starting a monitor from berth: `berth-monitor monitor ...` (or, without that
//! binary beside berth, `berth monitor ...`) with the sync pipe as its stdout
//! and /dev/null for the rest, then one line back from it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags};

use super::{MonitorArgs, sys};
use crate::error::{Classify, ErrorKind};
use crate::runtime::{Call, Refusal, RuntimeError};

/// How long the monitor may take to answer: its bound on `create`, then on the
/// `delete` that cleans up after a create it killed, and a margin for its setup.
fn answer_timeout(args: &MonitorArgs) -> Duration {
    args.runtime_timeout.saturating_mul(2).saturating_add(Duration::from_secs(10))
}

/// A running monitor and the container it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monitor {
    pub pid: i32,
    pub container_pid: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot start the container monitor {binary:?}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime refused to create the container.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("container monitor for {id}: {message}")]
    Setup { id: String, message: String },
    #[error("container monitor for {id} gave no answer within {timeout:?}")]
    TimedOut { id: String, timeout: Duration },
}

impl Classify for MonitorError {
    fn kind(&self) -> ErrorKind {
        match self {
            MonitorError::Runtime(e) => e.kind(),
            MonitorError::Spawn { .. } | MonitorError::Setup { .. } => ErrorKind::Internal,
            MonitorError::TimedOut { .. } => ErrorKind::DeadlineExceeded,
        }
    }
}

/// Starts a monitor for `args.id`, which creates the container, and returns once
/// the container is created (or refused). Blocks the calling thread for as long
/// as `runtime create` takes: async callers run it with `spawn_blocking`.
///
/// The sync pipe goes to the monitor as its stdout, and the monitor makes its
/// own session: with nothing to run between fork and exec, std spawns it with
/// posix_spawn (a vfork), not a fork that copies the daemon's address space.
pub fn spawn(args: &MonitorArgs) -> Result<Monitor, MonitorError> {
    let binary = args.berth_binary.clone().unwrap_or_else(|| monitor_binary().to_path_buf());
    let spawn_error = |source| MonitorError::Spawn { binary: binary.clone(), source };
    let (read, write) = sys::pipe().map_err(spawn_error)?;
    let mut command = Command::new(&binary);
    command.args(args.command_line()).stdin(Stdio::null()).stdout(Stdio::from(write)).stderr(Stdio::null());
    let mut child = command.spawn().map_err(spawn_error)?;
    // The child holds the write end now; berth's copy (in `command`) must go
    // for the pipe to close when the monitor dies without answering.
    drop(command);
    // The first process forks the monitor and exits at once; reaping it leaves no zombie.
    let _ = child.wait();
    let line = read_answer(File::from(read), &args.id, answer_timeout(args))?;
    parse_answer(&line, args)
}

/// The program monitors run as: `berth-monitor` beside berth's own binary when
/// it is there and of berth's version (an upgrade that replaced one binary and
/// not the other must not pair a monitor with a berth that speaks otherwise),
/// else berth itself. Found once, on the first container's create.
fn monitor_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let own = PathBuf::from("/proc/self/exe");
        let Some(sibling) = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join(MONITOR_BINARY)))
        else {
            return own;
        };
        if !sibling.exists() {
            return own;
        }
        match version_of(&sibling, VERSION_TIMEOUT) {
            Ok(says) if says == monitor_version() => sibling,
            Ok(says) => {
                tracing::warn!(binary = %sibling.display(), says, wanted = monitor_version(), "not berth's version; monitors run as `berth monitor`");
                own
            }
            Err(e) => {
                tracing::warn!(binary = %sibling.display(), error = %e, "cannot run it; monitors run as `berth monitor`");
                own
            }
        }
    })
}

/// How long `berth-monitor --version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The first line `binary --version` prints, within `timeout`; a binary that
/// hangs is killed. Blocking.
fn version_of(binary: &Path, timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer to --version within {timeout:?}"));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    // It has exited: what it printed waits in the pipe. Read without blocking,
    // in case something it started still holds the pipe open.
    let mut said = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        sys::set_nonblocking(stdout.as_fd()).map_err(|e| e.to_string())?;
        let _ = std::io::Read::read_to_end(&mut stdout, &mut said);
    }
    Ok(String::from_utf8_lossy(&said).lines().next().unwrap_or_default().trim().to_string())
}

/// The monitor binary's file name, beside berth's.
const MONITOR_BINARY: &str = "berth-monitor";

/// What `berth-monitor --version` prints when it is of this berth's build.
fn monitor_version() -> String {
    format!("{MONITOR_BINARY} {}", env!("CARGO_PKG_VERSION"))
}

/// The monitor's one line, or why there is none.
fn read_answer(pipe: File, id: &str, timeout: Duration) -> Result<String, MonitorError> {
    let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
    let setup = |message: String| MonitorError::Setup { id: id.to_string(), message };
    if sys::poll(&mut fds, sys::poll_timeout(timeout)).map_err(|e| setup(format!("waiting for its answer: {e}")))? == 0
    {
        // The pipe closes as this returns: a monitor answering later finds it closed.
        return Err(MonitorError::TimedOut { id: id.to_string(), timeout });
    }
    // The monitor writes its line in one write, or exits: this does not block long.
    let mut line = String::new();
    BufReader::new(pipe).read_line(&mut line).map_err(|e| setup(format!("reading its answer: {e}")))?;
    Ok(line.trim_end().to_string())
}

fn parse_answer(line: &str, args: &MonitorArgs) -> Result<Monitor, MonitorError> {
    let setup = |message: String| MonitorError::Setup { id: args.id.clone(), message };
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    match word {
        "ok" => {
            let pids: Vec<i32> = rest.split(' ').filter_map(|p| p.parse().ok()).collect();
            match pids.as_slice() {
                [container_pid, pid] => Ok(Monitor { pid: *pid, container_pid: *container_pid }),
                _ => Err(setup(format!("unexpected answer {line:?}"))),
            }
        }
        "error" => {
            let (refusal, message) = rest.split_once(' ').unwrap_or((rest, ""));
            Err(MonitorError::Runtime(RuntimeError::Failed {
                call: Call::new(&args.runtime_name(), "create", &args.id),
                refusal: Refusal::parse(refusal),
                message: message.to_string(),
            }))
        }
        "timeout" => Err(MonitorError::Runtime(RuntimeError::TimedOut {
            call: Call::new(&args.runtime_name(), "create", &args.id),
            timeout: rest.parse().map(Duration::from_millis).unwrap_or(args.runtime_timeout),
        })),
        "failed" => Err(setup(rest.to_string())),
        "" => Err(setup("exited without an answer".into())),
        _ => Err(setup(format!("unexpected answer {line:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("berth-monitor");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_version_is_its_first_line_and_a_hung_binary_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let speaks = script(dir.path(), "#!/bin/sh\necho 'berth-monitor 9.9.9'\necho more\n");
        assert_eq!(version_of(&speaks, Duration::from_secs(10)).unwrap(), "berth-monitor 9.9.9");

        let other = tempfile::tempdir().unwrap();
        let hangs = script(other.path(), "#!/bin/sh\nexec sleep 1000\n");
        let error = version_of(&hangs, Duration::from_millis(200)).unwrap_err();
        assert!(error.contains("within"), "{error}");

        let missing = dir.path().join("nothing-here");
        assert!(version_of(&missing, Duration::from_secs(1)).is_err());
    }
}
