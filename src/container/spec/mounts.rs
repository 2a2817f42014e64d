//! The container's mounts, in containerd's order: the default filesystems
//! (`/proc`, `/dev`, `/sys`, ...), then the pod's files and the CRI mounts as
//! binds, the shallower destinations first so that `/a` never hides `/a/b`.
//! A bind onto a default's destination replaces that default, and a bind onto
//! `/dev` replaces every default under it.

use std::collections::BTreeSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Once;

use crate::container::staging::{STAGED_BINDS, staging_point};
use crate::cri::v1::{IdMapping, Mount as CriMount, MountPropagation};
use crate::idmap::Access;
use oci_spec::runtime::Mount;

use super::host_fs::{self, HOST_PATH_TIMEOUT};
use super::{SpecError, SpecInput};
use crate::sandbox::{NamespaceMode, SandboxRecord};

/// Size of a private `/dev/shm` (containerd's and Docker's 64 MiB).
const SHM_OPTIONS: &[&str] = &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"];
const HOST_SHM: &str = "/dev/shm";

pub(super) struct Mounts {
    pub mounts: Vec<Mount>,
    /// `rshared` / `rslave` when a bind needs the rootfs to propagate so;
    /// None leaves the runtime's default, `rprivate`.
    pub rootfs_propagation: Option<String>,
}

pub(super) fn build(input: &SpecInput, privileged: bool, readonly_rootfs: bool) -> Result<Mounts, SpecError> {
    let mut rootfs_propagation = None;
    let mut mountinfo = MountInfo::default();
    let mut binds = Vec::new();
    for (index, mount) in input.config.mounts.iter().enumerate() {
        let propagation = propagation(index, mount, privileged)?;
        let bind = cri_bind(index, mount, propagation, input, &mut mountinfo)?;
        rootfs_propagation = stronger(rootfs_propagation, propagation);
        binds.push(bind);
    }
    let taken: BTreeSet<PathBuf> = binds.iter().map(|bind| clean(bind.destination())).collect();
    binds.extend(pod_mounts(input.sandbox, readonly_rootfs).into_iter().filter(|m| !taken.contains(m.destination())));
    // Stable: among equally deep destinations, the config's order stands.
    binds.sort_by_key(|bind| depth(bind.destination()));

    let mut mounts = default_mounts(privileged, &taken);
    mounts.extend(binds);
    Ok(Mounts { mounts, rootfs_propagation: rootfs_propagation.and_then(rootfs_option).map(str::to_string) })
}

