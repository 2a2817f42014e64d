//! The security part of a container's spec, from its CRI `LinuxContainerSecurityContext`:
//! capabilities, the seccomp filter (`seccomp.rs`), masked and read-only paths, AppArmor and
//! SELinux. containerd's CRI plugin is the reference; where berth differs, the code says why.

use crate::cri::v1::security_profile::ProfileType;
use crate::cri::v1::{Capability as CriCapabilities, LinuxContainerSecurityContext, SeLinuxOption, SecurityProfile};
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp};

use super::{HostFacts, SpecError, seccomp};

/// Where the security context sits in a `ContainerConfig`: error fields are dotted from there.
pub(super) const SC: &str = "linux.security_context";

/// What a container gets without asking: Docker's set, which containerd and cri-o keep.
pub(super) const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability oci-spec knows, in the kernel's numbering: a capability's index is its bit
/// in `/proc/<pid>/status`'s masks. (oci-spec offers no iterator; a test fails to compile when it
/// grows a variant this list lacks.) A capability the running kernel predates is skipped by the
/// OCI runtime.
const ALL_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Every capability berth itself holds (`host.capabilities`, a kernel bit mask): what `ALL` and
/// privileged containers get. berth cannot grant what it lacks; on a host that withholds one (these
/// VMs withhold CAP_SYS_RESOURCE) asking for it would fail every such container in the runtime.
/// containerd gives privileged containers its current capabilities the same way.
fn all_held(host: &HostFacts) -> impl Iterator<Item = Capability> + '_ {
    ALL_CAPABILITIES.iter().enumerate().filter(|(bit, _)| host.capabilities & (1u64 << bit) != 0).map(|(_, c)| *c)
}

/// Files in /proc and /sys that leak host information or reach host-wide kernel state.
const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Kernel tunables a container may read but must not change: most are host-wide.
const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The AppArmor profile RuntimeDefault means. berth does not load it into the kernel yet: until it
/// does, a host with AppArmor must have a profile of this name loaded, or the OCI runtime will
/// refuse to start containers that ask for the runtime default.
pub const DEFAULT_APPARMOR_PROFILE: &str = "berth-default";

/// container-selinux's context for a container process, whose parts fill in those a pod's
/// `selinux_options` leave out (containerd reads them from the policy's `lxc_contexts`; berth
/// does not read the policy yet).
const SELINUX_DEFAULTS: [&str; 4] = ["system_u", "system_r", "container_t", "s0"];

/// The security settings of one container, ready for the OCI spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    pub capabilities: LinuxCapabilities,
    pub seccomp: Option<LinuxSeccomp>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
    pub no_new_privileges: bool,
    pub privileged: bool,
}

/// The settings for a container with security context `sc` (none: every default) on `host`.
pub fn security(sc: Option<&LinuxContainerSecurityContext>, host: &HostFacts) -> Result<Security, SpecError> {
    let unset = LinuxContainerSecurityContext::default();
    let sc = sc.unwrap_or(&unset);
    if sc.privileged {
        return Ok(privileged(sc, host));
    }
    // Capabilities first: the default seccomp profile depends on them.
    let sets = capability_sets(sc.capabilities.as_ref(), host)?;
    Ok(Security {
        seccomp: seccomp::seccomp(sc, &sets.granted)?,
        capabilities: sets.into_oci(),
        masked_paths: paths("masked_paths", &sc.masked_paths, DEFAULT_MASKED_PATHS)?,
        readonly_paths: paths("readonly_paths", &sc.readonly_paths, DEFAULT_READONLY_PATHS)?,
        apparmor_profile: apparmor(sc, host)?,
        selinux_label: selinux_label(sc.selinux_options.as_ref(), host),
        no_new_privileges: sc.no_new_privs,
        privileged: false,
    })
}

