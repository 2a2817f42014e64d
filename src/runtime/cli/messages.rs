//! runc's words (and crun's, runsc's, kata's: they use the same ones). With `--log
//! <file> --log-format json` a command's reason lands, one JSON object per line, in
//! a file berth owns; the last error logged is the reason reported, and its kind
//! is read from the phrases the runtimes use, so kubelet can tell "gone" from
//! "busy" from "broken".

use std::process::ExitStatus;

use serde::Deserialize;

use crate::runtime::error::{Call, Refusal, RuntimeError};

/// The error for a command that exited with `status`, from what it left in its
/// log file and on stderr (stderr is empty when it was not berth's to read).
pub fn failed(call: Call, status: ExitStatus, log: &str, stderr: &[u8]) -> RuntimeError {
    from_message(call, failure_message(status, log, stderr))
}

/// The error for a refusal the runtime explained in `message`.
pub fn from_message(call: Call, message: String) -> RuntimeError {
    RuntimeError::Failed { call, refusal: refusal_of(&message), message }
}

/// Phrases in a runtime's message and the refusal they mean; the first match wins, so
/// the more specific phrases come first. Taken from runc 1.1 (`container does not
/// exist`, `container with given ID already exists`, `container not running`,
/// `cannot start a container that has stopped`...); crun, runsc and kata use the same
/// words for the same cases.
const MESSAGE_REFUSALS: &[(&str, Refusal)] = &[
    ("already exists", Refusal::AlreadyExists),
    // The process asked for is not in the image: the request is wrong, not the
    // container missing, though the words say "not found".
    ("executable file not found", Refusal::InvalidProcess),
    ("does not exist", Refusal::NotFound),
    ("not found", Refusal::NotFound),
    ("not running", Refusal::WrongState),
    ("not paused", Refusal::WrongState),
    ("not stopped", Refusal::WrongState),
    ("already running", Refusal::WrongState),
    ("has stopped", Refusal::WrongState),
    ("in a stopped container", Refusal::WrongState),
    ("in a paused container", Refusal::WrongState),
];

/// The refusal a runtime's error message describes.
pub fn refusal_of(message: &str) -> Refusal {
    let message = message.to_ascii_lowercase();
    MESSAGE_REFUSALS.iter().find(|(phrase, _)| message.contains(phrase)).map_or(Refusal::Other, |(_, refusal)| *refusal)
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
    use crate::error::{Classify, ErrorKind};

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
            assert_eq!(refusal_of(message).kind(), kind, "{message}");
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
            failed(call.clone(), exit(1), r#"{"level":"error","msg":"container does not exist"}"#, b"");
        assert_eq!(err.to_string(), "runc state abc: container does not exist");
        assert!(err.is_not_found());

        let err = failed(call.clone(), exit(1), "", b"usage\nboom: broken\n\n");
        assert_eq!(err.to_string(), "runc state abc: boom: broken");
        assert_eq!(err.kind(), ErrorKind::Internal);

        let err = failed(call.clone(), exit(1), "level=error msg=text log\n", b"");
        assert_eq!(err.to_string(), "runc state abc: level=error msg=text log");

        let err = failed(call, exit(2), "", b"");
        assert_eq!(err.to_string(), "runc state abc: exited with exit status: 2");
    }
}
