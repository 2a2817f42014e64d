//! OCI runtime handlers: the named runtimes (runc, crun, kata, runsc) that run a
//! pod's containers. Container lifecycle through them lands with the containers
//! issue; for now a handler can be looked up and health-checked.

mod handler;

pub use handler::{HandlerError, RuntimeHandler, RuntimeHandlers};
