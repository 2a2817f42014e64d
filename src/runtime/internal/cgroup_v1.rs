//! cgroup v1 hosts (these VMs are "hybrid": v1 controllers, plus the v2
//! hierarchy systemd keeps at `/sys/fs/cgroup/unified`), where libcontainer 0.7
//! falls short of runc twice:
//! - its v1 manager puts the container in the resource controllers only, not in
//!   systemd's tracking hierarchies (`name=systemd`, `unified`), where runc
//!   puts it too;
//! - its `cgroup` mount looks the container's cgroups up as
//!   `/proc/<PID in the container's PID namespace>` of the *host's* /proc: a
//!   different process, or none (then a container in a pod that shares its PID
//!   namespace cannot start at all).
//!
//! So the `cgroup` mount is replaced in the spec by what runc mounts for it: a
//! tmpfs, with the container's own directory of each hierarchy bound under it.
//! Before create those directories are made; after it the init joins every
//! hierarchy (those libcontainer joined already are no-ops); at delete the
//! directories go. On a pure v2 host none of this applies.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use crate::stats::cgroup::{hierarchy_path, mounted_hierarchies};

fn is_v1_host() -> bool {
    !crate::stats::cgroup::is_unified_host()
}

/// The container's directory in each hierarchy, with the hierarchy's name (the
/// base name of its mount point: `memory`, `cpu,cpuacct`, `systemd`, `unified`).
fn dirs(cgroups_path: &str) -> Vec<(String, PathBuf)> {
    let path = hierarchy_path(cgroups_path);
    let relative = path.trim_start_matches('/');
    if !is_v1_host()
        || relative.is_empty()
        || Path::new(relative).components().any(|c| c == std::path::Component::ParentDir)
    {
        return Vec::new();
    }
    mounted_hierarchies()
        .into_iter()
        .filter_map(|hierarchy| {
            let name = hierarchy.root.file_name()?.to_string_lossy().into_owned();
            Some((name, hierarchy.root.join(relative)))
        })
        .collect()
}

/// A systemd-driver cgroups path (`slice:prefix:name`) as the directory systemd
/// would give it: libcgroups' v1 manager takes paths only (its systemd manager
/// is for v2), and berth places pods through the filesystem on v1 alike.
/// Returns whether the spec changed.
pub(super) fn systemd_path_as_directory(spec: &mut Spec) -> bool {
    let Some(linux) = spec.linux_mut() else { return false };
    let Some(path) = linux.cgroups_path().as_ref().map(|path| path.to_string_lossy().into_owned()) else {
        return false;
    };
    if !is_v1_host() || !path.contains(':') {
        return false;
    }
    linux.set_cgroups_path(Some(Path::new("/").join(hierarchy_path(&path))));
    true
}

/// Makes the container's directory in every hierarchy, for the binds below.
pub(super) fn prepare(cgroups_path: &str) -> std::io::Result<()> {
    dirs(cgroups_path).iter().try_for_each(|(_, dir)| std::fs::create_dir_all(dir))
}

/// Replaces each `cgroup` mount of the spec with a tmpfs holding the
/// container's directory of each hierarchy, read-only when the mount was.
pub(super) fn replace_cgroup_mounts(spec: &mut Spec, cgroups_path: &str) {
    replace_with(spec, &dirs(cgroups_path));
}