/// The default filesystems not replaced by a bind. `/sys` and its cgroups are
/// read-only but for privileged containers, as the CRI asks.
fn default_mounts(privileged: bool, taken: &BTreeSet<PathBuf>) -> Vec<Mount> {
    let ro = if privileged { "rw" } else { "ro" };
    let defaults = [
        ("/proc", "proc", "proc", vec!["nosuid", "noexec", "nodev"]),
        ("/dev", "tmpfs", "tmpfs", vec!["nosuid", "strictatime", "mode=755", "size=65536k"]),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            vec!["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        ("/dev/mqueue", "mqueue", "mqueue", vec!["nosuid", "noexec", "nodev"]),
        ("/sys", "sysfs", "sysfs", vec!["nosuid", "noexec", "nodev", ro]),
        ("/sys/fs/cgroup", "cgroup", "cgroup", vec!["nosuid", "noexec", "nodev", "relatime", ro]),
    ];
    let dev_taken = taken.contains(Path::new("/dev"));
    let replaced =
        |destination: &str| taken.contains(Path::new(destination)) || (dev_taken && destination.starts_with("/dev/"));
    defaults
        .into_iter()
        .filter(|(destination, ..)| !replaced(destination))
        .map(|(destination, kind, source, options)| mount(destination, kind, source, &options))
        .collect()
}

/// `/etc/hostname`, `/etc/resolv.conf` and `/dev/shm` from the pod. The files
/// are read-only exactly when the rootfs is (containerd's rule).
fn pod_mounts(sandbox: &SandboxRecord, readonly_rootfs: bool) -> Vec<Mount> {
    let file_access = if readonly_rootfs { "ro" } else { "rw" };
    let file_options = ["rbind", "rprivate", file_access];
    let shm_options = ["rbind", "rprivate", "rw"];
    let shm = match (&sandbox.namespaces.shm, sandbox.namespace_modes.ipc) {
        (Some(pod_shm), _) => bind_mount(pod_shm, Path::new("/dev/shm"), &shm_options),
        // A pod on the node's IPC namespace shares the node's POSIX shared
        // memory too (containerd and cri-o bind the host's /dev/shm).
        (None, NamespaceMode::Node) => bind_mount(Path::new(HOST_SHM), Path::new("/dev/shm"), &shm_options),
        (None, _) => mount("/dev/shm", "tmpfs", "shm", SHM_OPTIONS),
    };
    vec![
        shm,
        bind_mount(&sandbox.hostname_file, Path::new("/etc/hostname"), &file_options),
        bind_mount(&sandbox.resolv_conf, Path::new("/etc/resolv.conf"), &file_options),
    ]
}

/// The propagation a CRI mount asks for; Bidirectional only for privileged
/// containers (it lets the container mount onto the host).
fn propagation(index: usize, mount: &CriMount, privileged: bool) -> Result<MountPropagation, SpecError> {
    let field = || format!("mounts[{index}].propagation");
    let propagation = MountPropagation::try_from(mount.propagation)
        .map_err(|_| SpecError::invalid(field(), format!("unknown propagation {}", mount.propagation)))?;
    if propagation == MountPropagation::PropagationBidirectional && !privileged {
        return Err(SpecError::invalid(field(), "Bidirectional propagation needs a privileged container"));
    }
    Ok(propagation)
}

/// A CRI mount as an OCI bind: the host path made if missing (kubelet's
/// hostPath rule, and containerd's) and its symlinks followed.
fn cri_bind(
    index: usize,
    mount: &CriMount,
    propagation: MountPropagation,
    input: &SpecInput,
    mountinfo: &mut MountInfo,
) -> Result<Mount, SpecError> {
    let field = |name: &str| format!("mounts[{index}].{name}");
    refuse_unsupported(mount, &field)?;
    let destination = Path::new(&mount.container_path);
    if !destination.is_absolute() {
        return Err(SpecError::invalid(field("container_path"), format!("{destination:?} is not absolute")));
    }
    if mount.recursive_read_only {
        if !mount.readonly || propagation != MountPropagation::PropagationPrivate {
            return Err(SpecError::invalid(
                field("recursive_read_only"),
                "needs readonly set and propagation PRIVATE, as the CRI requires",
            ));
        }
        // kubelet asks only of a handler whose features say it can; anyone else
        // gets a clear refusal rather than a mount that is read-only on top only.
        if !input.features.recursive_read_only_mounts {
            return Err(SpecError::invalid(
                field("recursive_read_only"),
                "the pod's runtime handler cannot make recursive read-only mounts (see its features in Status)",
            ));
        }
    }
    let source = match input.staged.get(&index) {
        Some(mounted_image) => mounted_image.clone(),
        None if mount.host_path.is_empty() => return Err(SpecError::invalid(field("host_path"), "empty")),
        None => {
            let source = existing_source(Path::new(&mount.host_path), &field("host_path"))?;
            staged_bind(index, mount, propagation, source, input)?
        }
    };
    mountinfo.check(&source, propagation, &field("propagation"))?;
    if mount.selinux_relabel && input.host.selinux {
        warn_relabel_unsupported();
    }
    let options = ["rbind", propagation_option(propagation), if mount.readonly { "ro" } else { "rw" }];
    Ok(bind_mount(&source, destination, &options))
}

/// Extra mount options need support berth does not have yet.
fn refuse_unsupported(mount: &CriMount, field: &dyn Fn(&str) -> String) -> Result<(), SpecError> {
    // Not advertised in the handlers' features, so kubelet sends none; another
    // client's must not be dropped silently.
    if !mount.mount_options.is_empty() {
        return Err(SpecError::invalid(field("mount_options"), "extra bind mount options are not supported"));
    }
    Ok(())
}

/// The host path as berth stages it for the runtime to bind (under the run
/// directory, see `container/staging.rs`), when the runtime cannot be asked:
/// - kubelet puts a pod's user namespace mappings on every mount of a pod that
///   has one: the tree is ID-mapped through the pod's user namespace, so that
///   the pod's root owns what the host's root owns;
/// - a recursive read-only mount is made read-only all the way down here, so
///   every handler can have one (runc 1.1 cannot make it).
///
/// Returns what to bind: `source` itself when neither applies.
fn staged_bind(
    index: usize,
    mount: &CriMount,
    propagation: MountPropagation,
    source: PathBuf,
    input: &SpecInput,
) -> Result<PathBuf, SpecError> {
    let mapped = !(mount.uid_mappings.is_empty() && mount.gid_mappings.is_empty());
    if !mapped && !mount.recursive_read_only {
        return Ok(source);
    }
    let userns = if mapped { Some(pod_user_namespace(index, mount, propagation, input)?) } else { None };
    let target = staging_point(input.run_dir, STAGED_BINDS, index);
    // A plain read-only mount is read-only on top only: the spec's `ro` does that.
    let access = if mount.recursive_read_only { Access::ReadOnly } else { Access::ReadWrite };
    let (from, to) = (source.clone(), target.clone());
    host_fs::bounded(&source, HOST_PATH_TIMEOUT, move || {
        let userns = userns.as_ref().map(std::os::fd::AsFd::as_fd);
        crate::idmap::bind(&from, &to, userns, access)
            .map_err(|e| SpecError::io(format!("staging the bind of {}", from.display()), e))
    })?;
    Ok(target)
}

/// The pod's user namespace, for a mount whose mappings must be the pod's.
fn pod_user_namespace(
    index: usize,
    mount: &CriMount,
    propagation: MountPropagation,
    input: &SpecInput,
) -> Result<std::os::fd::OwnedFd, SpecError> {
    let field = |name: &str| format!("mounts[{index}].{name}");
    let Some(user) = input.user_namespace else {
        let given = if mount.uid_mappings.is_empty() { "gid_mappings" } else { "uid_mappings" };
        return Err(SpecError::invalid(field(given), "the pod has no user namespace of its own to map into"));
    };
    let pod = |m: crate::idmap::IdMapping| IdMapping { container_id: m.container_id, host_id: m.host_id, length: m.length };
    for (name, given, wanted) in [
        ("uid_mappings", &mount.uid_mappings, pod(user.mappings.uids)),
        ("gid_mappings", &mount.gid_mappings, pod(user.mappings.gids)),
    ] {
        if given.as_slice() != [wanted] {
            return Err(SpecError::invalid(
                field(name),
                format!("{given:?}: berth maps mounts through the pod's own user namespace, {wanted:?}"),
            ));
        }
    }
    if propagation != MountPropagation::PropagationPrivate {
        return Err(SpecError::invalid(field("propagation"), "an ID-mapped bind cannot receive host mounts: use PRIVATE"));
    }
    user.duplicate().map_err(|e| SpecError::io("the pod's user namespace", e))
}

fn existing_source(host_path: &Path, field: &str) -> Result<PathBuf, SpecError> {
    if !host_path.is_absolute() {
        return Err(SpecError::invalid(field, format!("{host_path:?} is not absolute")));
    }
    let path = host_path.to_path_buf();
    host_fs::bounded(host_path, HOST_PATH_TIMEOUT, move || {
        if let Err(e) = std::fs::symlink_metadata(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(SpecError::io(path.display().to_string(), e));
            }
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&path)
                .map_err(|e| SpecError::io(format!("create {}", path.display()), e))?;
        }
        std::fs::canonicalize(&path).map_err(|e| SpecError::io(format!("resolve {}", path.display()), e))
    })
}

