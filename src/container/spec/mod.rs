//! The OCI runtime spec of a container, from its CRI config, its pod and its image.
//!
//! [`build_spec`] follows containerd's CRI plugin, so that workloads behave as
//! they do there; where berth differs, the piece that differs says why. One file
//! per part of the spec:
//!
//! - `process.rs`: args (Kubernetes' command/args/entrypoint rules), env, cwd,
//!   rlimits, oom_score_adj;
//! - `user.rs`: uid, gid and groups, resolved in the image's `/etc/passwd` and
//!   `/etc/group` (symlinks followed inside the rootfs, never out of it);
//! - `mounts.rs`: the default filesystems, the pod's files and the CRI mounts;
//! - `devices.rs`: device nodes and the device cgroup;
//! - `namespaces.rs`: the pod's pinned namespaces, or the host's, or new ones;
//! - `resources.rs`: cgroup limits and the cgroups path;
//! - `security.rs`: capabilities, seccomp, LSM labels, masked paths.

mod devices;
mod host_fs;
mod mounts;
pub mod namespaces;
mod process;
mod regular_file;
mod representable;
mod resources;
mod seccomp;
mod seccomp_default;
mod security;
mod user;

use std::path::Path;

use oci_spec::runtime::{Linux, LinuxNamespaceType, Root, Spec};

use crate::config::CgroupDriver;
use crate::error::{Classify, ErrorKind};
use crate::runtime::RuntimeFeatures;
use crate::sandbox::SandboxRecord;
pub use security::DEFAULT_APPARMOR_PROFILE;
use security::{Security, security};

/// What the host allows, found once when berth starts (see [`HostFacts::detect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub cgroup_driver: CgroupDriver,
    /// The lowest oom_score_adj berth may give a container: its own, unless it
    /// holds CAP_SYS_RESOURCE. The kernel refuses a lower value from an
    /// unprivileged writer, so asking for one would fail the container's start
    /// (containerd's `restrict_oom_score_adj` clamps the same way).
    pub min_oom_score_adj: i64,
    /// berth's effective capabilities (kernel bit mask): the most a container can be given.
    pub capabilities: u64,
    /// The highest RLIMIT_NOFILE berth can give a container: its own hard limit, unless it
    /// holds CAP_SYS_RESOURCE (which lets the runtime raise it).
    pub max_nofile: u64,
    pub apparmor: bool,
    pub selinux: bool,
}

impl HostFacts {
    pub fn detect(cgroup_driver: CgroupDriver) -> HostFacts {
        let capabilities = effective_capabilities();
        HostFacts {
            cgroup_driver,
            min_oom_score_adj: detect_min_oom_score_adj(capabilities),
            capabilities,
            max_nofile: if capabilities & (1 << CAP_SYS_RESOURCE) != 0 {
                u64::MAX
            } else {
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                    .map_or(1024, |(_, hard)| hard)
            },
            apparmor: std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
                .is_ok_and(|enabled| enabled.starts_with('Y')),
            // selinuxfs is mounted exactly when SELinux is enabled.
            selinux: Path::new("/sys/fs/selinux/enforce").exists(),
        }
    }
}

const CAP_SYS_RESOURCE: u32 = 24;

/// `CapEff` of `/proc/self/status` (none if unreadable).
fn effective_capabilities() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0)
}

