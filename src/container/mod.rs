//! Containers (issue 5, under construction): the OCI runtime spec built from
//! the CRI's container config. The container RPCs answer Unimplemented until
//! the per-container monitor lands.

pub mod rootfs;
pub mod spec;