/// What privileged implies, per the CRI: every capability, nothing masked or read-only, no
/// seccomp filter, no AppArmor or SELinux confinement. The rest of the context is ignored (the
/// proto allows that), so it is not validated either.
fn privileged(sc: &LinuxContainerSecurityContext, host: &HostFacts) -> Security {
    let sets = CapabilitySets { granted: all_held(host).collect(), ambient: Capabilities::new() };
    Security {
        capabilities: sets.into_oci(),
        seccomp: None,
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
        apparmor_profile: None,
        selinux_label: None,
        no_new_privileges: sc.no_new_privs,
        privileged: true,
    }
}

/// A container's capabilities: `granted` fills the bounding, effective and permitted sets,
/// `ambient` the ambient and inheritable ones.
struct CapabilitySets {
    granted: Capabilities,
    ambient: Capabilities,
}

impl CapabilitySets {
    /// Inheritable holds the ambient capabilities only: the kernel keeps an ambient capability only
    /// while it is both permitted and inheritable, and anything more in inheritable would let
    /// file capabilities of a binary in the image grant what the container was not given
    /// (containerd 1.7 and runc stopped filling it for that reason).
    fn into_oci(self) -> LinuxCapabilities {
        let mut oci = LinuxCapabilities::default();
        oci.set_bounding(Some(self.granted.clone()))
            .set_effective(Some(self.granted.clone()))
            .set_permitted(Some(self.granted))
            .set_inheritable(Some(self.ambient.clone()))
            .set_ambient(Some(self.ambient));
        oci
    }
}

/// containerd's order: `ALL` in add starts from every capability, `ALL` in drop from none (drop
/// wins over add); then the named additions, ambient ones included (the proto puts them in every
/// set); then the named drops, from every set (a dropped capability cannot stay ambient).
fn capability_sets(cri: Option<&CriCapabilities>, host: &HostFacts) -> Result<CapabilitySets, SpecError> {
    let Some(cri) = cri else {
        return Ok(CapabilitySets {
            granted: DEFAULT_CAPABILITIES.iter().copied().collect(),
            ambient: Capabilities::new(),
        });
    };
    let add = parse_list("add_capabilities", &cri.add_capabilities, true)?;
    let drop = parse_list("drop_capabilities", &cri.drop_capabilities, true)?;
    let ambient = parse_list("add_ambient_capabilities", &cri.add_ambient_capabilities, false)?;

    let mut granted: Capabilities = if drop.all {
        Capabilities::new()
    } else if add.all {
        all_held(host).collect()
    } else {
        DEFAULT_CAPABILITIES.iter().copied().collect()
    };
    granted.extend(add.named.iter().chain(&ambient.named));
    let mut ambient: Capabilities = ambient.named.into_iter().collect();
    for capability in &drop.named {
        granted.remove(capability);
        ambient.remove(capability);
    }
    Ok(CapabilitySets { granted, ambient })
}

/// One of the CRI's capability lists: whether it says `ALL`, and the capabilities it names.
struct CapabilityList {
    all: bool,
    named: Vec<Capability>,
}

/// Parses `capabilities.<list>`. An unknown name is an error in every list, drops included: a
/// misspelt drop would otherwise leave the capability granted without anyone noticing. `ALL`
/// has no meaning among ambient capabilities, so there it is unknown too.
fn parse_list(list: &str, names: &[String], all_allowed: bool) -> Result<CapabilityList, SpecError> {
    let mut parsed = CapabilityList { all: false, named: Vec::with_capacity(names.len()) };
    for (i, name) in names.iter().enumerate() {
        if all_allowed && name.eq_ignore_ascii_case("ALL") {
            parsed.all = true;
            continue;
        }
        let capability = parse_capability(name).ok_or_else(|| {
            SpecError::invalid(format!("{SC}.capabilities.{list}[{i}]"), format!("unknown capability {name:?}"))
        })?;
        parsed.named.push(capability);
    }
    Ok(parsed)
}

/// `CAP_SYS_ADMIN`, `SYS_ADMIN` and `sys_admin` all name CAP_SYS_ADMIN: Kubernetes documents the
/// bare form, Docker users write the prefixed one.
fn parse_capability(name: &str) -> Option<Capability> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    // oci-spec displays a capability as its kernel name without the prefix (`SYS_ADMIN`).
    ALL_CAPABILITIES.iter().copied().find(|capability| capability.to_string() == bare)
}

