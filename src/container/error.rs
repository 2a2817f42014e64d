//! The container service's errors.

use crate::error::{Classify, ErrorKind};
use crate::images::ImageError;
use crate::monitor::MonitorError;
use crate::runtime::{HandlerError, RuntimeError};
use crate::sandbox::SandboxError;
use crate::store::StoreError;

use super::rootfs::RootfsError;
use super::spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("container ID prefix {prefix:?} is ambiguous: it matches {count} containers")]
    Ambiguous { prefix: String, count: usize },
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("pod sandbox {0} is not ready: containers cannot be created in it")]
    SandboxNotReady(String),
    #[error("image {0:?} not found: pull it first")]
    ImageNotFound(String),
    #[error("a container named {name:?} already exists in this pod ({id}); remove it first")]
    NameTaken { name: String, id: String },
    /// The call does not fit the container's state (start a running one, exec in an exited one).
    #[error("container {id} is {state}: {reason}")]
    WrongState { id: String, state: &'static str, reason: &'static str },
    #[error("container {id} did not exit within {seconds} s of SIGKILL")]
    StopTimedOut { id: String, seconds: u64 },
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Nri(#[from] crate::nri::NriError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error("{what}: {message}")]
    Host { what: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A create another caller started failed; its error, shared.
    #[error("{0}")]
    Shared(std::sync::Arc<ContainerError>),
}

impl Classify for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::InvalidArgument { .. } | ContainerError::Ambiguous { .. } => ErrorKind::InvalidArgument,
            ContainerError::NotFound(_) | ContainerError::ImageNotFound(_) => ErrorKind::NotFound,
            ContainerError::Sandbox(e) => e.kind(),
            ContainerError::NameTaken { .. } => ErrorKind::AlreadyExists,
            ContainerError::SandboxNotReady(_) | ContainerError::WrongState { .. } => ErrorKind::FailedPrecondition,
            ContainerError::StopTimedOut { .. } => ErrorKind::DeadlineExceeded,
            ContainerError::Spec(e) => e.kind(),
            ContainerError::Rootfs(e) => e.kind(),
            ContainerError::Nri(e) => e.kind(),
            ContainerError::Runtime(e) => e.kind(),
            ContainerError::Monitor(e) => e.kind(),
            ContainerError::Handler(e) => e.kind(),
            ContainerError::Images(e) => e.kind(),
            ContainerError::Host { .. } | ContainerError::Store(_) => ErrorKind::Internal,
            ContainerError::Shared(e) => e.kind(),
        }
    }
}

impl crate::handoff::WorkLost for ContainerError {
    fn lost() -> Self {
        ContainerError::host("create", "the task creating the container ended without an outcome")
    }
}

impl ContainerError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ContainerError::InvalidArgument { field: field.to_string(), reason: reason.into() }
    }

    pub fn host(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        ContainerError::Host { what: what.into(), message: message.to_string() }
    }
}
