//! ID-mapped mounts, for pods in a user namespace of their own (kubelet's
//! `hostUsers: false`), and recursively read-only binds.
//!
//! berth makes them itself, on the host, before any runtime runs: a detached
//! copy of a tree (`open_tree`) is given the pod's user namespace as its ID
//! mapping (`mount_setattr(MOUNT_ATTR_IDMAP)`), then attached where the spec
//! binds it from (`move_mount`); a bind of an ID-mapped mount keeps the
//! mapping. So runc 1.1, which cannot make one, and the internal runtime get
//! the same mounts, and only berth needs the kernel's support (Linux 5.12+;
//! overlayfs lower layers from a detached mount, `lowerdir+`, 6.8+).
//!
//! The overlay itself cannot be ID-mapped; its lower layers can. A container
//! rootfs is an overlay of ID-mapped lower layers and an upper layer owned by
//! the pod's root on the host.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags, fsconfig_create, fsconfig_set_fd,
    fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
};
use serde::{Deserialize, Serialize};

/// One contiguous range of IDs: `container_id..container_id+length` in the
/// pod is `host_id..host_id+length` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host ID of `id` in the pod, if the range holds it.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }

    /// The line `/proc/<pid>/uid_map` and `gid_map` take.
    pub fn proc_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }
}

/// A pod's user namespace: one range of user IDs and one of group IDs, each
/// mapping the pod's root (kubelet sends exactly this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespaceMappings {
    pub uids: IdMapping,
    pub gids: IdMapping,
}

impl UserNamespaceMappings {
    /// Who the pod's root is on the host: the owner its writable layers need.
    pub fn host_root(&self) -> (u32, u32) {
        (self.uids.to_host(0).unwrap_or(self.uids.host_id), self.gids.to_host(0).unwrap_or(self.gids.host_id))
    }
}

/// Whether this kernel makes ID-mapped mounts and overlays of them; asked once.
pub fn supported() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| kernel_has_mount_setattr() && kernel_has_lowerdir_append())
}

/// Whether the kernel has mount_setattr(2), asked once: called on no mount
/// with no attributes, it answers EBADF or EINVAL if it exists.
pub fn kernel_has_mount_setattr() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        // SAFETY: mount_setattr with dirfd -1, an empty NUL-terminated path and
        // a null attribute pointer of size 0 reads nothing and changes nothing.
        let result =
            unsafe { nix::libc::syscall(nix::libc::SYS_mount_setattr, -1, c"".as_ptr(), 0, std::ptr::null::<u8>(), 0) };
        // Only the answers of a kernel that has it: ENOSYS, or EPERM from a
        // seccomp filter around berth, mean no.
        result == 0 || matches!(nix::errno::Errno::last(), nix::errno::Errno::EBADF | nix::errno::Errno::EINVAL)
    })
}

