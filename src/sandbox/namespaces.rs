//! A pod's network, IPC and UTS namespaces, made by berth and pinned by bind
//! mounts (as cri-o's pinns does), so no process is needed to keep them alive.
//!
//! Namespaces are made on a dedicated OS thread: `unshare` of these three kinds
//! moves only the calling thread, which then bind-mounts its own namespace
//! files onto the pins and exits. A pool thread is never used, since it would
//! go back to the pool inside the pod's namespaces.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use super::error::SandboxError;
use super::record::PodNamespaces;
use crate::idmap::UserNamespaceMappings;

pub struct NamespaceRequest<'a> {
    pub dir: &'a Path,
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: &'a str,
    pub shm_size: Option<u64>,
    /// The pod's own user namespace, owning the others; none for the node's.
    pub user: Option<&'a UserNamespaceMappings>,
}

/// Makes and pins the requested namespaces, with `lo` up in a new netns, and
/// the pod's `/dev/shm`. On error, whatever was made is released again.
pub fn create(request: &NamespaceRequest) -> Result<PodNamespaces, SandboxError> {
    std::fs::create_dir_all(request.dir).map_err(|e| SandboxError::host(request.dir.display().to_string(), e))?;
    let mut pins = PodNamespaces::default();
    let kinds: Vec<(&str, CloneFlags)> = [
        (request.network, "net", CloneFlags::CLONE_NEWNET),
        (request.ipc, "ipc", CloneFlags::CLONE_NEWIPC),
        (request.uts, "uts", CloneFlags::CLONE_NEWUTS),
    ]
    .into_iter()
    .filter(|(wanted, _, _)| *wanted)
    .map(|(_, name, flag)| (name, flag))
    .collect();
    for (name, _) in &kinds {
        let path = request.dir.join(name);
        match *name {
            "net" => pins.net = Some(path),
            "ipc" => pins.ipc = Some(path),
            _ => pins.uts = Some(path),
        }
    }
    let hostname = request.uts.then_some(request.hostname);
    let pinned = match request.user {
        Some(mappings) => {
            pins.user = Some(request.dir.join("user"));
            super::userns::pin_in_user_namespace(&kinds, request.dir, hostname, mappings)
        }
        None => pin_new_namespaces(&kinds, request.dir, hostname),
    };
    // The pod's root owns its shared memory, in a pod of its own user namespace.
    let shm_owner = request.user.map(UserNamespaceMappings::host_root);
    let lo_up = |()| pins.net.as_deref().map_or(Ok(()), super::loopback::bring_up);
    let result = pinned.and_then(lo_up).and_then(|()| match request.shm_size {
        Some(size) => mount_shm(&request.dir.join("shm"), size, shm_owner).map(|path| pins.shm = Some(path)),
        None => Ok(()),
    });
    if let Err(e) = result {
        release(&pins);
        return Err(e);
    }
    Ok(pins)
}

fn pin_new_namespaces(kinds: &[(&str, CloneFlags)], dir: &Path, hostname: Option<&str>) -> Result<(), SandboxError> {
    if kinds.is_empty() {
        return Ok(());
    }
    let flags = kinds.iter().fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
    let targets: Vec<(String, PathBuf)> = kinds.iter().map(|(name, _)| (name.to_string(), dir.join(name))).collect();
    let hostname = hostname.map(str::to_string);
    let worker = std::thread::Builder::new().name("berth-pinns".into()).spawn(move || -> Result<(), SandboxError> {
        unshare(flags).map_err(|e| SandboxError::host("unshare pod namespaces", e))?;
        if let Some(hostname) = &hostname {
            nix::unistd::sethostname(hostname).map_err(|e| SandboxError::host("sethostname", e))?;
        }
        for (name, target) in &targets {
            pin(Path::new(&format!("/proc/thread-self/ns/{name}")), target, name)?;
        }
        Ok(())
    });
    let worker = worker.map_err(|e| SandboxError::host("spawn namespace thread", e))?;
    worker.join().map_err(|_| SandboxError::host("namespace thread", "panicked"))?
}

/// Keeps the namespace at `source` (a `/proc/.../ns/<name>` file) alive by a
/// bind mount on `target`.
pub(super) fn pin(source: &Path, target: &Path, name: &str) -> Result<(), SandboxError> {
    File::create(target).map_err(|e| SandboxError::host(target.display().to_string(), e))?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| SandboxError::host(format!("pin {name} namespace at {}", target.display()), e))
}

fn mount_shm(path: &Path, size: u64, owner: Option<(u32, u32)>) -> Result<PathBuf, SandboxError> {
    std::fs::create_dir_all(path).map_err(|e| SandboxError::host(path.display().to_string(), e))?;
    let mut options = format!("mode=1777,size={size}");
    if let Some((uid, gid)) = owner {
        options.push_str(&format!(",uid={uid},gid={gid}"));
    }
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options.as_str()),
    )
    .map_err(|e| SandboxError::host(format!("mount pod shm at {}", path.display()), e))?;
    Ok(path.to_path_buf())
}

/// Unmounts the pins and the shm; safe to call again. The namespaces die once
/// nothing else (a container, a `setns`'d thread) holds them.
pub fn release(pins: &PodNamespaces) {
    for path in [&pins.shm, &pins.net, &pins.ipc, &pins.uts, &pins.user].into_iter().flatten() {
        unmount_and_remove(path);
    }
}

fn unmount_and_remove(path: &Path) {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot unmount"),
    }
    let removed = if path.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove");
    }
}

/// Whether `path` is still a mounted namespace pin (it is gone after a reboot).
pub fn is_pinned(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(pin), Ok(dir)) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata).unwrap_or(Err(std::io::ErrorKind::NotFound.into())),
    ) else {
        return false;
    };
    // A bind-mounted nsfs file lives on another device than its directory.
    pin.dev() != dir.dev()
}

/// Writes sysctls inside the pod's namespaces, from a thread that joins them,
/// after the network is set up (so interface sysctls can name eth0).
pub fn apply_sysctls(pins: &PodNamespaces, sysctls: &BTreeMap<String, String>) -> Result<(), SandboxError> {
    if sysctls.is_empty() {
        return Ok(());
    }
    let net = pins.net.clone();
    let ipc = pins.ipc.clone();
    let sysctls = sysctls.clone();
    let worker = std::thread::Builder::new().name("berth-sysctl".into()).spawn(move || -> Result<(), SandboxError> {
        for (pin, flag) in [(net, CloneFlags::CLONE_NEWNET), (ipc, CloneFlags::CLONE_NEWIPC)] {
            if let Some(pin) = pin {
                let file = File::open(&pin).map_err(|e| SandboxError::host(pin.display().to_string(), e))?;
                setns(file.as_fd(), flag).map_err(|e| SandboxError::host(format!("join {}", pin.display()), e))?;
            }
        }
        for (name, value) in &sysctls {
            let path = Path::new("/proc/sys").join(super::sysctls::to_path(name));
            std::fs::write(&path, value).map_err(|e| SandboxError::InvalidArgument {
                field: format!("linux.sysctls[{name}]"),
                reason: format!("cannot set to {value:?}: {e}"),
            })?;
        }
        Ok(())
    });
    let worker = worker.map_err(|e| SandboxError::host("spawn sysctl thread", e))?;
    worker.join().map_err(|_| SandboxError::host("sysctl thread", "panicked"))?
}
