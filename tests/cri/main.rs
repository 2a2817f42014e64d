//! Integration tests: a real berth over its socket, driven with the tonic
//! clients generated from berth's own CRI proto (`berth::cri::v1`). One binary with a module per capability keeps linking cheap.

#[path = "../support/mod.rs"]
mod support;

mod api_surface;
mod client_cli;
mod config_cli;
mod containers;
mod crash_points;
mod daemon_lifecycle;
mod hung_mount;
mod image_resilience;
mod images;
mod monitor;
mod nri;
mod oci_runtime;
mod pull_progress;
mod reload;
mod rollback;
mod runtime_info;
mod sandboxes;
mod streaming;
