//! Puts a pod's infra process under the pod's cgroup parent, as containerd puts
//! its pause container there: `<parent>/berth-<sandbox id>` in every cgroup
//! hierarchy of the host (each v1 controller and the unified one on a hybrid
//! host such as these VMs; the one unified hierarchy on a pure v2 host).
//!
//! With the systemd driver the parent is a slice name; its path is expanded
//! the way systemd lays slices out (`a-b.slice` under `a.slice`), and the
//! process is placed through the cgroup filesystem rather than through a
//! transient systemd unit (berth does not speak D-Bus).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::SandboxError;
use crate::config::CgroupDriver;
use crate::stats::cgroup::{MountedHierarchy, mounted_hierarchies};

/// `kubepods-burstable-pod1.slice` -> `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`
pub fn expand_slice(slice: &str) -> String {
    let name = slice.trim_end_matches(".slice");
    let mut path = Vec::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    path.join("/")
}

pub(super) fn relative_parent(parent: &str, driver: CgroupDriver) -> String {
    match driver {
        CgroupDriver::Systemd => expand_slice(parent),
        CgroupDriver::Cgroupfs => parent.trim_start_matches('/').to_string(),
    }
}

/// Creates `<parent>/<name>` in each hierarchy and moves `pid` into it; returns
/// the directories made, for `remove`.
pub fn place(parent: &str, driver: CgroupDriver, name: &str, pid: i32) -> Result<Vec<PathBuf>, SandboxError> {
    let relative = relative_parent(parent, driver);
    let mut made = Vec::new();
    for MountedHierarchy { root, cpuset } in mounted_hierarchies() {
        let dir = root.join(&relative).join(name);
        let placed = create(&root, &dir, cpuset).and_then(|()| {
            made.push(dir.clone());
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        });
        if let Err(e) = placed {
            remove(&made);
            return Err(SandboxError::host(format!("cgroup {}", dir.display()), e));
        }
    }
    Ok(made)
}

/// mkdir -p, filling a v1 cpuset's `cpus` and `mems` from its parent on the
/// way down: a fresh cpuset has neither and refuses tasks.
fn create(root: &Path, dir: &Path, cpuset: bool) -> std::io::Result<()> {
    let mut current = root.to_path_buf();
    for component in dir.strip_prefix(root).unwrap_or(dir).components() {
        let parent = current.clone();
        current.push(component);
        if !current.exists() {
            std::fs::create_dir(&current)?;
            if cpuset {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file))?;
                    std::fs::write(current.join(file), value.trim())?;
                }
            }
        }
    }
    Ok(())
}

/// Removes the infra cgroups once their process has gone (rmdir fails while a
/// dying process is still listed; it is retried briefly).
pub fn remove(dirs: &[PathBuf]) {
    for dir in dirs {
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::trace!(dir = %dir.display(), error = %e, "cgroup still busy");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(expand_slice("kubepods.slice"), "kubepods.slice");
        assert_eq!(
            expand_slice("kubepods-burstable-pod1.slice"),
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
        );
        assert_eq!(relative_parent("/kubepods/pod1", CgroupDriver::Cgroupfs), "kubepods/pod1");
    }
}