/// overlayfs takes lower layers one by one (`lowerdir+`, Linux 6.8) only on
/// kernels whose overlay also takes them as file descriptors.
fn kernel_has_lowerdir_append() -> bool {
    let Ok(fs) = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else { return false };
    fsconfig_set_string(fs.as_fd(), "lowerdir+", "/").is_ok()
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A pod's user namespace, open, with its mappings: what its ID-mapped
/// mounts map through.
pub struct PodUserNamespace {
    file: std::fs::File,
    pub mappings: UserNamespaceMappings,
}

impl PodUserNamespace {
    /// Opens the pod's pinned user namespace.
    pub fn open(pin: &Path, mappings: UserNamespaceMappings) -> std::io::Result<PodUserNamespace> {
        Ok(PodUserNamespace { file: std::fs::File::open(pin)?, mappings })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Another descriptor of it, for a thread that may outlive the caller's.
    pub fn duplicate(&self) -> std::io::Result<OwnedFd> {
        Ok(self.file.try_clone()?.into())
    }
}

/// Whether a mapped tree may be written through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// A detached copy of the tree at `source` (its submounts too when
/// `recursive`), its IDs mapped through `userns` if given, read-only (all of
/// it) if asked.
pub fn mapped_tree(
    source: &Path,
    userns: Option<BorrowedFd<'_>>,
    recursive: bool,
    access: Access,
) -> std::io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(rustix::fs::CWD, source, flags)?;
    let read_only = if access == Access::ReadOnly { MountAttrFlags::MOUNT_ATTR_RDONLY.bits() as u64 } else { 0 };
    let idmap = if userns.is_some() { MOUNT_ATTR_IDMAP } else { 0 };
    if read_only | idmap == 0 {
        return Ok(tree);
    }
    let attr = MountAttr {
        attr_set: idmap | read_only,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let at_flags = nix::libc::AT_EMPTY_PATH | if recursive { nix::libc::AT_RECURSIVE } else { 0 };
    // SAFETY: mount_setattr reads `attr` (a live, correctly laid out struct of
    // the size passed) and the NUL-terminated empty path; it writes nothing.
    let result = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            at_flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(tree)
}

/// Attaches a detached mount at `target`, which must exist.
fn attach(tree: BorrowedFd<'_>, target: &Path) -> std::io::Result<()> {
    move_mount(tree, "", rustix::fs::CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    Ok(())
}

/// Binds `source` and its submounts at `target` (made as a file or directory
/// like `source`), their IDs mapped through `userns` if given.
pub fn bind(source: &Path, target: &Path, userns: Option<BorrowedFd<'_>>, access: Access) -> std::io::Result<()> {
    if std::fs::metadata(source)?.is_dir() {
        std::fs::create_dir_all(target)?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(target)?;
    }
    attach(mapped_tree(source, userns, true, access)?.as_fd(), target)
}

/// The layers an overlay stacks on its lower ones.
pub struct Writable<'a> {
    pub upper: &'a Path,
    pub work: &'a Path,
}

/// Mounts at `target` an overlay of `lower` (top first), each layer ID-mapped
/// through `userns`, with a writable layer or read-only.
pub fn overlay(
    lower: &[PathBuf],
    writable: Option<Writable<'_>>,
    userns: BorrowedFd<'_>,
    target: &Path,
) -> std::io::Result<()> {
    let fs = step("fsopen overlay", fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC))?;
    // Each detached layer stays open until the overlay is made, which clones
    // it: closing the last descriptor of a detached mount unmounts it.
    let mut trees = Vec::with_capacity(lower.len());
    for layer in lower {
        let tree =
            step(&format!("map {}", layer.display()), mapped_tree(layer, Some(userns), false, Access::ReadOnly))?;
        step(&format!("lower layer {}", layer.display()), fsconfig_set_fd(fs.as_fd(), "lowerdir+", tree.as_fd()))?;
        trees.push(tree);
    }
    let mut attributes = MountAttrFlags::empty();
    match writable {
        Some(Writable { upper, work }) => {
            step("upperdir", fsconfig_set_string(fs.as_fd(), "upperdir", upper))?;
            step("workdir", fsconfig_set_string(fs.as_fd(), "workdir", work))?;
        }
        None => attributes |= MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NOSUID,
    }
    step("create the overlay", fsconfig_create(fs.as_fd()))?;
    drop(trees);
    let flags = FsMountFlags::FSMOUNT_CLOEXEC;
    let mount = step("fsmount", fsmount(fs.as_fd(), flags, attributes | MountAttrFlags::MOUNT_ATTR_NODEV))?;
    std::fs::create_dir_all(target)?;
    step(&format!("attach at {}", target.display()), attach(mount.as_fd(), target))
}

/// Names the step an error came from: a bare EINVAL says nothing.
fn step<T, E: Into<std::io::Error>>(name: &str, result: Result<T, E>) -> std::io::Result<T> {
    result.map_err(|e| {
        let e: std::io::Error = e.into();
        std::io::Error::new(e.kind(), format!("{name}: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_translate_the_pods_ids() {
        let range = IdMapping { container_id: 0, host_id: 65536, length: 65536 };
        assert_eq!(range.to_host(0), Some(65536));
        assert_eq!(range.to_host(65535), Some(131071));
        assert_eq!(range.to_host(65536), None);
        assert_eq!(range.proc_line(), "0 65536 65536\n");
        let shifted = IdMapping { container_id: 1, host_id: 1000, length: 10 };
        assert_eq!(shifted.to_host(0), None);
        let pod = UserNamespaceMappings { uids: range, gids: IdMapping { host_id: 70000, ..range } };
        assert_eq!(pod.host_root(), (65536, 70000));
    }
}

#[cfg(test)]
mod mount_tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    const HOST_ROOT: u32 = 300_000;

    /// A process in a user namespace mapping 0 to `HOST_ROOT`, killed on drop.
    struct Namespace(std::process::Child);

    impl Namespace {
        fn new() -> Namespace {
            let child = std::process::Command::new("unshare").args(["--user", "sleep", "60"]).spawn().unwrap();
            let namespace = Namespace(child);
            let own = std::fs::read_link("/proc/self/ns/user").unwrap();
            let theirs = format!("/proc/{}/ns/user", namespace.0.id());
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_link(&theirs).map_or(true, |ns| ns == own) {
                assert!(std::time::Instant::now() < deadline, "the namespace was never made");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let line = IdMapping { container_id: 0, host_id: HOST_ROOT, length: 65536 }.proc_line();
            for map in ["uid_map", "gid_map"] {
                std::fs::write(format!("/proc/{}/{map}", namespace.0.id()), &line).unwrap();
            }
            namespace
        }

        fn file(&self) -> std::fs::File {
            std::fs::File::open(format!("/proc/{}/ns/user", self.0.id())).unwrap()
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn an_overlay_of_mapped_layers_and_a_mapped_bind() {
        if !supported() {
            eprintln!("skipped: this kernel has no ID-mapped overlay layers");
            return;
        }
        let namespace = Namespace::new();
        let userns = namespace.file();
        let dir = tempfile::tempdir().unwrap();
        let (bottom, top) = (dir.path().join("bottom"), dir.path().join("top"));
        for layer in [&bottom, &top] {
            std::fs::create_dir_all(layer).unwrap();
        }
        std::fs::write(bottom.join("a"), "bottom").unwrap();
        std::fs::write(top.join("b"), "top").unwrap();
        let (upper, work, merged) = (dir.path().join("upper"), dir.path().join("work"), dir.path().join("merged"));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).unwrap();
            std::os::unix::fs::lchown(d, Some(HOST_ROOT), Some(HOST_ROOT)).unwrap();
        }
        overlay(&[top.clone(), bottom.clone()], Some(Writable { upper: &upper, work: &work }), userns.as_fd(), &merged)
            .unwrap();
        let _merged = Unmount(merged.clone());
        // Seen from the host, through the mapping: root's files are the pod's root's.
        assert_eq!(std::fs::metadata(merged.join("a")).unwrap().uid(), HOST_ROOT);
        assert_eq!(std::fs::read_to_string(merged.join("b")).unwrap(), "top");

        let read_only = dir.path().join("read-only");
        overlay(&[top.clone(), bottom.clone()], None, userns.as_fd(), &read_only).unwrap();
        let _read_only = Unmount(read_only.clone());
        assert!(std::fs::write(read_only.join("c"), "x").is_err(), "no writable layer");

        let bound = dir.path().join("bound");
        bind(&bottom, &bound, Some(userns.as_fd()), Access::ReadOnly).unwrap();
        let _bound = Unmount(bound.clone());
        assert_eq!(std::fs::metadata(bound.join("a")).unwrap().uid(), HOST_ROOT);
        assert!(std::fs::write(bound.join("c"), "x").is_err(), "read-only");
    }
}
