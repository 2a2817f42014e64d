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

use crate::idmap::{self, PodUserNamespace};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {message}")]
    Host { path: String, message: String },
    /// The image is valid but deeper than overlayfs can stack: it cannot run here.
    #[error("the image has {layers} layers; overlayfs stacks at most {MAX_LOWER_LAYERS}")]
    TooDeep { layers: usize },
}

impl crate::error::Classify for RootfsError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            RootfsError::Host { .. } => crate::error::ErrorKind::Internal,
            RootfsError::TooDeep { .. } => crate::error::ErrorKind::FailedPrecondition,
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

/// The most lower layers overlayfs stacks (the kernel's `OVL_MAX_STACK`).
pub const MAX_LOWER_LAYERS: usize = 500;

/// mount(2) copies its options into one page, NUL included.
const MOUNT_OPTIONS_MAX: usize = 4096 - 1;

/// Mounts the overlay; idempotent (an existing mount is left as it is). In a
/// pod of its own user namespace, the image's layers are ID-mapped into it and
/// the writable layer belongs to the pod's root.
pub fn mount_rootfs(lower: &[PathBuf], paths: &RootfsPaths, user: Option<&PodUserNamespace>) -> Result<(), RootfsError> {
    let (upper, work) = (paths.layer.join("upper"), paths.layer.join("work"));
    for dir in [&upper, &work] {
        std::fs::create_dir_all(dir).map_err(|e| host(dir, e))?;
    }
    let Some(user) = user else {
        let writable = Some((upper.as_path(), work.as_path()));
        return mount_chain(lower, writable, &paths.mount_point, &paths.layer.join("lower"), MsFlags::empty());
    };
    let (uid, gid) = user.mappings.host_root();
    for dir in [&upper, &work] {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(|e| host(dir, e))?;
    }
    if lower.len() > MAX_LOWER_LAYERS {
        return Err(RootfsError::TooDeep { layers: lower.len() });
    }
    if is_mounted(&paths.mount_point) {
        return Ok(());
    }
    let writable = idmap::Writable { upper: &upper, work: &work };
    idmap::overlay(lower, Some(writable), user.fd(), &paths.mount_point)
        .map_err(|e| host(&paths.mount_point, format!("ID-mapped overlay mount: {e}")))
}

/// Mounts `lower` at `mount_point` read-only, without a writable layer (an
/// image volume), ID-mapped into the pod's user namespace if it has one;
/// idempotent. `links` is where a deep chain's short links go.
pub fn mount_read_only(
    lower: &[PathBuf],
    mount_point: &Path,
    links: &Path,
    user: Option<&PodUserNamespace>,
) -> Result<(), RootfsError> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if is_mounted(mount_point) {
        return Ok(());
    }
    let mapped = |result: std::io::Result<()>| result.map_err(|e| host(mount_point, format!("ID-mapped mount: {e}")));
    match (lower, user) {
        // overlayfs wants two lower layers when it has no upper one.
        ([single], None) => bind_read_only(single, mount_point, flags),
        ([single], Some(user)) => mapped(idmap::bind(single, mount_point, Some(user.fd()), idmap::Access::ReadOnly)),
        (_, None) => mount_chain(lower, None, mount_point, links, flags),
        (_, Some(_)) if lower.len() > MAX_LOWER_LAYERS => Err(RootfsError::TooDeep { layers: lower.len() }),
        (_, Some(user)) => mapped(idmap::overlay(lower, None, user.fd(), mount_point)),
    }
}

fn bind_read_only(source: &Path, mount_point: &Path, flags: MsFlags) -> Result<(), RootfsError> {
    std::fs::create_dir_all(mount_point).map_err(|e| host(mount_point, e))?;
    if is_mounted(mount_point) {
        return Ok(());
    }
    mount(Some(source), mount_point, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| host(mount_point, format!("bind mount: {e}")))?;
    // A bind takes its flags only on a remount.
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags;
    mount(None::<&str>, mount_point, None::<&str>, remount, None::<&str>).map_err(|e| {
        let _ = unmount(mount_point);
        host(mount_point, format!("read-only remount: {e}"))
    })
}

/// A chain whose absolute paths do not fit the one page of mount options (a deep
/// image) is mounted through a directory of short links to its layers (`links/0`,
/// `links/1`, ...), named relative to it from a thread with a working directory
/// of its own: 500 layers then take under 2 KiB.
fn mount_chain(
    lower: &[PathBuf],
    writable: Option<(&Path, &Path)>,
    mount_point: &Path,
    links: &Path,
    flags: MsFlags,
) -> Result<(), RootfsError> {
    if lower.len() > MAX_LOWER_LAYERS {
        return Err(RootfsError::TooDeep { layers: lower.len() });
    }
    std::fs::create_dir_all(mount_point).map_err(|e| host(mount_point, e))?;
    if is_mounted(mount_point) {
        return Ok(());
    }
    let absolute: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    let options = overlay_options(&absolute, writable);
    if options.len() <= MOUNT_OPTIONS_MAX {
        return mount_overlay(mount_point, flags, &options);
    }
    let names = link_layers(lower, links)?;
    let options = overlay_options(&names, writable);
    if options.len() > MOUNT_OPTIONS_MAX {
        return Err(host(mount_point, "the overlay's options exceed a page even through short links"));
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Its own working directory: chdir here moves no other thread's.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|e| host(links, format!("unshare: {e}")))?;
                nix::unistd::chdir(links).map_err(|e| host(links, e))?;
                mount_overlay(mount_point, flags, &options)
            })
            .join()
            .unwrap_or_else(|_| Err(host(mount_point, "the mounting thread panicked")))
    })
}

