//! Mounts berth makes on the host before a container's runtime runs, which
//! its spec then binds from: image volumes (`<run_dir>/image-volumes/<index>`)
//! and binds berth prepares itself (`<run_dir>/binds/<index>`: ID-mapped, or
//! recursively read-only), by the index of their
//! CRI mount. Once the runtime has made the container, its mount namespace
//! holds its own copies, and berth unmounts them from the node's: a mount left
//! there would pin the host paths it covers (a directory under one could not be
//! removed while the container lives, which neither runc nor containerd cause).
//! A failed create, RemoveContainer and the recovery of a crashed one unmount
//! what is left before anything removes the run directory, which must never
//! walk into an image or a host path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ContainerError;
use super::rootfs;

/// Per CRI mount index, the host path the spec binds instead of `host_path`.
pub type StagedMounts = BTreeMap<usize, PathBuf>;

pub const IMAGE_VOLUMES: &str = "image-volumes";
pub const STAGED_BINDS: &str = "binds";

/// Where mount `index` of `kind` is staged for the container of `run_dir`.
pub fn staging_point(run_dir: &Path, kind: &str, index: usize) -> PathBuf {
    run_dir.join(kind).join(index.to_string())
}

/// Unmounts whatever is staged under the container's run directory.
pub fn unmount_all(run_dir: &Path) -> Result<(), ContainerError> {
    for kind in [IMAGE_VOLUMES, STAGED_BINDS] {
        for entry in std::fs::read_dir(run_dir.join(kind)).into_iter().flatten().flatten() {
            rootfs::unmount(&entry.path())?;
        }
    }
    Ok(())
}
