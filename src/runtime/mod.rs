//! OCI runtime handlers: the named runtimes (runc, crun, kata, runsc) that run a
//! pod's containers. A handler can be looked up and health-checked, and gives the
//! [`OciRuntime`] that drives its containers ([`OciCli`] for runc-compatible ones).

pub(crate) mod cli;
mod error;
mod handler;
pub mod internal;
mod oci;

pub use cli::{DEFAULT_TIMEOUT, ExecArgs, OciCli};
pub use error::{Call, Refusal, RuntimeError};
pub use handler::{HandlerError, RuntimeHandler, RuntimeHandlers};
pub use oci::{
    ContainerState, ContainerStatus, CreateIo, ExecInput, ExecIo, ExecOutput, ExecProcess, OciRuntime, RuntimeFeatures,
    Signal,
};
