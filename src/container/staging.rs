//! Mounts berth makes on the host before a container's runtime runs, which
//! its spec then binds from: image volumes (`<run_dir>/image-volumes/<index>`)
//! and ID-mapped binds (`<run_dir>/idmapped/<index>`), by the index of their
//! CRI mount. They go with the container: RemoveContainer, a failed create
//! and the recovery of a crashed one unmount them before anything removes the
//! run directory, which must never walk into an image or a host path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ContainerError;
use super::rootfs;

/// Per CRI mount index, the host path the spec binds instead of `host_path`.
pub type StagedMounts = BTreeMap<usize, PathBuf>;

pub const IMAGE_VOLUMES: &str = "image-volumes";
pub const IDMAPPED: &str = "idmapped";

/// Where mount `index` of `kind` is staged for the container of `run_dir`.
pub fn staging_point(run_dir: &Path, kind: &str, index: usize) -> PathBuf {
    run_dir.join(kind).join(index.to_string())
}

/// Unmounts whatever is staged under the container's run directory.
pub fn unmount_all(run_dir: &Path) -> Result<(), ContainerError> {
    for kind in [IMAGE_VOLUMES, IDMAPPED] {
        for entry in std::fs::read_dir(run_dir.join(kind)).into_iter().flatten().flatten() {
            rootfs::unmount(&entry.path())?;
        }
    }
    Ok(())
}
