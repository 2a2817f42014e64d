//! libcontainer's errors as berth's: typed by what went wrong, with the whole
//! chain of causes in the message (libcontainer's own words are terse).

use libcontainer::error::LibcontainerError;

use crate::runtime::error::{Call, Refusal, RuntimeError};

pub(super) fn from_libcontainer(call: Call, error: LibcontainerError) -> RuntimeError {
    let refusal = match &error {
        LibcontainerError::Exist => Refusal::AlreadyExists,
        LibcontainerError::NoDirectory => Refusal::NotFound,
        LibcontainerError::IncorrectStatus(_) => Refusal::WrongState,
        _ => Refusal::Other,
    };
    RuntimeError::Failed { call, refusal, message: chain(&error) }
}

pub(super) fn cgroups(call: &Call, error: impl std::error::Error) -> RuntimeError {
    RuntimeError::Failed { call: call.clone(), refusal: Refusal::Other, message: chain(&error) }
}

pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}
