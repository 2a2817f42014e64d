//! What kind of failure an error is, independent of any transport.
//!
//! Every domain module has its own `thiserror` enum and says, through
//! [`Classify`], which kind each variant is. Only `server/` turns a kind into a
//! gRPC code, in one place.

/// The kinds of failure a CRI client can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong; retrying it unchanged will not help.
    InvalidArgument,
    NotFound,
    AlreadyExists,
    /// The object is not in a state that allows the call (e.g. start a stopped container).
    FailedPrecondition,
    DeadlineExceeded,
    /// The caller went away or asked to stop.
    Cancelled,
    /// Credentials were missing or refused by a registry.
    Unauthenticated,
    /// A dependency (registry, runtime, plugin) is unreachable for now; retrying may help.
    Unavailable,
    /// The feature is not built yet or not supported here.
    Unimplemented,
    /// A bug or an unexpected failure of the host.
    Internal,
}

/// An error and each of its causes not already in its message, joined by
/// ": ": libraries often say only what failed at the top and why below.
pub fn with_causes(error: &dyn std::error::Error) -> String {
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

/// Implemented by every domain error.
pub trait Classify: std::error::Error {
    fn kind(&self) -> ErrorKind;
}
