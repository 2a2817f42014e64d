//! A container's root filesystem: an overlay of its image's snapshot chain
//! (read-only lowerdirs, top layer first) and a writable layer of its own
//! (`upper` + `work` under `<state_root>/containers/<id>/`), mounted at
//! `<run_root>/containers/<id>/rootfs`.
//!
//! The writable layer lives under the state root, so a container's changes
//! survive a berth restart (and a reboot, for kubelet to inspect the exited
//! container); only the mount lives under the run root.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {message}")]
    Host { path: String, message: String },
}

impl crate::error::Classify for RootfsError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            RootfsError::Host { .. } => crate::error::ErrorKind::Internal,
        }
    }
}

fn host(path: &Path, e: impl std::fmt::Display) -> RootfsError {
    RootfsError::Host { path: path.display().to_string(), message: e.to_string() }
}

/// Where a container's writable layer and mount point are.
pub struct RootfsPaths {
    /// `<state_root>/containers/<id>`: `upper` and `work` inside.
    pub layer: PathBuf,
    /// `<run_root>/containers/<id>/rootfs`.
    pub mount_point: PathBuf,
}

/// Mounts the overlay; idempotent (an existing mount is left as it is).
pub fn mount_rootfs(lower: &[PathBuf], paths: &RootfsPaths) -> Result<(), RootfsError> {
    let (upper, work) = (paths.layer.join("upper"), paths.layer.join("work"));
    for dir in [&upper, &work, &paths.mount_point] {
        std::fs::create_dir_all(dir).map_err(|e| host(dir, e))?;
    }
    if is_mounted(&paths.mount_point) {
        return Ok(());
    }
    let lowerdir: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let options = format!("lowerdir={},upperdir={},workdir={}", lowerdir.join(":"), upper.display(), work.display());
    mount(Some("overlay"), &paths.mount_point, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|e| host(&paths.mount_point, format!("overlay mount: {e}")))
}

/// Unmounts the rootfs; safe when it is not mounted.
pub fn unmount_rootfs(paths: &RootfsPaths) -> Result<(), RootfsError> {
    match umount2(&paths.mount_point, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(host(&paths.mount_point, e)),
    }
}

/// Unmounts and deletes the writable layer and the mount point.
pub fn remove_rootfs(paths: &RootfsPaths) -> Result<(), RootfsError> {
    unmount_rootfs(paths)?;
    for dir in [&paths.mount_point, &paths.layer] {
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(host(dir, e));
        }
    }
    Ok(())
}

fn is_mounted(path: &Path) -> bool {
    let wanted = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|line| line.split_whitespace().nth(4) == Some(wanted.as_str())))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::snapshots::Snapshots;
    use crate::store::Store;

    /// Unmounts even when an assertion fails, so no overlay outlives the test.
    struct Mounted<'a>(&'a RootfsPaths);
    impl Drop for Mounted<'_> {
        fn drop(&mut self) {
            let _ = unmount_rootfs(self.0);
        }
    }

    #[test]
    fn overlay_of_a_chain_with_a_private_writable_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let snapshots = Snapshots::open(dir.path().join("snapshots"), &store).unwrap();
        let layer = |chain: &str, parent: Option<&str>, files: &[(&str, &str)]| {
            let tmp = snapshots.temp_dir().unwrap();
            for (name, content) in files {
                std::fs::write(tmp.path().join("fs").join(name), content).unwrap();
            }
            snapshots.commit(&store, chain, parent, chain, tmp).unwrap();
        };
        layer("sha256:base", None, &[("a", "base"), ("b", "base")]);
        layer("sha256:top", Some("sha256:base"), &[("b", "top")]);
        let lower = snapshots.lower_dirs(&store, "sha256:top").unwrap();
        assert_eq!(lower.len(), 2);
        assert!(lower[0].starts_with(dir.path().join("snapshots")), "top first");

        let paths =
            RootfsPaths { layer: dir.path().join("containers/c1"), mount_point: dir.path().join("run/c1/rootfs") };
        mount_rootfs(&lower, &paths).unwrap();
        let _mounted = Mounted(&paths);
        mount_rootfs(&lower, &paths).unwrap(); // idempotent
        let merged = &paths.mount_point;
        assert_eq!(std::fs::read_to_string(merged.join("a")).unwrap(), "base");
        assert_eq!(std::fs::read_to_string(merged.join("b")).unwrap(), "top", "upper layers win");
        std::fs::write(merged.join("new"), "mine").unwrap();
        std::fs::remove_file(merged.join("a")).unwrap();
        assert!(paths.layer.join("upper/new").exists(), "writes land in the container's own layer");
        assert!(lower[1].join("a").exists(), "image layers are never written");

        remove_rootfs(&paths).unwrap();
        assert!(!is_mounted(merged) && !paths.layer.exists());
        assert!(snapshots.lower_dirs(&store, "sha256:gone").is_err());
    }
}