/// `-1000` with CAP_SYS_RESOURCE, else berth's own value (0 if unreadable).
fn detect_min_oom_score_adj(effective: u64) -> i64 {
    if effective & (1 << CAP_SYS_RESOURCE) != 0 {
        return -1000;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

pub struct SpecInput<'a> {
    pub container_id: &'a str,
    pub config: &'a crate::cri::v1::ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    pub image: &'a oci_spec::image::ImageConfiguration,
    /// The container's mounted rootfs; its `/etc/passwd` and `/etc/group` name users.
    pub rootfs: &'a Path,
    pub host: &'a HostFacts,
    /// What the pod's runtime handler can do beyond the OCI basics.
    pub features: RuntimeFeatures,
    /// Mounts berth has staged on the host, by their index in `config.mounts`.
    pub staged: &'a super::staging::StagedMounts,
    /// The pod's own user namespace, if it has one.
    pub user_namespace: Option<&'a crate::idmap::PodUserNamespace>,
    /// `<run_root>/containers/<id>`, where ID-mapped binds are staged.
    pub run_dir: &'a Path,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// `field` is the CRI field at fault, dotted as in the proto (`linux.resources.oom_score_adj`).
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// Something the config refers to does not exist (a user in the image, the pod's namespaces).
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A file berth reads out of the image is not what it must be (a FIFO, a
    /// device, a directory, or too large): the image's fault, not the request's.
    #[error("the image's {path}: {problem}")]
    ImageFile { path: String, problem: String },
    /// A host path the request names did not answer in time (an NFS or FUSE
    /// server gone away); the call was abandoned on its thread. `earlier`: one
    /// abandoned before is still stuck, so this one was not even tried.
    #[error(
        "host path {path} did not answer within {timeout:?}{}; is a network or FUSE filesystem there hung?",
        if *earlier { " (an earlier call on it is still stuck)" } else { "" }
    )]
    HostPathHung { path: String, timeout: std::time::Duration, earlier: bool },
    /// oci-spec refused a value its builder checks (a bug in berth).
    #[error("OCI spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl SpecError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        SpecError::NotFound { what: what.into() }
    }

    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SpecError::Io { what: what.into(), source }
    }
}

impl Classify for SpecError {
    fn kind(&self) -> ErrorKind {
        match self {
            SpecError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            SpecError::NotFound { .. } => ErrorKind::NotFound,
            SpecError::ImageFile { .. } => ErrorKind::FailedPrecondition,
            SpecError::HostPathHung { .. } => ErrorKind::DeadlineExceeded,
            SpecError::Io { .. } | SpecError::Oci(_) => ErrorKind::Internal,
        }
    }
}

/// The cgroup limits of `resources`, as UpdateContainerResources applies them
/// to a running container.
pub fn linux_resources(
    resources: &crate::cri::v1::LinuxContainerResources,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    resources::build(Some(resources), &resources::CgroupFacts::host())
}

/// The OCI spec for one container of a pod.
pub fn build_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    representable::refuse_unrepresentable(input)?;
    let linux_config = input.config.linux.as_ref();
    let sc = linux_config.and_then(|linux| linux.security_context.as_ref());
    let security = security(sc, input.host)?;
    let readonly_rootfs = sc.is_some_and(|sc| sc.readonly_rootfs);

    let process = process::build(input, sc, &security)?;
    let namespaces = namespaces::build(input.sandbox, sc)?;
    let mounts = mounts::build(input, security.privileged, readonly_rootfs)?;
    let devices = devices::build(&input.config.devices, security.privileged)?;
    let mut resources =
        resources::build(linux_config.and_then(|linux| linux.resources.as_ref()), &resources::CgroupFacts::host())?;
    resources.set_devices(Some(devices.cgroup_rules));

    let (uid_mappings, gid_mappings) = user::namespace_mappings(input.sandbox, &process)?;
    let mut linux = Linux::default();
    linux
        .set_uid_mappings(uid_mappings)
        .set_gid_mappings(gid_mappings)
        .set_sysctl(None)
        .set_resources(Some(resources))
        .set_cgroups_path(Some(resources::cgroups_path(input.host.cgroup_driver, input.sandbox, input.container_id)))
        .set_devices(Some(devices.nodes))
        .set_rootfs_propagation(mounts.rootfs_propagation)
        .set_masked_paths(Some(security.masked_paths))
        .set_readonly_paths(Some(security.readonly_paths))
        .set_seccomp(security.seccomp);
    // A host-network pod is in the node's UTS namespace, whose hostname is
    // not the container's to set (runc refuses to).
    let has_uts = namespaces.iter().any(|namespace| namespace.typ() == LinuxNamespaceType::Uts);
    let hostname = has_uts.then(|| input.sandbox.hostname.clone());
    linux.set_namespaces(Some(namespaces));

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf()).set_readonly(Some(readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string())
        .set_root(Some(root))
        .set_hostname(hostname)
        .set_mounts(Some(mounts.mounts))
        .set_process(Some(process))
        .set_annotations(None)
        .set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
