//! How a session's outcome reaches the client on the error stream: plain text
//! in the remote-command protocols before v4, a `metav1.Status` object since.

use serde_json::json;

/// How a session ended, as the client must learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command exited with this non-zero code.
    ExitCode {
        cmd: Vec<String>,
        code: i32,
    },
    /// The session could not run (the container stopped, the runtime refused...).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// v1 to v3: the error's text, nothing on success.
    Text,
    /// v4 and v5: a JSON `metav1.Status`, also on success.
    Status,
}

impl Outcome {
    /// What goes on the error stream, if anything.
    pub fn encode(&self, format: StatusFormat) -> Option<Vec<u8>> {
        let status = match (format, self) {
            (StatusFormat::Text, Outcome::Success) => return None,
            (StatusFormat::Text, outcome) => return Some(outcome.message().into_bytes()),
            (StatusFormat::Status, Outcome::Success) => json!({"metadata": {}, "status": "Success"}),
            (StatusFormat::Status, Outcome::ExitCode { code, .. }) => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.message(),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            (StatusFormat::Status, Outcome::Failed(_)) => json!({
                "metadata": {},
                "status": "Failure",
                "message": self.message(),
                "reason": "InternalError",
                "code": 500,
            }),
        };
        Some(status.to_string().into_bytes())
    }

    fn message(&self) -> String {
        match self {
            Outcome::Success => String::new(),
            // kubectl prints this text as it is; clients match on it.
            Outcome::ExitCode { cmd, code } => {
                format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}")
            }
            Outcome::Failed(message) => message.clone(),
        }
    }
}