/// `masked_paths` or `readonly_paths`: the CRI's list when it gives one, else the default. The
/// runtime resolves them inside the container, so they must be absolute.
fn paths(list: &str, cri: &[String], default: &[&str]) -> Result<Vec<String>, SpecError> {
    if cri.is_empty() {
        return Ok(default.iter().map(|path| path.to_string()).collect());
    }
    if let Some(i) = cri.iter().position(|path| !path.starts_with('/')) {
        return Err(SpecError::invalid(format!("{SC}.{list}[{i}]"), format!("{:?} is not an absolute path", cri[i])));
    }
    Ok(cri.to_vec())
}

/// What a container asks of seccomp or AppArmor.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Requested<'a> {
    RuntimeDefault,
    Unconfined,
    /// A profile installed on the node; `field` is the CRI field that named it.
    Localhost {
        field: String,
        name: &'a str,
    },
}

/// Reads a `SecurityProfile` found at `field` (e.g. `linux.security_context.seccomp`).
pub(super) fn from_security_profile<'a>(field: &str, profile: &'a SecurityProfile) -> Result<Requested<'a>, SpecError> {
    let ref_field = format!("{field}.localhost_ref");
    let reference = profile.localhost_ref.as_str();
    let kind = ProfileType::try_from(profile.profile_type).map_err(|_| {
        SpecError::invalid(format!("{field}.profile_type"), format!("unknown profile type {}", profile.profile_type))
    })?;
    match kind {
        ProfileType::Localhost => {
            // kubelet sends the bare reference; a leftover `localhost/` prefix is tolerated, as
            // containerd does.
            let name = reference.strip_prefix("localhost/").unwrap_or(reference);
            if name.is_empty() {
                return Err(SpecError::invalid(ref_field, "required when profile_type is Localhost"));
            }
            Ok(Requested::Localhost { field: ref_field, name })
        }
        _ if !reference.is_empty() => {
            Err(SpecError::invalid(ref_field, "must only be set when profile_type is Localhost"))
        }
        ProfileType::RuntimeDefault => Ok(Requested::RuntimeDefault),
        ProfileType::Unconfined => Ok(Requested::Unconfined),
    }
}

/// The container's AppArmor profile: the `apparmor` field if set, else the deprecated
/// `apparmor_profile` string. Unlike seccomp, no setting means the runtime default (the proto:
/// "runtime/default: equivalent to not specifying a profile").
#[allow(deprecated)] // apparmor_profile: older kubelets still send it.
fn apparmor(sc: &LinuxContainerSecurityContext, host: &HostFacts) -> Result<Option<String>, SpecError> {
    let requested = match &sc.apparmor {
        Some(profile) => from_security_profile(&format!("{SC}.apparmor"), profile)?,
        None => apparmor_from_string(&sc.apparmor_profile)?,
    };
    match requested {
        // kubelet asks for the default on every node, so a host without AppArmor ignores it.
        Requested::RuntimeDefault if host.apparmor => Ok(Some(DEFAULT_APPARMOR_PROFILE.to_string())),
        Requested::RuntimeDefault | Requested::Unconfined => Ok(None),
        Requested::Localhost { name, .. } if host.apparmor => Ok(Some(name.to_string())),
        // A profile asked for by name is a promise of confinement this host cannot keep.
        Requested::Localhost { field, name } => Err(SpecError::invalid(
            field,
            format!("AppArmor profile {name:?} cannot be applied: AppArmor is not enabled on this host"),
        )),
    }
}

/// The deprecated string form: `runtime/default` (also the empty default), `unconfined`, or
/// `localhost/<profile name>`.
fn apparmor_from_string(value: &str) -> Result<Requested<'_>, SpecError> {
    let field = format!("{SC}.apparmor_profile");
    match value {
        "" | "runtime/default" => Ok(Requested::RuntimeDefault),
        "unconfined" => Ok(Requested::Unconfined),
        _ => match value.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => Ok(Requested::Localhost { field, name }),
            _ => Err(SpecError::invalid(
                field,
                format!("unknown AppArmor profile {value:?}: expected runtime/default, unconfined or localhost/<name>"),
            )),
        },
    }
}