fn warn_relabel_unsupported() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!("selinux_relabel on a mount is not implemented yet: the host path keeps its label; logged once")
    });
}

fn propagation_option(propagation: MountPropagation) -> &'static str {
    match propagation {
        MountPropagation::PropagationPrivate => "rprivate",
        MountPropagation::PropagationHostToContainer => "rslave",
        MountPropagation::PropagationBidirectional => "rshared",
    }
}

/// The rootfs must propagate at least as much as its binds: rshared for a
/// Bidirectional one, else rslave for a HostToContainer one.
fn stronger(current: Option<MountPropagation>, new: MountPropagation) -> Option<MountPropagation> {
    let rank = |p: MountPropagation| match p {
        MountPropagation::PropagationPrivate => 0,
        MountPropagation::PropagationHostToContainer => 1,
        MountPropagation::PropagationBidirectional => 2,
    };
    match current {
        Some(current) if rank(current) >= rank(new) => Some(current),
        _ => Some(new),
    }
}

fn rootfs_option(propagation: MountPropagation) -> Option<&'static str> {
    match propagation {
        MountPropagation::PropagationPrivate => None,
        other => Some(propagation_option(other)),
    }
}

/// `/proc/self/mountinfo`, read only when a bind asks for propagation.
#[derive(Default)]
struct MountInfo {
    text: Option<String>,
}

