//! The sandbox service's errors.

use crate::error::{Classify, ErrorKind};
use crate::network::NetworkError;
use crate::runtime::HandlerError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox ID prefix {prefix:?} is ambiguous: it matches {count} sandboxes")]
    Ambiguous { prefix: String, count: usize },
    #[error("a pod sandbox named {name:?} already exists ({id}); remove it first")]
    NameTaken { name: String, id: String },
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("pod network: {0}")]
    Network(#[from] NetworkError),
    #[error("pod sandbox {0} is not ready: its network is gone")]
    NotReady(String),
    /// A port-forward's connection inside the pod failed; the client is told why.
    #[error("connecting to port {port} in pod sandbox {id}: {message}")]
    Unreachable { id: String, port: u16, message: String },
    #[error("{what}: {message}")]
    Host { what: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Nri(#[from] crate::nri::NriError),
    /// A RunPodSandbox another caller started failed; its error, shared.
    #[error("{0}")]
    Shared(std::sync::Arc<SandboxError>),
}

impl Classify for SandboxError {
    fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::InvalidArgument { .. } | SandboxError::Ambiguous { .. } => ErrorKind::InvalidArgument,
            SandboxError::NotFound(_) => ErrorKind::NotFound,
            SandboxError::NameTaken { .. } => ErrorKind::AlreadyExists,
            SandboxError::NotReady(_) => ErrorKind::FailedPrecondition,
            SandboxError::Unreachable { .. } => ErrorKind::Unavailable,
            SandboxError::Handler(e) => e.kind(),
            SandboxError::Network(e) => e.kind(),
            SandboxError::Host { .. } | SandboxError::Store(_) => ErrorKind::Internal,
            SandboxError::Nri(e) => e.kind(),
            SandboxError::Shared(e) => e.kind(),
        }
    }
}

impl SandboxError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        SandboxError::InvalidArgument { field: field.to_string(), reason: reason.into() }
    }

    pub fn host(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        SandboxError::Host { what: what.into(), message: message.to_string() }
    }
}
