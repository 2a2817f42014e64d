//! Device nodes made in the container, and the device cgroup that lets it use
//! them. Everything is denied but what is listed (runc adds the standard
//! `/dev/null`, `/dev/zero`, ... itself); a privileged container gets every
//! device of the host's `/dev`, all allowed, as the CRI asks.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::cri::v1::Device as CriDevice;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::SpecError;
use super::host_fs::{self, HOST_PATH_TIMEOUT};

/// Directories of the host's `/dev` not copied into a privileged container:
/// the container gets its own pts, shm and mqueue, and the rest are not
/// devices (containerd and runc skip the same).
const SKIPPED_DEV_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

pub(super) struct Devices {
    pub nodes: Vec<LinuxDevice>,
    pub cgroup_rules: Vec<LinuxDeviceCgroup>,
}

pub(super) fn build(devices: &[CriDevice], privileged: bool) -> Result<Devices, SpecError> {
    let (mut nodes, mut cgroup_rules) = if privileged {
        (host_devices(Path::new("/dev"))?, vec![device_rule(true, None, "rwm")])
    } else {
        (Vec::new(), vec![device_rule(false, None, "rwm")])
    };
    for (index, device) in devices.iter().enumerate() {
        let access = permissions(index, &device.permissions)?;
        for node in config_device(index, device)? {
            cgroup_rules.push(device_rule(true, Some(&node), access));
            // A listed device replaces a host one at the same path.
            nodes.retain(|existing| existing.path() != node.path());
            nodes.push(node);
        }
    }
    Ok(Devices { nodes, cgroup_rules })
}

/// `r`, `w` and `m` in any combination; empty means all three (kubelet's
/// device plugins may leave it unset).
fn permissions(index: usize, permissions: &str) -> Result<&str, SpecError> {
    if permissions.is_empty() {
        return Ok("rwm");
    }
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::invalid(
            format!("devices[{index}].permissions"),
            format!("{permissions:?}: only r, w and m are allowed"),
        ));
    }
    Ok(permissions)
}

/// One CRI device: a device node, or a directory whose device nodes all go
/// under `container_path` (containerd's rule). Symlinks (`/dev/disk/by-id/..`)
/// are followed.
fn config_device(index: usize, device: &CriDevice) -> Result<Vec<LinuxDevice>, SpecError> {
    let field = |name: &str| format!("devices[{index}].{name}");
    let container_path = Path::new(&device.container_path);
    if !container_path.is_absolute() {
        return Err(SpecError::invalid(field("container_path"), format!("{container_path:?} is not absolute")));
    }
    let host_path = Path::new(&device.host_path);
    let (path, container_path, host_path_field) = (host_path.to_path_buf(), container_path.to_path_buf(), field("host_path"));
    host_fs::bounded(host_path, HOST_PATH_TIMEOUT, move || {
        let metadata = std::fs::metadata(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpecError::invalid(&host_path_field, format!("{path:?} does not exist")),
            _ => SpecError::io(path.display().to_string(), e),
        })?;
        if metadata.is_dir() {
            let mut nodes = host_devices(&path)?;
            for node in &mut nodes {
                let relative = node.path().strip_prefix(&path).unwrap_or(node.path()).to_path_buf();
                node.set_path(container_path.join(relative));
            }
            return Ok(nodes);
        }
        match device_node(&container_path, &metadata) {
            Some(node) => Ok(vec![node]),
            None => Err(SpecError::invalid(host_path_field, format!("{path:?} is not a device"))),
        }
    })
}

/// Every device node under `dir`, at its host path; symlinks are not followed.
fn host_devices(dir: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    let mut nodes = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| SpecError::io(dir.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SpecError::io(dir.display().to_string(), e))?;
        let path = entry.path();
        let name = entry.file_name();
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            // Devices come and go (hotplug): one gone since the listing is skipped.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SpecError::io(path.display().to_string(), e)),
        };
        if metadata.is_dir() {
            if !SKIPPED_DEV_DIRS.iter().any(|skipped| name == *skipped) {
                nodes.extend(host_devices(&path)?);
            }
        } else if name != "console"
            && let Some(node) = device_node(&path, &metadata)
        {
            // The container's console is its own terminal, not the host's.
            nodes.push(node);
        }
    }
    Ok(nodes)
}

fn device_node(path: &Path, metadata: &std::fs::Metadata) -> Option<LinuxDevice> {
    let file_type = metadata.file_type();
    let kind = if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = metadata.rdev();
    let mut node = LinuxDevice::default();
    node.set_path(PathBuf::from(path))
        .set_typ(kind)
        .set_major(i64::try_from(nix::sys::stat::major(rdev)).ok()?)
        .set_minor(i64::try_from(nix::sys::stat::minor(rdev)).ok()?)
        .set_file_mode(Some(metadata.mode() & 0o7777))
        .set_uid(Some(metadata.uid()))
        .set_gid(Some(metadata.gid()));
    Some(node)
}

/// A device cgroup rule; without a node it covers every device.
fn device_rule(allow: bool, node: Option<&LinuxDevice>, access: &str) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow)
        .set_typ(node.map(|node| node.typ()))
        .set_major(node.map(|node| node.major()))
        .set_minor(node.map(|node| node.minor()))
        .set_access(Some(access.to_string()));
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(host_path: &str, container_path: &str, permissions: &str) -> CriDevice {
        CriDevice {
            host_path: host_path.into(),
            container_path: container_path.into(),
            permissions: permissions.into(),
        }
    }

    #[test]
    fn unprivileged_denies_all_but_listed_devices() {
        let got = build(&[device("/dev/null", "/dev/mynull", "rw")], false).unwrap();
        assert_eq!(got.nodes.len(), 1);
        let node = &got.nodes[0];
        assert_eq!(node.path(), Path::new("/dev/mynull"));
        assert_eq!((node.typ(), node.major(), node.minor()), (LinuxDeviceType::C, 1, 3));
        let rules: Vec<String> =
            got.cgroup_rules.iter().map(|r| format!("{} {}", if r.allow() { "allow" } else { "deny" }, r)).collect();
        assert_eq!(rules, ["deny a *:* rwm", "allow c 1:3 rw"]);
    }

    #[test]
    fn privileged_gets_host_devices_all_allowed() {
        let got = build(&[], true).unwrap();
        assert!(got.nodes.iter().any(|n| n.path() == Path::new("/dev/null")));
        assert!(!got.nodes.iter().any(|n| n.path().starts_with("/dev/pts")));
        assert!(!got.nodes.iter().any(|n| n.path() == Path::new("/dev/console")));
        assert_eq!(got.cgroup_rules.len(), 1);
        assert!(got.cgroup_rules[0].allow());
    }

    #[test]
    fn missing_or_non_device_paths_are_invalid() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let file = file.path().display().to_string();
        for (host_path, expected) in
            [("/dev/does-not-exist", "devices[0].host_path"), (file.as_str(), "devices[0].host_path")]
        {
            let err = build(&[device(host_path, "/dev/x", "rw")], false).err().unwrap();
            assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == expected), "{err}");
        }
        let err = build(&[device("/dev/null", "/dev/x", "rwx")], false).err().unwrap();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == "devices[0].permissions"), "{err}");
    }
}
