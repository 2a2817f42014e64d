//! The image service: pull from registries, store, unpack into snapshots.
//!
//! One file per RPC: `pull.rs` (PullImage), `status.rs` (ImageStatus),
//! `list.rs` (ListImages), `remove.rs` (RemoveImage), `fs_info.rs`
//! (ImageFsInfo). Beneath them: `reference` (names), `registry` (endpoints,
//! mirrors, credentials), `manifest` (manifests, indexes, platforms),
//! `layer_fetch` + `unpack` (stream -> snapshot), `pull_progress` (what a
//! pull's watchers see), `snapshots`, `content`
//! (manifest and config blobs), `catalog` (image records and names), and
//! `single_flight` (one download per layer, whoever asks).

mod capped;
pub mod catalog;
pub mod content;
pub mod error;
mod figures;
mod fs_info;
mod layer_fetch;
mod lease;
mod list;
pub mod manifest;
mod manifest_fetch;
mod pull;
pub mod pull_progress;
pub mod reference;
#[cfg(test)]
mod reference_props;
pub mod registry;
mod remove;
mod service;
pub mod single_flight;
pub mod snapshots;
pub mod status;
pub mod unpack;
#[cfg(test)]
mod unpack_props;

pub use error::ImageError;
pub use figures::PullFigures;
pub use fs_info::FsUsage;
pub use lease::LeasedImage;
pub use registry::Credentials;
pub use service::ImageService;
