//! NRI, the Node Resource Interface (issue 16): external plugins that watch
//! and adjust pods and containers, as containerd and cri-o serve it.
//!
//! `api` is NRI's messages (`proto/nri/api.proto`, compiled by build.rs);
//! `ttrpc` the RPC framing inside NRI's multiplexer; `peer` one plugin
//! connection, both ways; `service` the socket, registration, synchronisation
//! and events; `convert` berth's records as NRI describes them.

pub mod adjust;
mod convert;
pub mod peer;
mod service;
pub mod ttrpc;

pub(crate) use convert::cri_resources as convert_resources;
pub use service::{ContainerControl, Nri, NriError};

/// NRI's messages (package `nri.pkg.api.v1alpha1`).
#[allow(clippy::all, missing_docs)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/nri.pkg.api.v1alpha1.rs"));
}

/// A poisoned lock still guards consistent data here (every holder leaves it
/// whole before anything can panic), so it is used as it is.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
