//! The image service's errors, each with the kind a CRI client can act on.

use crate::error::{Classify, ErrorKind};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("image reference {reference:?} is ambiguous: it matches {count} images")]
    Ambiguous { reference: String, count: usize },
    #[error("{registry}: authentication failed: {message}")]
    Unauthenticated { registry: String, message: String },
    #[error("{reference}: not found in registry {registry}")]
    NotInRegistry { reference: String, registry: String },
    #[error("{reference}: {message}")]
    Unsupported { reference: String, message: String },
    #[error("{registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { what: String, expected: u64, actual: u64 },
    #[error("{what}: no progress for {seconds} s, giving up")]
    Stalled { what: String, seconds: u64 },
    #[error("layer {digest}: {message}")]
    Layer { digest: String, message: String },
    #[error("pull cancelled")]
    Cancelled,
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
    /// The error of a pull that another caller started and this one waited for.
    #[error("{0}")]
    Shared(std::sync::Arc<ImageError>),
}

impl Classify for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::InvalidReference { .. } | ImageError::InvalidArgument { .. } | ImageError::Ambiguous { .. } => {
                ErrorKind::InvalidArgument
            }
            ImageError::NotFound(_) | ImageError::NotInRegistry { .. } => ErrorKind::NotFound,
            ImageError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            ImageError::Unsupported { .. } => ErrorKind::FailedPrecondition,
            ImageError::Registry { .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::SizeMismatch { .. }
            | ImageError::Layer { .. } => ErrorKind::Unavailable,
            ImageError::Stalled { .. } => ErrorKind::DeadlineExceeded,
            ImageError::Cancelled => ErrorKind::Cancelled,
            ImageError::Io { .. } | ImageError::Store(_) | ImageError::Internal(_) => ErrorKind::Internal,
            ImageError::Shared(inner) => inner.kind(),
        }
    }
}

impl ImageError {
    pub fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        ImageError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}

impl super::single_flight::FlightLost for ImageError {
    fn lost() -> Self {
        ImageError::Internal("a shared download task died".into())
    }
}
