//! What goes wrong when berth drives an OCI runtime, and what kind of failure it is.
//!
//! runc (and crun, runsc, kata) say why a command failed in free text. With
//! `--log <file> --log-format json` that text lands, one JSON object per line, in a
//! file berth owns; the last error logged is the reason reported. Its kind comes from
//! the phrases the runtimes use, so kubelet can tell "gone" from "busy" from "broken".

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Classify, ErrorKind};

/// One runtime command on one container: the context every error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The runtime handler's name (`runc`, `kata`...).
    pub runtime: String,
    /// The runtime's subcommand (`create`, `state`...).
    pub command: &'static str,
    /// The container ID; empty for commands about no container (`list`).
    pub id: String,
}

impl Call {
    pub fn new(runtime: &str, command: &'static str, id: &str) -> Self {
        Call { runtime: runtime.to_string(), command, id: id.to_string() }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.runtime, self.command)?;
        if !self.id.is_empty() {
            write!(f, " {}", self.id)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime ran and refused; `message` is what it logged (or printed) last.
    #[error("{call}: {message}")]
    Failed { call: Call, message: String },
    #[error("{call}: cannot run {binary:?}: {source}")]
    Spawn {
        call: Call,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime itself hung; it was killed.
    #[error("{call}: no answer within {timeout:?}, killed")]
    TimedOut { call: Call, timeout: Duration },
    /// A process run with exec outlived the caller's deadline; it was killed.
    #[error("{call}: the process did not finish within {timeout:?}, killed")]
    ExecTimedOut { call: Call, timeout: Duration },
    /// A file or pipe berth needs around the command (root dir, log, process file).
    #[error("{call}: {what}: {source}")]
    Io {
        call: Call,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{call}: {what}: {source}")]
    Json {
        call: Call,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Failed { message, .. } => classify_message(message),
            RuntimeError::Spawn { .. } | RuntimeError::TimedOut { .. } => ErrorKind::Unavailable,
            RuntimeError::ExecTimedOut { .. } => ErrorKind::DeadlineExceeded,
            RuntimeError::Io { .. } | RuntimeError::Json { .. } => ErrorKind::Internal,
        }
    }
}

impl RuntimeError {
    /// The error for a command that exited with `status`, from what it left in its
    /// log file and on stderr (stderr is empty when it was not berth's to read).
    pub fn failed(call: Call, status: ExitStatus, log: &str, stderr: &[u8]) -> Self {
        RuntimeError::Failed { call, message: failure_message(status, log, stderr) }
    }

    pub fn io(call: &Call, what: &'static str, source: std::io::Error) -> Self {
        RuntimeError::Io { call: call.clone(), what, source }
    }

    pub fn json(call: &Call, what: &'static str, source: serde_json::Error) -> Self {
        RuntimeError::Json { call: call.clone(), what, source }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// Phrases in a runtime's message and the kind they mean; the first match wins, so
/// the more specific phrases come first. Taken from runc 1.1 (`container does not
/// exist`, `container with given ID already exists`, `container not running`,
/// `cannot start a container that has stopped`...); crun, runsc and kata use the same
/// words for the same cases.
const MESSAGE_KINDS: &[(&str, ErrorKind)] = &[
    ("already exists", ErrorKind::AlreadyExists),
    // The process asked for is not in the image: the request is wrong, not the
    // container missing, though the words say "not found".
    ("executable file not found", ErrorKind::InvalidArgument),
    ("does not exist", ErrorKind::NotFound),
    ("not found", ErrorKind::NotFound),
    ("not running", ErrorKind::FailedPrecondition),
    ("not paused", ErrorKind::FailedPrecondition),
    ("not stopped", ErrorKind::FailedPrecondition),
    ("already running", ErrorKind::FailedPrecondition),
    ("has stopped", ErrorKind::FailedPrecondition),
    ("in a stopped container", ErrorKind::FailedPrecondition),
    ("in a paused container", ErrorKind::FailedPrecondition),
];

/// The kind of failure a runtime's error message describes.
pub fn classify_message(message: &str) -> ErrorKind {
    let message = message.to_ascii_lowercase();
    MESSAGE_KINDS.iter().find(|(phrase, _)| message.contains(phrase)).map_or(ErrorKind::Internal, |(_, kind)| *kind)
}

/// One line of a runtime's JSON log (logrus format for runc).
#[derive(Deserialize)]
struct LogEntry {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

/// The last error-level message of a JSON log: why the command failed. Lines that are
/// not JSON, and warnings, are not errors and are skipped.
pub fn last_logged_error(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<LogEntry>(line).ok())
        .find(|entry| matches!(entry.level.as_str(), "error" | "fatal" | "panic") && !entry.msg.is_empty())
        .map(|entry| entry.msg)
}

/// The best reason available: the logged error; else stderr (a runtime that ignores
/// `--log-format`); else the log's last line; else the exit status alone.
fn failure_message(status: ExitStatus, log: &str, stderr: &[u8]) -> String {
    let last_line = |text: &str| text.lines().map(str::trim).rfind(|line| !line.is_empty()).map(str::to_string);
    last_logged_error(log)
        .or_else(|| last_line(&String::from_utf8_lossy(stderr)))
        .or_else(|| last_line(log))
        .unwrap_or_else(|| format!("exited with {status}"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn runc_messages_have_their_kind() {
        let cases = [
            ("container does not exist", ErrorKind::NotFound),
            ("runc create failed: container with given ID already exists", ErrorKind::AlreadyExists),
            ("container not running", ErrorKind::FailedPrecondition),
            ("container not paused", ErrorKind::FailedPrecondition),
            ("cannot start an already running container", ErrorKind::FailedPrecondition),
            ("cannot start a container that has stopped", ErrorKind::FailedPrecondition),
            ("cannot delete container x1 that is not stopped: running", ErrorKind::FailedPrecondition),
            ("exec failed: cannot exec in a stopped container", ErrorKind::FailedPrecondition),
            (
                "exec failed: cannot exec in a paused container (use --ignore-paused to override)",
                ErrorKind::FailedPrecondition,
            ),
            (r#"exec: "nope": executable file not found in $PATH"#, ErrorKind::InvalidArgument),
            ("Container Not Found", ErrorKind::NotFound),
            ("unable to apply cgroup configuration: permission denied", ErrorKind::Internal),
        ];
        for (message, kind) in cases {
            assert_eq!(classify_message(message), kind, "{message}");
        }
    }

    #[test]
    fn the_last_logged_error_is_the_reason() {
        let log = concat!(
            r#"{"level":"warning","msg":"cgroup warning","time":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"level":"error","msg":"first","time":"2024-01-01T00:00:00Z"}"#,
            "\nnot json at all\n",
            r#"{"level":"error","msg":"container does not exist","time":"2024-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"level":"info","msg":"later info","time":"2024-01-01T00:00:00Z"}"#,
            "\n"
        );
        assert_eq!(last_logged_error(log).as_deref(), Some("container does not exist"));
        assert_eq!(last_logged_error(r#"{"level":"warning","msg":"w"}"#), None);
        assert_eq!(last_logged_error(""), None);
    }

    #[test]
    fn failure_message_falls_back_to_stderr_then_log_then_status() {
        let call = Call::new("runc", "state", "abc");
        let err =
            RuntimeError::failed(call.clone(), exit(1), r#"{"level":"error","msg":"container does not exist"}"#, b"");
        assert_eq!(err.to_string(), "runc state abc: container does not exist");
        assert!(err.is_not_found());

        let err = RuntimeError::failed(call.clone(), exit(1), "", b"usage\nboom: broken\n\n");
        assert_eq!(err.to_string(), "runc state abc: boom: broken");
        assert_eq!(err.kind(), ErrorKind::Internal);

        let err = RuntimeError::failed(call.clone(), exit(1), "level=error msg=text log\n", b"");
        assert_eq!(err.to_string(), "runc state abc: level=error msg=text log");

        let err = RuntimeError::failed(call, exit(2), "", b"");
        assert_eq!(err.to_string(), "runc state abc: exited with exit status: 2");
    }

    #[test]
    fn calls_without_a_container_name_none() {
        assert_eq!(Call::new("crun", "list", "").to_string(), "crun list");
    }

    #[test]
    fn host_trouble_is_not_the_callers_fault() {
        let call = Call::new("runc", "start", "abc");
        let spawn = RuntimeError::Spawn {
            call: call.clone(),
            binary: "/nope/runc".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(spawn.kind(), ErrorKind::Unavailable);
        assert_eq!(
            RuntimeError::TimedOut { call: call.clone(), timeout: Duration::from_secs(1) }.kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            RuntimeError::ExecTimedOut { call, timeout: Duration::from_secs(1) }.kind(),
            ErrorKind::DeadlineExceeded
        );
    }
}
