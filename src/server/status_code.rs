//! The one place where a domain error becomes a gRPC status.

use tonic::{Code, Status};

use crate::error::{Classify, ErrorKind};

pub fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Cancelled => Code::Cancelled,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Converts a domain error; internal ones are logged here since they mean a bug
/// or a broken host, which the operator should see even if the client retries.
pub fn to_status<E: Classify>(err: E) -> Status {
    let kind = err.kind();
    if kind == ErrorKind::Internal {
        tracing::error!(error = %err, "internal error");
    }
    Status::new(code_of(kind), err.to_string())
}

/// The answer for RPCs whose capability has not landed yet: never a fake success.
pub fn not_implemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented by berth yet"))
}
