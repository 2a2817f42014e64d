//! The client commands' one error type. Each message is one line: what went
//! wrong, then what to try, in parentheses.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unsupported endpoint {0:?} (use unix:///path/to/socket or a socket's path)")]
    Endpoint(String),
    #[error("cannot connect to {endpoint}: {reason} (is the runtime running? set --runtime-endpoint)")]
    Connect { endpoint: String, reason: String },
    #[error("{endpoint} did not answer {rpc} within {} (raise --timeout)", humantime::format_duration(*.after))]
    Timeout { endpoint: String, rpc: &'static str, after: Duration },
    #[error("{rpc}: {message}{}", hint(*.code, .endpoint, .rpc))]
    Rpc { endpoint: String, rpc: &'static str, code: tonic::Code, message: String },
    #[error("no {kind} matches {id:?} (list them with `berth {list}`)")]
    NotFound { kind: &'static str, id: String, list: &'static str },
    #[error("{id:?} matches {count} {kind}s (give more of the ID)")]
    Ambiguous { kind: &'static str, id: String, count: usize },
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("cannot stream to {url}: {reason}")]
    Stream { url: String, reason: String },
    #[error("the command failed in the container: {0}")]
    Remote(String),
    #[error("cannot print the answer: {0}")]
    Output(String),
}

impl ClientError {
    pub fn rpc(endpoint: &str, rpc: &'static str, status: &tonic::Status) -> Self {
        let message = if status.message().is_empty() { status.code().description() } else { status.message() };
        ClientError::Rpc { endpoint: endpoint.to_string(), rpc, code: status.code(), message: message.to_string() }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io { what: what.into(), source }
    }
}

fn hint(code: tonic::Code, endpoint: &str, rpc: &str) -> String {
    use tonic::Code;
    match code {
        Code::Unimplemented => format!(" (the runtime at {endpoint} does not serve {rpc})"),
        Code::Unavailable => format!(" (is the runtime at {endpoint} running?)"),
        Code::DeadlineExceeded => " (raise --timeout)".into(),
        Code::PermissionDenied | Code::Unauthenticated => " (check the credentials)".into(),
        _ => String::new(),
    }
}