impl MountInfo {
    /// Propagation from the host needs the host's mount to propagate:
    /// Bidirectional a shared one, HostToContainer a shared or slave one.
    /// Otherwise the bind would silently see nothing (containerd refuses too).
    fn check(&mut self, source: &Path, propagation: MountPropagation, field: &str) -> Result<(), SpecError> {
        if propagation == MountPropagation::PropagationPrivate {
            return Ok(());
        }
        if self.text.is_none() {
            let text = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| SpecError::io("/proc/self/mountinfo", e))?;
            self.text = Some(text);
        }
        let text = self.text.as_deref().unwrap_or_default();
        let Some(host) = host_mount(text, source) else {
            return Err(SpecError::invalid(field, format!("no mount holds {}", source.display())));
        };
        let ok = match propagation {
            MountPropagation::PropagationBidirectional => host.shared,
            _ => host.shared || host.slave,
        };
        if !ok {
            let wanted =
                if propagation == MountPropagation::PropagationBidirectional { "shared" } else { "shared or slave" };
            return Err(SpecError::invalid(
                field,
                format!("{} is on mount {} which is not {wanted}", source.display(), host.point.display()),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq)]
struct HostMount {
    point: PathBuf,
    shared: bool,
    slave: bool,
}

/// The mount holding `path`: the deepest mount point above it, the last one
/// listed when mounts are stacked.
fn host_mount(mountinfo: &str, path: &Path) -> Option<HostMount> {
    let mut best: Option<HostMount> = None;
    for line in mountinfo.lines() {
        let Some((left, _)) = line.split_once(" - ") else { continue };
        let fields: Vec<&str> = left.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| PathBuf::from(unescape_octal(p))) else { continue };
        if !path.starts_with(&point) || best.as_ref().is_some_and(|b| depth(&b.point) > depth(&point)) {
            continue;
        }
        let optional = fields.get(6..).unwrap_or_default();
        best = Some(HostMount {
            point,
            shared: optional.iter().any(|tag| tag.starts_with("shared:")),
            slave: optional.iter().any(|tag| tag.starts_with("master:")),
        });
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| std::str::from_utf8(digits).ok());
        match octal.and_then(|digits| u8::from_str_radix(digits, 8).ok()) {
            Some(byte) if bytes[i] == b'\\' => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` without `.`, `..` and repeated slashes, for comparing destinations.
fn clean(path: &Path) -> PathBuf {
    let mut clean = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::ParentDir => {
                clean.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    clean
}

fn depth(path: &Path) -> usize {
    clean(path).components().count()
}

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(destination))
        .set_typ(Some(kind.to_string()))
        .set_source(Some(PathBuf::from(source)))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

fn bind_mount(source: &Path, destination: &Path, options: &[&str]) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(clean(destination))
        .set_typ(Some("bind".to_string()))
        .set_source(Some(source.to_path_buf()))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    mount
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::fixtures;
    use crate::runtime::RuntimeFeatures;
    use crate::cri::v1::ContainerConfig;

    fn summary(mounts: &[Mount]) -> Vec<(String, String, String)> {
        mounts
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.typ().clone().unwrap_or_default(),
                    m.options().clone().unwrap_or_default().join(","),
                )
            })
            .collect()
    }

    /// For a handler that can do everything the CRI asks of mounts.
    fn build_with(
        mounts: Vec<CriMount>,
        privileged: bool,
        readonly_rootfs: bool,
        sandbox: &SandboxRecord,
    ) -> Result<Mounts, SpecError> {
        let features = RuntimeFeatures { recursive_read_only_mounts: true, ..Default::default() };
        build_for(features, mounts, privileged, readonly_rootfs, sandbox)
    }

    /// Staging under `run_dir`, with no other mount.
    fn build_in(features: RuntimeFeatures, mounts: Vec<CriMount>, run_dir: &Path) -> Result<Mounts, SpecError> {
        build_at(features, mounts, false, false, &fixtures::sandbox(), run_dir)
    }

    fn build_for(
        features: RuntimeFeatures,
        mounts: Vec<CriMount>,
        privileged: bool,
        readonly_rootfs: bool,
        sandbox: &SandboxRecord,
    ) -> Result<Mounts, SpecError> {
        build_at(features, mounts, privileged, readonly_rootfs, sandbox, Path::new("/nonexistent"))
    }

    fn build_at(
        features: RuntimeFeatures,
        mounts: Vec<CriMount>,
        privileged: bool,
        readonly_rootfs: bool,
        sandbox: &SandboxRecord,
        run_dir: &Path,
    ) -> Result<Mounts, SpecError> {
        let config = ContainerConfig { mounts, ..Default::default() };
        let image = oci_spec::image::ImageConfiguration::default();
        let host = fixtures::host();
        let rootfs = PathBuf::from("/nonexistent");
        let input = SpecInput {
            container_id: "c",
            config: &config,
            sandbox,
            image: &image,
            rootfs: &rootfs,
            host: &host,
            features,
            staged: &Default::default(),
            user_namespace: None,
            run_dir,
        };
        build(&input, privileged, readonly_rootfs)
    }

    fn cri_mount(host_path: &Path, container_path: &str, propagation: MountPropagation) -> CriMount {
        CriMount {
            host_path: host_path.display().to_string(),
            container_path: container_path.into(),
            propagation: propagation as i32,
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_pod_files() {
        let got = build_with(Vec::new(), false, false, &fixtures::sandbox()).unwrap();
        assert_eq!(got.rootfs_propagation, None);
        let got = summary(&got.mounts);
        let expected = [
            ("/proc", "proc", "nosuid,noexec,nodev"),
            ("/dev", "tmpfs", "nosuid,strictatime,mode=755,size=65536k"),
            ("/dev/pts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5"),
            ("/dev/mqueue", "mqueue", "nosuid,noexec,nodev"),
            ("/sys", "sysfs", "nosuid,noexec,nodev,ro"),
            ("/sys/fs/cgroup", "cgroup", "nosuid,noexec,nodev,relatime,ro"),
            ("/dev/shm", "bind", "rbind,rprivate,rw"),
            ("/etc/hostname", "bind", "rbind,rprivate,rw"),
            ("/etc/resolv.conf", "bind", "rbind,rprivate,rw"),
        ];
        let expected: Vec<_> = expected.iter().map(|(d, t, o)| (d.to_string(), t.to_string(), o.to_string())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn privileged_gets_writable_sys_and_readonly_rootfs_readonly_files() {
        let got = summary(&build_with(Vec::new(), true, true, &fixtures::sandbox()).unwrap().mounts);
        let options = |dest: &str| got.iter().find(|(d, ..)| d == dest).map(|(.., o)| o.clone()).unwrap();
        assert!(options("/sys").ends_with(",rw"));
        assert!(options("/sys/fs/cgroup").ends_with(",rw"));
        assert_eq!(options("/etc/hostname"), "rbind,rprivate,ro");
        assert_eq!(options("/etc/resolv.conf"), "rbind,rprivate,ro");
        assert_eq!(options("/dev/shm"), "rbind,rprivate,rw");
    }

    #[test]
    fn shm_without_a_pod_pin() {
        let mut sandbox = fixtures::sandbox();
        sandbox.namespaces.shm = None;
        sandbox.namespace_modes.ipc = NamespaceMode::Node;
        let mounts = build_with(Vec::new(), false, false, &sandbox).unwrap().mounts;
        let shm = mounts.iter().find(|m| m.destination() == Path::new("/dev/shm")).unwrap();
        assert_eq!(shm.source().as_deref(), Some(Path::new(HOST_SHM)));

        sandbox.namespace_modes.ipc = NamespaceMode::Pod;
        let mounts = build_with(Vec::new(), false, false, &sandbox).unwrap().mounts;
        let shm = mounts.iter().find(|m| m.destination() == Path::new("/dev/shm")).unwrap();
        assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    }

    #[test]
    fn cri_mounts_replace_defaults_and_sort_by_depth() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = vec![
            cri_mount(dir.path(), "/data/sub", MountPropagation::PropagationPrivate),
            CriMount { readonly: true, ..cri_mount(dir.path(), "/data", MountPropagation::PropagationPrivate) },
            cri_mount(dir.path(), "/etc/resolv.conf/", MountPropagation::PropagationPrivate),
            cri_mount(dir.path(), "/sys/fs/cgroup", MountPropagation::PropagationPrivate),
        ];
        let got = summary(&build_with(mounts, false, false, &fixtures::sandbox()).unwrap().mounts);
        let destinations: Vec<&str> = got.iter().map(|(d, ..)| d.as_str()).collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/data",
                "/data/sub",
                "/etc/resolv.conf",
                "/dev/shm",
                "/etc/hostname",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(got[5], ("/data".into(), "bind".into(), "rbind,rprivate,ro".into()));
        assert_eq!(got[10].1, "bind", "the config's /sys/fs/cgroup replaced the default");
    }

    #[test]
    fn a_dev_bind_replaces_every_default_under_dev() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = vec![cri_mount(dir.path(), "/dev", MountPropagation::PropagationPrivate)];
        let got = summary(&build_with(mounts, true, false, &fixtures::sandbox()).unwrap().mounts);
        let destinations: Vec<&str> = got.iter().map(|(d, ..)| d.as_str()).collect();
        assert_eq!(
            destinations,
            ["/proc", "/sys", "/sys/fs/cgroup", "/dev", "/dev/shm", "/etc/hostname", "/etc/resolv.conf"]
        );
    }

    #[test]
    fn missing_host_path_is_created_as_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("a/b");
        let mounts = vec![cri_mount(&missing, "/data", MountPropagation::PropagationPrivate)];
        build_with(mounts, false, false, &fixtures::sandbox()).unwrap();
        assert!(missing.is_dir());
    }

    #[test]
    fn host_path_symlinks_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let mounts = vec![cri_mount(&dir.path().join("link"), "/data", MountPropagation::PropagationPrivate)];
        let got = build_with(mounts, false, false, &fixtures::sandbox()).unwrap().mounts;
        let data = got.iter().find(|m| m.destination() == Path::new("/data")).unwrap();
        assert_eq!(data.source().clone().unwrap(), dir.path().join("real").canonicalize().unwrap());
    }

    #[test]
    fn bidirectional_needs_privileged() {
        let dir = tempfile::tempdir().unwrap();
        let mounts = vec![cri_mount(dir.path(), "/data", MountPropagation::PropagationBidirectional)];
        let err = build_with(mounts, false, false, &fixtures::sandbox()).err().unwrap();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == "mounts[0].propagation"), "{err}");
    }

    #[test]
    fn bad_mounts_name_their_field() {
        let dir = tempfile::tempdir().unwrap();
        let relative = cri_mount(dir.path(), "data", MountPropagation::PropagationPrivate);
        let empty_host =
            CriMount { host_path: String::new(), ..cri_mount(dir.path(), "/d", MountPropagation::PropagationPrivate) };
        let rro =
            CriMount { recursive_read_only: true, ..cri_mount(dir.path(), "/d", MountPropagation::PropagationPrivate) };
        let unknown = CriMount { propagation: 7, ..cri_mount(dir.path(), "/d", MountPropagation::PropagationPrivate) };
        let cases = [
            (relative, "mounts[0].container_path"),
            (empty_host, "mounts[0].host_path"),
            (rro, "mounts[0].recursive_read_only"),
            (unknown, "mounts[0].propagation"),
        ];
        for (mount, expected) in cases {
            let err = build_with(vec![mount], false, false, &fixtures::sandbox()).err().unwrap();
            assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == expected), "{err}");
        }
    }

    #[test]
    fn recursive_read_only_is_staged_read_only_all_the_way_down() {
        let dir = tempfile::tempdir().unwrap();
        let (volume, run_dir) = (dir.path().join("volume"), dir.path().join("run"));
        std::fs::create_dir_all(volume.join("sub")).unwrap();
        let mut mounted = TestMounts::default();
        mounted.tmpfs(&volume.join("sub"));
        let mount = CriMount {
            readonly: true,
            recursive_read_only: true,
            ..cri_mount(&volume, "/d", MountPropagation::PropagationPrivate)
        };
        let features = RuntimeFeatures { recursive_read_only_mounts: true, ..Default::default() };
        let built = build_in(features, vec![mount.clone()], &run_dir).unwrap();
        let staged = run_dir.join("binds/0");
        mounted.adopt(&staged);
        let got = summary(&built.mounts);
        assert!(got.contains(&("/d".into(), "bind".into(), "rbind,rprivate,ro".into())), "{got:?}");
        let bound = built.mounts.iter().find(|m| m.destination() == Path::new("/d")).unwrap();
        assert_eq!(bound.source().as_deref(), Some(staged.as_path()), "the runtime binds berth's staged tree");
        assert!(std::fs::write(staged.join("top"), "x").is_err(), "read-only on top");
        assert!(std::fs::write(staged.join("sub/below"), "x").is_err(), "and below");
        assert!(std::fs::write(volume.join("sub/below"), "x").is_ok(), "the host's own stays writable");

        // A handler that cannot refuses it by name, as kubelet would not have asked.
        let err = build_for(RuntimeFeatures::default(), vec![mount], false, false, &fixtures::sandbox()).err().unwrap();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == "mounts[0].recursive_read_only"));
        assert!(err.to_string().contains("runtime handler"), "{err}");
    }

    /// Mounts made by a test, unmounted (deepest last made first) even when it fails.
    #[derive(Default)]
    struct TestMounts(Vec<PathBuf>);

    impl TestMounts {
        fn tmpfs(&mut self, point: &Path) {
            nix::mount::mount(Some("tmpfs"), point, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>).unwrap();
            self.0.push(point.to_path_buf());
        }

        fn adopt(&mut self, point: &Path) {
            self.0.push(point.to_path_buf());
        }
    }

    impl Drop for TestMounts {
        fn drop(&mut self) {
            for point in self.0.iter().rev() {
                let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /mnt/private rw,relatime - tmpfs tmpfs rw
31 22 0:27 / /mnt/slave rw,relatime master:5 - tmpfs tmpfs rw
32 22 0:28 / /mnt/with\\040space rw,relatime shared:9 master:5 - tmpfs tmpfs rw
33 30 0:29 / /mnt/private rw,relatime shared:12 - tmpfs tmpfs rw
";

    #[test]
    fn host_mounts_are_found_by_deepest_point() {
        let found = |path: &str| host_mount(MOUNTINFO, Path::new(path)).unwrap();
        assert_eq!(found("/var/lib/x"), HostMount { point: "/".into(), shared: true, slave: false });
        assert_eq!(found("/mnt/slave/a"), HostMount { point: "/mnt/slave".into(), shared: false, slave: true });
        assert_eq!(
            found("/mnt/with space/a"),
            HostMount { point: "/mnt/with space".into(), shared: true, slave: true }
        );
        // Stacked mounts: the last one listed is on top.
        assert!(found("/mnt/private/a").shared);
        assert!(!found("/mnt/privateer").slave, "a path prefix is not a parent");
        assert_eq!(found("/mnt/privateer").point, PathBuf::from("/"));
    }

    #[test]
    fn rootfs_propagation_follows_the_strongest_bind() {
        use MountPropagation::*;
        let fold =
            |props: &[MountPropagation]| props.iter().fold(None, |acc, p| stronger(acc, *p)).and_then(rootfs_option);
        assert_eq!(fold(&[PropagationPrivate]), None);
        assert_eq!(fold(&[PropagationHostToContainer, PropagationPrivate]), Some("rslave"));
        assert_eq!(fold(&[PropagationBidirectional, PropagationHostToContainer]), Some("rshared"));
    }
}
