//! On a cgroup v1 "hybrid" host, systemd also keeps a cgroup v2 hierarchy at
//! `/sys/fs/cgroup/unified` (and the v1 `name=systemd` one) to track processes.
//! runc puts a container there too, at its cgroups path; libcontainer's v1
//! manager does not, so the internal runtime does it after create, and removes
//! those directories at delete.

use std::path::{Path, PathBuf};

/// The tracking hierarchies of a hybrid host that exist here.
fn tracking_hierarchies() -> impl Iterator<Item = PathBuf> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|root| root.join("cgroup.procs").exists())
}

/// The container's directory in each tracking hierarchy, for its spec's cgroups path.
fn dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let relative = crate::stats::cgroup::hierarchy_path(cgroups_path);
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() || Path::new(relative).components().any(|c| c == std::path::Component::ParentDir) {
        return Vec::new();
    }
    tracking_hierarchies().map(|root| root.join(relative)).collect()
}

/// Moves `pid` into its cgroup in each tracking hierarchy. Best effort: the
/// resource controllers (v1) are what limit the container.
pub(super) fn join(cgroups_path: &str, pid: i32) {
    for dir in dirs(cgroups_path) {
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(dir.join("cgroup.procs"), pid.to_string())) {
            tracing::debug!(dir = %dir.display(), error = %e, "joining a hybrid host's tracking cgroup");
        }
    }
}

/// Removes the container's tracking cgroups, once it has no process left.
pub(super) fn remove(cgroups_path: &str) {
    for dir in dirs(cgroups_path) {
        let _ = std::fs::remove_dir(&dir);
    }
}
