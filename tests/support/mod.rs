//! The test bed shared by every integration test: a real registry, images built
//! from busybox, and a real berth on a per-test socket.
#![allow(dead_code)]

pub mod berth;
pub mod cni;
pub mod containers;
pub mod crictl;
pub mod critest_images;
pub mod failure;
pub mod faults;
pub mod footprint;
pub mod http_server;
pub mod hung_fuse;
pub mod image;
pub mod installer;
pub mod kubelet;
pub mod metrics;
pub mod nri_plugin;
pub mod pods;
pub mod proxy;
pub mod registry;
pub mod streaming;
pub mod tmux;
pub mod token_auth;
pub mod tools;