fn replace_with(spec: &mut Spec, dirs: &[(String, PathBuf)]) -> bool {
    let Some(mounts) = spec.mounts().clone() else { return false };
    if dirs.is_empty() || !mounts.iter().any(is_cgroup) {
        return false;
    }
    let mut read_only = Vec::new();
    let mut replaced = Vec::with_capacity(mounts.len() + dirs.len());
    for mount in mounts {
        if !is_cgroup(&mount) {
            replaced.push(mount);
            continue;
        }
        let ro = mount.options().iter().flatten().any(|option| option == "ro");
        let mut tmpfs = Mount::default();
        tmpfs.set_destination(mount.destination().clone()).set_typ(Some("tmpfs".into()));
        tmpfs.set_source(Some("tmpfs".into())).set_options(Some(strings(&["nosuid", "noexec", "nodev", "mode=755"])));
        replaced.push(tmpfs);
        for (name, dir) in dirs {
            // A comounted hierarchy (`cpu,cpuacct`) is found by either name too;
            // runc links those names, a bind of the same directory reads alike.
            let names = std::iter::once(name.as_str()).chain(name.split(',').filter(|_| name.contains(',')));
            for name in names {
                let mut bind = Mount::default();
                let mut options = strings(&["bind", "nosuid", "noexec", "nodev", "rprivate"]);
                if ro {
                    options.push("ro".into());
                }
                bind.set_destination(mount.destination().join(name)).set_typ(Some("bind".into()));
                bind.set_source(Some(dir.clone())).set_options(Some(options));
                replaced.push(bind);
            }
        }
        if ro {
            read_only.push(mount.destination().display().to_string());
        }
    }
    spec.set_mounts(Some(replaced));
    // The tmpfs itself: libcontainer remounts these read-only after every mount.
    if let Some(linux) = spec.linux_mut() {
        let mut paths = linux.readonly_paths().clone().unwrap_or_default();
        paths.extend(read_only);
        linux.set_readonly_paths(Some(paths));
    }
    true
}

fn is_cgroup(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("cgroup")
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// Moves `pid` into its directory in every hierarchy. Best effort: the ones
/// that limit the container, libcontainer has joined already.
pub(super) fn join(cgroups_path: &str, pid: i32) {
    for (_, dir) in dirs(cgroups_path) {
        if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            tracing::debug!(dir = %dir.display(), error = %e, "joining a v1 host's cgroup");
        }
    }
}

/// Removes the container's directories, once it has no process left.
pub(super) fn remove(cgroups_path: &str) {
    for (_, dir) in dirs(cgroups_path) {
        let _ = std::fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxBuilder, MountBuilder, SpecBuilder};

    use super::*;

    #[test]
    fn the_cgroup_mount_becomes_a_tmpfs_of_the_containers_own_directories() {
        let cgroup = MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(strings(&["nosuid", "ro"]))
            .build()
            .unwrap();
        let other = MountBuilder::default().destination("/proc").typ("proc").source("proc").build().unwrap();
        let linux = LinuxBuilder::default().build().unwrap();
        let mut spec = SpecBuilder::default().mounts(vec![other.clone(), cgroup]).linux(linux).build().unwrap();
        let dirs = [
            ("memory".to_string(), PathBuf::from("/sys/fs/cgroup/memory/pod/c")),
            ("cpu,cpuacct".to_string(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/pod/c")),
        ];
        assert!(replace_with(&mut spec, &dirs));

        let mounts = spec.mounts().clone().unwrap();
        let summary: Vec<(String, String, String)> = mounts
            .iter()
            .map(|m| {
                let source = m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default();
                (m.destination().display().to_string(), m.typ().clone().unwrap_or_default(), source)
            })
            .collect();
        let row = |d: &str, t: &str, s: &str| (d.to_string(), t.to_string(), s.to_string());
        assert_eq!(
            summary,
            [
                row("/proc", "proc", "proc"),
                row("/sys/fs/cgroup", "tmpfs", "tmpfs"),
                row("/sys/fs/cgroup/memory", "bind", "/sys/fs/cgroup/memory/pod/c"),
                row("/sys/fs/cgroup/cpu,cpuacct", "bind", "/sys/fs/cgroup/cpu,cpuacct/pod/c"),
                row("/sys/fs/cgroup/cpu", "bind", "/sys/fs/cgroup/cpu,cpuacct/pod/c"),
                row("/sys/fs/cgroup/cpuacct", "bind", "/sys/fs/cgroup/cpu,cpuacct/pod/c"),
            ]
        );
        assert!(mounts[2..].iter().all(|m| m.options().iter().flatten().any(|o| o == "ro")), "binds read-only");
        let read_only = spec.linux().as_ref().and_then(|l| l.readonly_paths().clone()).unwrap_or_default();
        assert!(read_only.contains(&"/sys/fs/cgroup".to_string()), "and the tmpfs: {read_only:?}");
    }

    #[test]
    fn a_spec_without_a_cgroup_mount_is_left_alone() {
        let mut spec = SpecBuilder::default().mounts(vec![]).build().unwrap();
        assert!(!replace_with(&mut spec, &[("memory".into(), PathBuf::from("/x"))]));
    }
}