/// The SELinux label `user:role:type:level` the pod asks for, on a host with SELinux; elsewhere
/// ignored, as kubelet may send options to every node. Parts left out take container-selinux's
/// defaults, since a label with an empty part is invalid.
fn selinux_label(options: Option<&SeLinuxOption>, host: &HostFacts) -> Option<String> {
    let options = options?;
    let parts = [&options.user, &options.role, &options.r#type, &options.level];
    if !host.selinux || parts.iter().all(|part| part.is_empty()) {
        return None;
    }
    let filled: Vec<&str> = parts
        .iter()
        .zip(SELINUX_DEFAULTS)
        .map(|(part, default)| if part.is_empty() { default } else { part })
        .collect();
    Some(filled.join(":"))
}

#[cfg(test)]
#[allow(deprecated)] // The tests exercise the deprecated fields too.
mod tests {
    use std::collections::HashSet;

    use crate::cri::v1::SecurityProfile;

    use super::*;

    fn host(apparmor: bool, selinux: bool) -> HostFacts {
        HostFacts { apparmor, selinux, ..crate::container::spec::fixtures::host() }
    }

    fn plain_host() -> HostFacts {
        host(false, false)
    }

    fn with_capabilities(add: &[&str], drop: &[&str], ambient: &[&str]) -> LinuxContainerSecurityContext {
        let strings = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
        LinuxContainerSecurityContext {
            capabilities: Some(CriCapabilities {
                add_capabilities: strings(add),
                drop_capabilities: strings(drop),
                add_ambient_capabilities: strings(ambient),
            }),
            ..Default::default()
        }
    }

    fn caps(names: &[Capability]) -> Option<Capabilities> {
        Some(names.iter().copied().collect())
    }

    fn default_plus(extra: &[Capability]) -> Option<Capabilities> {
        caps(&[DEFAULT_CAPABILITIES, extra].concat())
    }

    fn default_minus(removed: &[Capability]) -> Option<Capabilities> {
        Some(DEFAULT_CAPABILITIES.iter().copied().filter(|c| !removed.contains(c)).collect())
    }

    fn all() -> Option<Capabilities> {
        caps(ALL_CAPABILITIES)
    }

    fn secure(sc: &LinuxContainerSecurityContext, host: &HostFacts) -> Security {
        security(Some(sc), host).unwrap()
    }

    fn invalid_field(result: Result<Security, SpecError>) -> String {
        match result {
            Err(SpecError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    /// Fails to compile when oci-spec grows a capability: add it to ALL_CAPABILITIES, then here.
    #[test]
    fn all_capabilities_lists_every_variant() {
        fn known(capability: Capability) -> bool {
            use Capability::*;
            match capability {
                AuditControl | AuditRead | AuditWrite | BlockSuspend | Bpf | CheckpointRestore | Chown
                | DacOverride | DacReadSearch | Fowner | Fsetid | IpcLock | IpcOwner | Kill | Lease
                | LinuxImmutable | MacAdmin | MacOverride | Mknod | NetAdmin | NetBindService | NetBroadcast
                | NetRaw | Perfmon | Setgid | Setfcap | Setpcap | Setuid | SysAdmin | SysBoot | SysChroot
                | SysModule | SysNice | SysPacct | SysPtrace | SysRawio | SysResource | SysTime | SysTtyConfig
                | Syslog | WakeAlarm => ALL_CAPABILITIES.contains(&capability),
            }
        }
        assert!(ALL_CAPABILITIES.iter().all(|c| known(*c)));
        assert_eq!(ALL_CAPABILITIES.iter().collect::<HashSet<_>>().len(), 41);
    }

    #[test]
    fn capability_names_match_the_oci_names() {
        for capability in ALL_CAPABILITIES {
            let oci = serde_json::to_value(capability).unwrap();
            assert_eq!(oci.as_str(), Some(format!("CAP_{capability}").as_str()));
        }
    }

    #[test]
    fn no_security_context_gets_the_defaults() {
        let security = security(None, &plain_host()).unwrap();
        let capabilities = &security.capabilities;
        assert_eq!(capabilities.bounding(), &caps(DEFAULT_CAPABILITIES));
        assert_eq!(capabilities.effective(), &caps(DEFAULT_CAPABILITIES));
        assert_eq!(capabilities.permitted(), &caps(DEFAULT_CAPABILITIES));
        assert_eq!(capabilities.inheritable(), &caps(&[]));
        assert_eq!(capabilities.ambient(), &caps(&[]));
        assert_eq!(security.masked_paths, DEFAULT_MASKED_PATHS);
        assert_eq!(security.readonly_paths, DEFAULT_READONLY_PATHS);
        assert_eq!(security.seccomp, None);
        assert_eq!((security.apparmor_profile, security.selinux_label), (None, None));
        assert!(!security.no_new_privileges && !security.privileged);
    }

    #[test]
    fn added_capabilities_accept_any_case_and_prefix() {
        let sc = with_capabilities(&["sys_admin", "CAP_NET_ADMIN", "cap_sys_ptrace", "Sys_Time"], &[], &[]);
        let capabilities = secure(&sc, &plain_host()).capabilities;
        let expected =
            default_plus(&[Capability::SysAdmin, Capability::NetAdmin, Capability::SysPtrace, Capability::SysTime]);
        assert_eq!(capabilities.bounding(), &expected);
        assert_eq!(capabilities.effective(), &expected);
        assert_eq!(capabilities.permitted(), &expected);
        assert_eq!(capabilities.inheritable(), &caps(&[]));
    }

    #[test]
    fn dropped_capabilities_leave_every_set() {
        let sc = with_capabilities(&[], &["NET_RAW", "cap_mknod"], &[]);
        let capabilities = secure(&sc, &plain_host()).capabilities;
        let expected = default_minus(&[Capability::NetRaw, Capability::Mknod]);
        assert_eq!(capabilities.bounding(), &expected);
        assert_eq!(capabilities.effective(), &expected);
        assert_eq!(capabilities.permitted(), &expected);
    }

    #[test]
    fn all_in_add_grants_every_capability_but_the_dropped() {
        let sc = with_capabilities(&["all"], &["CHOWN"], &[]);
        let mut expected = all();
        if let Some(set) = expected.as_mut() {
            set.remove(&Capability::Chown);
        }
        assert_eq!(secure(&sc, &plain_host()).capabilities.bounding(), &expected);
        assert_eq!(secure(&with_capabilities(&["ALL"], &[], &[]), &plain_host()).capabilities.effective(), &all());
    }

    #[test]
    fn all_in_drop_keeps_only_the_added() {
        let sc = with_capabilities(&["NET_BIND_SERVICE"], &["ALL"], &[]);
        assert_eq!(secure(&sc, &plain_host()).capabilities.permitted(), &caps(&[Capability::NetBindService]));
        let both = with_capabilities(&["ALL", "KILL"], &["all"], &[]);
        assert_eq!(secure(&both, &plain_host()).capabilities.bounding(), &caps(&[Capability::Kill]));
    }

    #[test]
    fn unknown_capabilities_are_invalid_and_named() {
        let cases = [
            (
                with_capabilities(&["CHOWN", "CAP_FLY"], &[], &[]),
                "linux.security_context.capabilities.add_capabilities[1]",
            ),
            (with_capabilities(&[], &["NET_RWA"], &[]), "linux.security_context.capabilities.drop_capabilities[0]"),
            (with_capabilities(&[], &[], &["ALL"]), "linux.security_context.capabilities.add_ambient_capabilities[0]"),
            (
                with_capabilities(&["CAP_CAP_CHOWN"], &[], &[]),
                "linux.security_context.capabilities.add_capabilities[0]",
            ),
        ];
        for (sc, field) in cases {
            assert_eq!(invalid_field(security(Some(&sc), &plain_host())), field);
        }
    }

    #[test]
    fn ambient_capabilities_join_every_set() {
        let sc = with_capabilities(&[], &[], &["NET_ADMIN", "CAP_NET_BIND_SERVICE"]);
        let capabilities = secure(&sc, &plain_host()).capabilities;
        let ambient = caps(&[Capability::NetAdmin, Capability::NetBindService]);
        assert_eq!(capabilities.ambient(), &ambient);
        assert_eq!(capabilities.inheritable(), &ambient);
        assert_eq!(capabilities.permitted(), &default_plus(&[Capability::NetAdmin]));
        assert_eq!(capabilities.bounding(), &default_plus(&[Capability::NetAdmin]));

        let dropped = with_capabilities(&[], &["NET_ADMIN"], &["NET_ADMIN"]);
        let capabilities = secure(&dropped, &plain_host()).capabilities;
        assert_eq!((capabilities.ambient(), capabilities.bounding()), (&caps(&[]), &default_minus(&[])));
    }

    #[test]
    fn privileged_gets_everything_and_no_confinement() {
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            no_new_privs: true,
            seccomp_profile_path: "runtime/default".to_string(),
            apparmor_profile: "localhost/custom".to_string(),
            masked_paths: vec!["/proc/kcore".to_string()],
            selinux_options: Some(SeLinuxOption { r#type: "spc_t".to_string(), ..Default::default() }),
            ..with_capabilities(&[], &["ALL"], &[])
        };
        let security = secure(&sc, &host(true, true));
        assert!(security.privileged && security.no_new_privileges);
        assert_eq!(security.capabilities.bounding(), &all());
        assert_eq!(security.capabilities.effective(), &all());
        assert_eq!(security.capabilities.permitted(), &all());
        assert_eq!(security.capabilities.ambient(), &caps(&[]));
        assert_eq!(security.seccomp, None);
        assert!(security.masked_paths.is_empty() && security.readonly_paths.is_empty());
        assert_eq!((security.apparmor_profile, security.selinux_label), (None, None));
    }

    #[test]
    fn cri_paths_replace_the_defaults() {
        let sc = LinuxContainerSecurityContext {
            masked_paths: vec!["/proc/secret".to_string()],
            readonly_paths: vec!["/proc/sys".to_string(), "/sys".to_string()],
            ..Default::default()
        };
        let replaced = secure(&sc, &plain_host());
        assert_eq!(replaced.masked_paths, ["/proc/secret"]);
        assert_eq!(replaced.readonly_paths, ["/proc/sys", "/sys"]);

        let relative = LinuxContainerSecurityContext { readonly_paths: vec!["/ok".into(), "proc".into()], ..sc };
        assert_eq!(invalid_field(security(Some(&relative), &plain_host())), "linux.security_context.readonly_paths[1]");
    }

    #[test]
    fn runtime_default_seccomp_follows_the_capabilities() {
        let seccomp_path = |add: &[&str]| LinuxContainerSecurityContext {
            seccomp_profile_path: "runtime/default".to_string(),
            ..with_capabilities(add, &[], &[])
        };
        let mount_allowed = |security: Security| {
            security.seccomp.is_some_and(|profile| {
                profile.syscalls().iter().flatten().any(|rule| rule.names().iter().any(|name| name == "mount"))
            })
        };
        assert!(!mount_allowed(secure(&seccomp_path(&[]), &plain_host())));
        assert!(mount_allowed(secure(&seccomp_path(&["SYS_ADMIN"]), &plain_host())));
    }

    #[test]
    fn no_new_privs_is_passed_on() {
        let sc = LinuxContainerSecurityContext { no_new_privs: true, ..Default::default() };
        assert!(secure(&sc, &plain_host()).no_new_privileges);
    }

    fn apparmor_profile(profile_type: ProfileType, localhost_ref: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile { profile_type: profile_type as i32, localhost_ref: localhost_ref.into() }),
            ..Default::default()
        }
    }

    fn apparmor_string(value: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext { apparmor_profile: value.to_string(), ..Default::default() }
    }

    #[test]
    fn apparmor_runtime_default_applies_only_where_apparmor_is() {
        for sc in
            [apparmor_profile(ProfileType::RuntimeDefault, ""), apparmor_string("runtime/default"), apparmor_string("")]
        {
            assert_eq!(secure(&sc, &host(true, false)).apparmor_profile.as_deref(), Some("berth-default"), "{sc:?}");
            assert_eq!(secure(&sc, &plain_host()).apparmor_profile, None, "{sc:?}");
        }
    }

    #[test]
    fn apparmor_unconfined_means_none() {
        for sc in [apparmor_profile(ProfileType::Unconfined, ""), apparmor_string("unconfined")] {
            assert_eq!(secure(&sc, &host(true, false)).apparmor_profile, None);
        }
    }

    #[test]
    fn apparmor_localhost_needs_apparmor() {
        for sc in [apparmor_profile(ProfileType::Localhost, "my-profile"), apparmor_string("localhost/my-profile")] {
            assert_eq!(secure(&sc, &host(true, false)).apparmor_profile.as_deref(), Some("my-profile"));
            let field = invalid_field(security(Some(&sc), &plain_host()));
            assert!(
                field == "linux.security_context.apparmor.localhost_ref"
                    || field == "linux.security_context.apparmor_profile"
            );
        }
    }

    #[test]
    fn bad_apparmor_requests_name_their_field() {
        let apparmor_host = host(true, false);
        let cases = [
            (apparmor_string("my-profile"), "linux.security_context.apparmor_profile"),
            (apparmor_string("localhost/"), "linux.security_context.apparmor_profile"),
            (apparmor_profile(ProfileType::Localhost, ""), "linux.security_context.apparmor.localhost_ref"),
            (apparmor_profile(ProfileType::Unconfined, "x"), "linux.security_context.apparmor.localhost_ref"),
        ];
        for (sc, field) in cases {
            assert_eq!(invalid_field(security(Some(&sc), &apparmor_host)), field, "{sc:?}");
        }
    }

    fn selinux(user: &str, role: &str, kind: &str, level: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            selinux_options: Some(SeLinuxOption {
                user: user.into(),
                role: role.into(),
                r#type: kind.into(),
                level: level.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn selinux_label_on_selinux_hosts_only() {
        let sc = selinux("system_u", "system_r", "svirt_lxc_net_t", "s0:c4,c5");
        let label = secure(&sc, &host(false, true)).selinux_label;
        assert_eq!(label.as_deref(), Some("system_u:system_r:svirt_lxc_net_t:s0:c4,c5"));
        assert_eq!(secure(&sc, &plain_host()).selinux_label, None);
    }

    #[test]
    fn selinux_parts_left_out_take_the_container_defaults() {
        let label = secure(&selinux("", "", "", "s0:c1,c2"), &host(false, true)).selinux_label;
        assert_eq!(label.as_deref(), Some("system_u:system_r:container_t:s0:c1,c2"));
        assert_eq!(secure(&selinux("", "", "", ""), &host(false, true)).selinux_label, None);
    }

    #[test]
    fn all_and_privileged_get_only_what_berth_holds() {
        const CAP_SYS_RESOURCE: u64 = 24;
        let host = HostFacts { capabilities: !(1 << CAP_SYS_RESOURCE), ..plain_host() };
        let privileged = LinuxContainerSecurityContext { privileged: true, ..Default::default() };
        let granted = secure(&privileged, &host).capabilities.bounding().clone().unwrap();
        assert!(!granted.contains(&Capability::SysResource) && granted.contains(&Capability::SysAdmin));
        let all = LinuxContainerSecurityContext {
            capabilities: Some(CriCapabilities { add_capabilities: vec!["ALL".into()], ..Default::default() }),
            ..Default::default()
        };
        let granted = secure(&all, &host).capabilities.effective().clone().unwrap();
        assert_eq!(granted.len(), ALL_CAPABILITIES.len() - 1);
        assert_eq!(ALL_CAPABILITIES[CAP_SYS_RESOURCE as usize], Capability::SysResource, "kernel order");
        assert_eq!(ALL_CAPABILITIES[40], Capability::CheckpointRestore);
    }
}