fn overlay_options(lower: &[String], writable: Option<(&Path, &Path)>) -> String {
    match writable {
        Some((upper, work)) => {
            format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display())
        }
        None => format!("lowerdir={}", lower.join(":")),
    }
}

fn mount_overlay(mount_point: &Path, flags: MsFlags, options: &str) -> Result<(), RootfsError> {
    mount(Some("overlay"), mount_point, Some("overlay"), flags, Some(options))
        .map_err(|e| host(mount_point, format!("overlay mount: {e}")))
}

/// `links/<i>` → `lower[i]`, made afresh; returns the link names in order.
fn link_layers(lower: &[PathBuf], links: &Path) -> Result<Vec<String>, RootfsError> {
    match std::fs::remove_dir_all(links) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(host(links, e)),
        _ => {}
    }
    std::fs::create_dir_all(links).map_err(|e| host(links, e))?;
    let mut names = Vec::with_capacity(lower.len());
    for (i, layer) in lower.iter().enumerate() {
        let name = i.to_string();
        std::os::unix::fs::symlink(layer, links.join(&name)).map_err(|e| host(layer, e))?;
        names.push(name);
    }
    Ok(names)
}

/// Unmounts the rootfs; safe when it is not mounted.
pub fn unmount_rootfs(paths: &RootfsPaths) -> Result<(), RootfsError> {
    unmount(&paths.mount_point)
}

/// Unmounts `mount_point` (lazily: a process may still have it open); safe when
/// it is not mounted or gone.
pub fn unmount(mount_point: &Path) -> Result<(), RootfsError> {
    match umount2(mount_point, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(host(mount_point, e)),
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
        mount_rootfs(&lower, &paths, None).unwrap();
        let _mounted = Mounted(&paths);
        mount_rootfs(&lower, &paths, None).unwrap(); // idempotent
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

    /// Layers `0..count` under a long directory name, so that their absolute
    /// paths overflow a page of mount options long before the kernel's limit.
    fn deep_chain(dir: &Path, count: usize) -> Vec<PathBuf> {
        let base = dir.join("snapshots-with-a-long-name-to-fill-the-mount-options");
        (0..count)
            .map(|i| {
                let layer = base.join(i.to_string()).join("fs");
                std::fs::create_dir_all(&layer).unwrap();
                std::fs::write(layer.join(format!("from-{i}")), i.to_string()).unwrap();
                std::fs::write(layer.join("winner"), i.to_string()).unwrap();
                layer
            })
            .collect()
    }

    #[test]
    fn a_chain_of_the_kernels_500_layers_mounts_though_its_paths_exceed_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let lower = deep_chain(dir.path(), MAX_LOWER_LAYERS);
        let absolute: usize = lower.iter().map(|p| p.as_os_str().len() + 1).sum();
        assert!(absolute > MOUNT_OPTIONS_MAX, "the test's paths must overflow a page ({absolute} bytes)");
        let paths = RootfsPaths { layer: dir.path().join("containers/c1"), mount_point: dir.path().join("run/rootfs") };
        let cwd = std::env::current_dir().ok();
        mount_rootfs(&lower, &paths, None).expect("the deep chain mounts");
        assert_eq!(std::env::current_dir().ok(), cwd, "the mount moved no other thread's working directory");
        let _mounted = Mounted(&paths);
        let merged = &paths.mount_point;
        assert_eq!(std::fs::read_to_string(merged.join("from-0")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(merged.join("from-499")).unwrap(), "499", "the bottom layer is there");
        assert_eq!(std::fs::read_to_string(merged.join("winner")).unwrap(), "0", "the first layer is the top");
    }

    #[test]
    fn a_chain_deeper_than_overlayfs_stacks_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let lower = deep_chain(dir.path(), MAX_LOWER_LAYERS + 1);
        let paths = RootfsPaths { layer: dir.path().join("containers/c1"), mount_point: dir.path().join("run/rootfs") };
        let error = mount_rootfs(&lower, &paths, None).expect_err("501 layers");
        assert!(error.to_string().contains("at most 500"), "{error}");
        assert!(!is_mounted(&paths.mount_point));
    }
}
