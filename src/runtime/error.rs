//! What goes wrong when berth drives an OCI runtime, and what kind of failure it is.
//! A refusal is typed by the backend that met it ([`Refusal`]): the runc CLI reads
//! it from runc's words (`cli/messages.rs`), a library backend knows it outright.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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
    /// The runtime ran and refused; `message` is its reason, `refusal` what kind.
    #[error("{call}: {message}")]
    Failed { call: Call, refusal: Refusal, message: String },
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
            RuntimeError::Failed { refusal, .. } => refusal.kind(),
            RuntimeError::Spawn { .. } | RuntimeError::TimedOut { .. } => ErrorKind::Unavailable,
            RuntimeError::ExecTimedOut { .. } => ErrorKind::DeadlineExceeded,
            RuntimeError::Io { .. } | RuntimeError::Json { .. } => ErrorKind::Internal,
        }
    }
}

impl RuntimeError {
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

/// Why a runtime refused a command, as far as the caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A container by that ID exists already.
    AlreadyExists,
    /// The runtime knows no such container.
    NotFound,
    /// The container is not in a state the command needs (not running, stopped, paused...).
    WrongState,
    /// The process asked for cannot be run (its executable is not in the image).
    InvalidProcess,
    /// The spec asks for something this runtime cannot do (SELinux labels of the
    /// internal runtime): the request's to change, as for an invalid one.
    Unsupported,
    /// Anything else: the runtime or the host is at fault.
    Other,
}

impl Refusal {
    pub fn kind(self) -> ErrorKind {
        match self {
            Refusal::AlreadyExists => ErrorKind::AlreadyExists,
            Refusal::NotFound => ErrorKind::NotFound,
            Refusal::WrongState => ErrorKind::FailedPrecondition,
            Refusal::InvalidProcess | Refusal::Unsupported => ErrorKind::InvalidArgument,
            Refusal::Other => ErrorKind::Internal,
        }
    }

    /// A word for the monitor's answer line, and back.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::AlreadyExists => "already-exists",
            Refusal::NotFound => "not-found",
            Refusal::WrongState => "wrong-state",
            Refusal::InvalidProcess => "invalid-process",
            Refusal::Unsupported => "unsupported",
            Refusal::Other => "other",
        }
    }

    pub fn parse(word: &str) -> Refusal {
        [Refusal::AlreadyExists, Refusal::NotFound, Refusal::WrongState, Refusal::InvalidProcess, Refusal::Unsupported]
            .into_iter()
            .find(|refusal| refusal.as_str() == word)
            .unwrap_or(Refusal::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_cross_the_monitors_pipe_intact() {
        for refusal in [Refusal::AlreadyExists, Refusal::NotFound, Refusal::WrongState, Refusal::InvalidProcess, Refusal::Other] {
            assert_eq!(Refusal::parse(refusal.as_str()), refusal);
        }
        assert_eq!(Refusal::parse("what"), Refusal::Other);
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
