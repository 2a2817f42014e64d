//! libcontainer's errors as berth's: typed by what went wrong, with the whole
//! chain of causes in the message (libcontainer's own words are terse).

use libcontainer::error::LibcontainerError;

use crate::error::with_causes;
use crate::runtime::error::{Call, Refusal, RuntimeError};

pub(super) fn from_libcontainer(call: Call, error: LibcontainerError) -> RuntimeError {
    let refusal = match &error {
        LibcontainerError::Exist => Refusal::AlreadyExists,
        LibcontainerError::NoDirectory => Refusal::NotFound,
        LibcontainerError::IncorrectStatus(_) => Refusal::WrongState,
        _ => Refusal::Other,
    };
    RuntimeError::Failed { call, refusal, message: with_causes(&error) }
}

pub(super) fn cgroups(call: &Call, error: impl std::error::Error) -> RuntimeError {
    RuntimeError::Failed { call: call.clone(), refusal: Refusal::Other, message: with_causes(&error) }
}

/// Adds libcontainer's logged account of a failure (see capture.rs) to the refusal.
pub(super) fn with_account(error: RuntimeError, account: &str) -> RuntimeError {
    match error {
        RuntimeError::Failed { call, refusal, message } if !account.is_empty() => {
            RuntimeError::Failed { call, refusal, message: format!("{message} ({account})") }
        }
        other => other,
    }
}
