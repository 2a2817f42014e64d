//! The image service: pull from registries, store, unpack into snapshots.

pub mod content;
pub mod error;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod single_flight;
pub mod snapshots;
pub mod unpack;

pub use error::ImageError;
