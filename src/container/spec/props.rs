//! Property tests of the CRI → OCI translation with generated `ContainerConfig`s: every field
//! kubelet or a hand-written crictl config can set, with junk strings, out-of-range enums and
//! extreme numbers, on generated images and host facts. Whatever the config, `build_spec` must not
//! panic and must give either a spec the runtime can take or an error naming the CRI field at
//! fault (or the file or namespace that is missing).
//!
//! Host paths are generated under a per-case temp dir: the builder creates a missing hostPath, as
//! kubelet and containerd do, and must not be made to litter the host.

use std::collections::HashMap;
use std::path::Path;

use crate::cri::v1::{
    Capability, CdiDevice, ContainerConfig, ContainerMetadata, Device, HugepageLimit, IdMapping, ImageSpec, Int64Value,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext, Mount, NamespaceOption,
    SeLinuxOption, SecurityProfile, UserNamespace,
};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::Spec;
use proptest::collection::{hash_map, vec};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use super::{HostFacts, SpecError, SpecInput, build_spec, fixtures};
use crate::config::CgroupDriver;
use crate::sandbox::infra::InfraProcess;
use crate::sandbox::{NamespaceMode, SandboxRecord};

/// A failure is kept as a named regression test rather than in a file beside the sources.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

// ---- values: mostly what kubelet sends, sometimes anything -------------------------------------

/// `valid` nine times in ten, else `wild`: with some thirty fields, most cases then get past the
/// first field instead of all stopping at one junk string.
fn mostly<T: std::fmt::Debug + 'static>(
    valid: impl Strategy<Value = T> + 'static,
    wild: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![9 => valid, 1 => wild].boxed()
}

/// Text of every kind a proto string can carry: empty, plain, paths, NUL and control characters,
/// non-ASCII, `=` and `:` (separators in env and user specs), long.
fn junk() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        4 => "[a-z0-9]{1,8}",
        2 => "/[a-z0-9/.]{0,16}",
        2 => "[a-zA-Z0-9=:/._ -]{0,16}",
        1 => "[\u{0}-\u{1f}=:/a]{1,6}",
        1 => any::<String>(),
        1 => (300..3000usize).prop_map(|len| "x".repeat(len)),
    ]
    .boxed()
}

fn absolute_path() -> BoxedStrategy<String> {
    mostly("/[a-z0-9_-]{1,6}(/[a-z0-9._-]{1,6}){0,2}", junk())
}

fn extreme_i64() -> BoxedStrategy<i64> {
    prop_oneof![Just(0i64), Just(-1), Just(i64::MIN), Just(i64::MAX), Just(1 << 32), any::<i64>()].boxed()
}

/// A CRI number: in `valid`, or extreme.
fn number(valid: impl Strategy<Value = i64> + 'static) -> BoxedStrategy<i64> {
    mostly(valid, extreme_i64())
}

/// A CRI enum: one of `valid`, or any number.
fn enum_value(valid: impl Strategy<Value = i32> + 'static) -> BoxedStrategy<i32> {
    mostly(valid, prop_oneof![Just(-1i32), 0..8i32, any::<i32>()])
}

fn optional<T: std::fmt::Debug + 'static>(probability: f64, value: BoxedStrategy<T>) -> BoxedStrategy<Option<T>> {
    prop::option::weighted(probability, value).boxed()
}

// ---- host paths, rendered under the case's temp dir ---------------------------------------------

/// A host path; `Temp` ones are made absolute under the case's temp dir at render time.
#[derive(Debug, Clone)]
enum HostPath {
    Temp(Vec<String>),
    /// The temp dir's regular file.
    TempFile,
    Fixed(&'static str),
    Junk(String),
}

impl HostPath {
    fn render(&self, temp: &Path) -> String {
        match self {
            HostPath::Temp(parts) => temp.join("host").join(parts.join("/")).display().to_string(),
            HostPath::TempFile => temp.join("file").display().to_string(),
            HostPath::Fixed(path) => path.to_string(),
            HostPath::Junk(text) => text.clone(),
        }
    }
}

fn host_path() -> BoxedStrategy<HostPath> {
    // No `..`: a component starts with a letter.
    let temp_part = "[a-z][a-z0-9._-]{0,6}";
    let valid = prop_oneof![
        4 => vec(temp_part, 0..4).prop_map(HostPath::Temp),
        1 => Just(HostPath::TempFile),
        // Existing paths only: a missing one outside the temp dir would be created on the host.
        1 => prop::sample::select(vec!["/dev/null", "/proc"]).prop_map(HostPath::Fixed),
    ];
    // Relative, empty, or NUL-bearing: refused before anything is created.
    let wild =
        prop_oneof![Just(String::new()), "[a-z]{1,4}(/[a-z]{1,4})?", "/\u{0}[a-z]{0,3}"].prop_map(HostPath::Junk);
    mostly(valid, wild)
}

fn device_path() -> BoxedStrategy<HostPath> {
    let valid = prop::sample::select(vec!["/dev/null", "/dev/zero", "/dev/full"]).prop_map(HostPath::Fixed);
    let wild = prop_oneof![
        Just(HostPath::Fixed("/dev/nonexistent-berth-prop")),
        Just(HostPath::TempFile),
        Just(HostPath::Temp(Vec::new())),
        prop_oneof![Just(String::new()), "[a-z]{1,4}", "/dev/\u{0}null"].prop_map(HostPath::Junk),
    ];
    mostly(valid, wild)
}

/// A seccomp or AppArmor `localhost_ref` (or the deprecated string forms' path).
#[derive(Debug, Clone)]
enum Profile {
    /// A valid OCI seccomp profile in the temp dir.
    Valid,
    /// A file of JSON that is no seccomp profile.
    Malformed,
    /// The temp dir itself.
    Directory,
    Junk(String),
}

impl Profile {
    fn render(&self, temp: &Path) -> String {
        match self {
            Profile::Valid => temp.join("seccomp.json").display().to_string(),
            Profile::Malformed => temp.join("file").display().to_string(),
            Profile::Directory => temp.display().to_string(),
            Profile::Junk(text) => text.clone(),
        }
    }
}

fn profile_ref() -> BoxedStrategy<Profile> {
    let wild = prop_oneof![
        Just(Profile::Malformed),
        Just(Profile::Directory),
        prop_oneof![Just(String::new()), "localhost/[a-z]{0,4}", "[a-z/]{0,8}", Just("/nonexistent-berth-prop".into())]
            .prop_map(Profile::Junk),
    ];
    mostly(Just(Profile::Valid), wild)
}

/// A `SecurityProfile`: its type (RuntimeDefault, Unconfined, Localhost) and reference.
fn profile() -> BoxedStrategy<(i32, Profile)> {
    let valid = prop_oneof![(0..=1i32, Just(Profile::Junk(String::new()))), (Just(2i32), profile_ref()),];
    mostly(valid, (enum_value(0..=2), profile_ref())).boxed()
}

// ---- the config ---------------------------------------------------------------------------------

/// A config whose host paths are still symbolic, and the rest of the case.
#[derive(Debug, Clone)]
struct Case {
    config: ContainerConfig,
    mount_sources: Vec<HostPath>,
    device_sources: Vec<HostPath>,
    seccomp: Option<(i32, Profile)>,
    apparmor: Option<(i32, Profile)>,
    seccomp_profile_path: Option<Profile>,
    image: ImageConfiguration,
    host: HostFacts,
    pod: Pod,
}

/// How the pod differs from the fixture's.
#[derive(Debug, Clone)]
struct Pod {
    host_network: bool,
    /// Its PID namespace held by an infra process (this test process stands in for it).
    infra: bool,
}

fn mount() -> BoxedStrategy<(Mount, HostPath)> {
    let id_mapping = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(host_id, container_id, length)| IdMapping {
        host_id,
        container_id,
        length,
    });
    let destination = prop_oneof![
        4 => absolute_path(),
        1 => prop::sample::select(vec!["/", "/dev", "/proc", "/etc/hostname", "/dev/shm", "/sys/fs/cgroup", "/a/../dev"])
            .prop_map(String::from),
    ];
    (
        destination,
        host_path(),
        (any::<bool>(), any::<bool>(), prop::bool::weighted(0.2)),
        enum_value(0..=1),
        mostly(Just(Vec::new()), vec(id_mapping, 1..2)),
        optional(0.05, junk()),
    )
        .prop_map(
            |(
                container_path,
                source,
                (readonly, selinux_relabel, recursive_read_only),
                propagation,
                uid_mappings,
                image,
            )| {
                let mount = Mount {
                    container_path,
                    host_path: String::new(),
                    readonly,
                    selinux_relabel,
                    propagation,
                    uid_mappings,
                    gid_mappings: Vec::new(),
                    recursive_read_only,
                    image: image.map(|image| ImageSpec { image, ..Default::default() }),
                    image_sub_path: String::new(),
                    mount_options: Vec::new(),
                };
                (mount, source)
            },
        )
        .boxed()
}

fn device() -> BoxedStrategy<(Device, HostPath)> {
    (mostly("/dev/[a-z]{1,6}", junk()), device_path(), mostly(prop_oneof![Just(String::new()), "[rwm]{1,3}"], junk()))
        .prop_map(|(container_path, source, permissions)| {
            (Device { container_path, host_path: String::new(), permissions }, source)
        })
        .boxed()
}

fn capability_names() -> BoxedStrategy<Vec<String>> {
    let known = prop::sample::select(vec![
        "ALL",
        "all",
        "CAP_SYS_ADMIN",
        "sys_admin",
        "NET_RAW",
        "CAP_CHOWN",
        "BPF",
        "cap_perfmon",
    ]);
    vec(mostly(known.prop_map(String::from), junk()), 0..3).boxed()
}

fn resources() -> BoxedStrategy<LinuxContainerResources> {
    let hugepage = (
        mostly(prop::sample::select(vec!["2MB", "1GB"]).prop_map(String::from), junk()),
        prop_oneof![Just(0u64), 0..(1u64 << 40), Just(u64::MAX), any::<u64>()],
    )
        .prop_map(|(page_size, limit)| HugepageLimit { page_size, limit });
    (
        (number(0..1_000_000i64), number(-1..1_000_000i64), number(0..=262_144i64)),
        (number(0..(1i64 << 40)), number(-1000..=1000i64), number(-1..(1i64 << 40))),
        (mostly(prop_oneof![Just(String::new()), "[0-9](-[0-9])?"], junk()), mostly(Just(String::new()), junk())),
        vec(hugepage, 0..2),
        mostly(Just(HashMap::new()), hash_map("[a-z.]{1,12}", junk(), 1..3)),
    )
        .prop_map(
            |(
                (cpu_period, cpu_quota, cpu_shares),
                (memory_limit_in_bytes, oom_score_adj, memory_swap_limit_in_bytes),
                (cpuset_cpus, cpuset_mems),
                hugepage_limits,
                unified,
            )| LinuxContainerResources {
                cpu_period,
                cpu_quota,
                cpu_shares,
                memory_limit_in_bytes,
                oom_score_adj,
                cpuset_cpus,
                cpuset_mems,
                hugepage_limits,
                unified,
                memory_swap_limit_in_bytes,
            },
        )
        .boxed()
}

/// The security context but its profiles, which hold rendered paths (see [`Case`]).
#[allow(deprecated)] // Older kubelets send the deprecated fields: they are generated too.
fn security_context() -> BoxedStrategy<LinuxContainerSecurityContext> {
    let capabilities = (capability_names(), capability_names(), capability_names()).prop_map(|(add, drop, ambient)| {
        Capability { add_capabilities: add, drop_capabilities: drop, add_ambient_capabilities: ambient }
    });
    let userns =
        (enum_value(Just(2)), vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..2)).prop_map(|(mode, maps)| {
            let uids =
                maps.into_iter().map(|(host_id, container_id, length)| IdMapping { host_id, container_id, length });
            UserNamespace { mode, uids: uids.collect(), gids: Vec::new() }
        });
    // PID: POD (0), CONTAINER (1) or NODE (2); TARGET (3) is refused.
    let namespaces = (
        enum_value(0..=2),
        enum_value(0..=2),
        enum_value(0..=2),
        mostly(Just(String::new()), junk()),
        optional(0.1, userns.boxed()),
    )
        .prop_map(|(network, pid, ipc, target_id, userns_options)| NamespaceOption {
            network,
            pid,
            ipc,
            target_id,
            userns_options,
        });
    let selinux = (junk(), junk(), junk(), junk()).prop_map(|(user, role, r#type, level)| SeLinuxOption {
        user,
        role,
        r#type,
        level,
    });
    let id = |valid: std::ops::RangeInclusive<i64>| {
        optional(0.3, number(valid).prop_map(|value| Int64Value { value }).boxed())
    };
    let username = mostly(prop::sample::select(vec!["", "", "root", "app"]).prop_map(String::from), junk());
    let paths = || mostly(Just(Vec::new()), vec(absolute_path(), 1..3));
    let apparmor_profile =
        mostly(prop::sample::select(vec!["", "runtime/default", "unconfined"]).prop_map(String::from), junk());
    (
        (optional(0.5, capabilities.boxed()), prop::bool::weighted(0.1), optional(0.9, namespaces.boxed())),
        (optional(0.2, selinux.boxed()), id(0..=2000), id(0..=2000)),
        (username, any::<bool>()),
        (mostly(Just(Vec::new()), vec(number(0..=70_000i64), 1..3)), enum_value(0..=1), any::<bool>()),
        (paths(), paths()),
        apparmor_profile,
    )
        .prop_map(
            |(
                (capabilities, privileged, namespace_options),
                (selinux_options, run_as_user, run_as_group),
                (run_as_username, readonly_rootfs),
                (supplemental_groups, supplemental_groups_policy, no_new_privs),
                (masked_paths, readonly_paths),
                apparmor_profile,
            )| {
                LinuxContainerSecurityContext {
                    capabilities,
                    privileged,
                    namespace_options,
                    selinux_options,
                    run_as_user,
                    run_as_group,
                    run_as_username,
                    readonly_rootfs,
                    supplemental_groups,
                    supplemental_groups_policy,
                    no_new_privs,
                    masked_paths,
                    readonly_paths,
                    seccomp: None,
                    apparmor: None,
                    apparmor_profile,
                    seccomp_profile_path: String::new(),
                }
            },
        )
        .boxed()
}

fn image() -> BoxedStrategy<ImageConfiguration> {
    let list = || optional(0.7, vec(mostly("/?[a-z-]{1,8}", junk()), 0..3).boxed());
    let user =
        mostly(prop::sample::select(vec!["app", "1000:2000", "app:extra", "0", ""]).prop_map(String::from), junk());
    (
        list(),
        list(),
        optional(0.5, vec(mostly("[A-Z_]{1,4}=[a-z]{0,4}", junk()), 0..3).boxed()),
        optional(0.6, user),
        optional(0.5, mostly("/?[a-z]{1,6}", junk())),
    )
        .prop_map(|(entrypoint, cmd, env, user, working_dir)| {
            let mut config = ConfigBuilder::default();
            if let Some(entrypoint) = entrypoint {
                config = config.entrypoint(entrypoint);
            }
            if let Some(cmd) = cmd {
                config = config.cmd(cmd);
            }
            if let Some(env) = env {
                config = config.env(env);
            }
            if let Some(user) = user {
                config = config.user(user);
            }
            if let Some(working_dir) = working_dir {
                config = config.working_dir(working_dir);
            }
            ImageConfigurationBuilder::default().config(config.build().unwrap()).build().unwrap()
        })
        .boxed()
}

fn host() -> BoxedStrategy<HostFacts> {
    (
        any::<bool>(),
        prop_oneof![Just(-1000i64), Just(0), -1000..=1000i64],
        prop_oneof![Just(u64::MAX), Just(0), any::<u64>()],
        prop_oneof![Just(u64::MAX), Just(1024), any::<u64>()],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(systemd, min_oom_score_adj, capabilities, max_nofile, apparmor, selinux)| HostFacts {
            cgroup_driver: if systemd { CgroupDriver::Systemd } else { CgroupDriver::Cgroupfs },
            min_oom_score_adj,
            capabilities,
            max_nofile,
            apparmor,
            selinux,
        })
        .boxed()
}

fn case() -> BoxedStrategy<Case> {
    let basics = (
        optional(0.8, (junk(), any::<u32>()).prop_map(|(name, attempt)| ContainerMetadata { name, attempt }).boxed()),
        optional(0.8, junk().prop_map(|image| ImageSpec { image, ..Default::default() }).boxed()),
        mostly(vec("/[a-z]{1,6}", 1..2), vec(junk(), 0..3)),
        vec(mostly("-?[a-z0-9=]{0,8}", junk()), 0..3),
        mostly(prop_oneof![Just(String::new()), absolute_path()], junk()),
        vec((mostly("[A-Z_][A-Z0-9_]{0,6}", junk()), junk()).prop_map(|(key, value)| KeyValue { key, value: value.into_bytes() }), 0..4),
    );
    let extras = (
        hash_map(junk(), junk(), 0..2),
        hash_map(junk(), junk(), 0..2),
        junk(),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        vec(junk().prop_map(|name| CdiDevice { name }), 0..2),
    );
    let linux = optional(0.9, (optional(0.7, resources()), optional(0.9, security_context())).boxed());
    let profiles = (optional(0.4, profile()), optional(0.2, profile()), optional(0.1, profile_ref()));
    (
        basics,
        extras,
        (vec(mount(), 0..3), vec(device(), 0..3)),
        linux,
        profiles,
        (image(), host(), prop::bool::weighted(0.2), prop::bool::weighted(0.9)),
    )
        .prop_map(
            |(
                (metadata, image_spec, command, args, working_dir, envs),
                (labels, annotations, log_path, (stdin, stdin_once, tty), cdi_devices),
                (mounts, devices),
                linux,
                (seccomp, apparmor, seccomp_profile_path),
                (image, host, host_network, infra),
            )| {
                let (mounts, mount_sources): (Vec<_>, Vec<_>) = mounts.into_iter().unzip();
                let (devices, device_sources): (Vec<_>, Vec<_>) = devices.into_iter().unzip();
                let config = ContainerConfig {
                    metadata,
                    image: image_spec,
                    command,
                    args,
                    working_dir,
                    envs,
                    mounts,
                    devices,
                    labels,
                    annotations,
                    log_path,
                    stdin,
                    stdin_once,
                    tty,
                    linux: linux
                        .map(|(resources, security_context)| LinuxContainerConfig { resources, security_context }),
                    windows: None,
                    cdi_devices,
                    stop_signal: 0,
                };
                let pod = Pod { host_network, infra };
                Case {
                    config,
                    mount_sources,
                    device_sources,
                    seccomp,
                    apparmor,
                    seccomp_profile_path,
                    image,
                    host,
                    pod,
                }
            },
        )
        .boxed()
}

// ---- running a case -----------------------------------------------------------------------------

const VALID_PROFILE: &str =
    r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#;

/// The case's temp dir: the rootfs (with users `root` and `app`), `host/` for hostPaths, a plain
/// file and a seccomp profile.
fn case_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("rootfs/etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app\n").unwrap();
    std::fs::create_dir(dir.path().join("host")).unwrap();
    std::fs::write(dir.path().join("file"), r#"{"not": "a profile"}"#).unwrap();
    std::fs::write(dir.path().join("seccomp.json"), VALID_PROFILE).unwrap();
    dir
}

/// The config with its paths made real under `temp`.
#[allow(deprecated)] // seccomp_profile_path: older kubelets and crictl still send it.
fn render(case: &Case, temp: &Path) -> ContainerConfig {
    let mut config = case.config.clone();
    for (mount, source) in config.mounts.iter_mut().zip(&case.mount_sources) {
        mount.host_path = source.render(temp);
    }
    for (device, source) in config.devices.iter_mut().zip(&case.device_sources) {
        device.host_path = source.render(temp);
    }
    let profile = |(profile_type, reference): &(i32, Profile)| SecurityProfile {
        profile_type: *profile_type,
        localhost_ref: reference.render(temp),
    };
    if let Some(sc) = config.linux.as_mut().and_then(|linux| linux.security_context.as_mut()) {
        sc.seccomp = case.seccomp.as_ref().map(profile);
        sc.apparmor = case.apparmor.as_ref().map(profile);
        if let Some(path) = &case.seccomp_profile_path {
            sc.seccomp_profile_path = format!("localhost/{}", path.render(temp));
        }
    }
    config
}

fn sandbox(pod: &Pod) -> SandboxRecord {
    let mut sandbox = fixtures::sandbox();
    if pod.host_network {
        sandbox.namespace_modes.network = NamespaceMode::Node;
        sandbox.namespaces.net = None;
        sandbox.namespaces.uts = None;
    }
    if pod.infra {
        sandbox.infra = Some(InfraProcess { pid: std::process::id() as i32, start_time: own_start_time() });
    }
    sandbox
}

/// Field 22 of `/proc/self/stat`, which the infra check compares.
fn own_start_time() -> u64 {
    crate::procfs::stat(std::process::id() as i32).unwrap().start_time
}

fn build(config: &ContainerConfig, case: &Case, temp: &Path) -> Result<Spec, SpecError> {
    let sandbox = sandbox(&case.pod);
    let rootfs = temp.join("rootfs");
    build_spec(&SpecInput {
        container_id: "c1",
        config,
        sandbox: &sandbox,
        image: &case.image,
        rootfs: &rootfs,
        host: &case.host,
        features: crate::runtime::RuntimeFeatures::default(),
        staged: &Default::default(),
        user_namespace: None,
        run_dir: temp,
    })
}

// ---- the invariants -----------------------------------------------------------------------------

/// The CRI fields an error may name, by their first component.
const FIELDS: &[&str] = &["command", "args", "working_dir", "envs", "mounts", "devices", "linux", "image"];

/// `mounts[3].host_path` → the list `mounts` and index 3.
fn indexed(field: &str) -> Option<(&str, usize)> {
    let (list, rest) = field.split_once('[')?;
    let index = rest.split_once(']')?.0.parse().ok()?;
    Some((list.rsplit('.').next().unwrap_or(list), index))
}

fn list_len(config: &ContainerConfig, list: &str) -> Option<usize> {
    let sc = config.linux.as_ref().and_then(|linux| linux.security_context.as_ref());
    let caps = sc.and_then(|sc| sc.capabilities.as_ref());
    let resources = config.linux.as_ref().and_then(|linux| linux.resources.as_ref());
    Some(match list {
        "mounts" => config.mounts.len(),
        "devices" => config.devices.len(),
        "envs" => config.envs.len(),
        "command" => config.command.len(),
        "args" => config.args.len(),
        "masked_paths" => sc?.masked_paths.len(),
        "readonly_paths" => sc?.readonly_paths.len(),
        "supplemental_groups" => sc?.supplemental_groups.len(),
        "add_capabilities" => caps?.add_capabilities.len(),
        "drop_capabilities" => caps?.drop_capabilities.len(),
        "add_ambient_capabilities" => caps?.add_ambient_capabilities.len(),
        "hugepage_limits" => resources?.hugepage_limits.len(),
        _ => return None,
    })
}

fn check_error(config: &ContainerConfig, error: &SpecError) -> Result<(), TestCaseError> {
    match error {
        SpecError::InvalidArgument { field, reason } => {
            let first = field.split(['.', '[']).next().unwrap_or_default();
            prop_assert!(FIELDS.contains(&first), "{error}: {field:?} is no CRI field");
            prop_assert!(!field.contains(|c: char| c.is_ascii_uppercase()), "{error}: not the proto's snake_case name");
            prop_assert!(!reason.trim().is_empty(), "{field}: no reason");
            prop_assert!(error.to_string().starts_with(&format!("{field}: ")), "{error}");
            if let Some((list, index)) = indexed(field) {
                let len = list_len(config, list);
                prop_assert!(len.is_some_and(|len| index < len), "{error}: {list} has {len:?} entries");
            }
        }
        SpecError::NotFound { what } | SpecError::Io { what, .. } => prop_assert!(!what.trim().is_empty(), "{error}"),
        SpecError::ImageFile { path, problem } => prop_assert!(!path.is_empty() && !problem.is_empty(), "{error}"),
        // The builder's own types are checked by oci-spec: a refusal there is a bug in berth.
        SpecError::Oci(_) => prop_assert!(false, "oci-spec refused what berth built: {error}"),
        #[allow(unreachable_patterns)] // Kinds added later must at least say something.
        other => prop_assert!(!other.to_string().trim().is_empty()),
    }
    Ok(())
}

/// What a runtime needs of a spec to start it: something to run, absolute paths.
fn check_spec(config: &ContainerConfig, spec: &Spec) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(spec);
    prop_assert!(json.as_ref().is_ok_and(|json| !json.contains("\\u0000")), "a NUL in the spec: {json:?}");
    let process = spec.process().as_ref().expect("a process");
    let args = process.args().clone().unwrap_or_default();
    prop_assert!(!args.is_empty(), "nothing to run");
    if !config.command.is_empty() {
        let want: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
        prop_assert_eq!(&args, &want);
    }
    prop_assert!(process.cwd().is_absolute(), "cwd {:?}", process.cwd());
    // execve and the runtime's path arguments cannot carry a NUL; runc refuses an env entry
    // without a name.
    for arg in &args {
        prop_assert!(!arg.contains('\0'), "NUL in argument {arg:?}");
    }
    prop_assert!(!process.cwd().as_os_str().as_encoded_bytes().contains(&0), "NUL in cwd {:?}", process.cwd());
    for entry in process.env().iter().flatten() {
        prop_assert!(!entry.contains('\0'), "NUL in env {entry:?}");
        prop_assert!(entry.split_once('=').is_some_and(|(name, _)| !name.is_empty()), "env {entry:?} has no name");
    }
    for mount in spec.mounts().iter().flatten() {
        prop_assert!(mount.destination().is_absolute(), "mount destination {:?}", mount.destination());
        prop_assert!(
            !mount.destination().as_os_str().as_encoded_bytes().contains(&0),
            "NUL in {:?}",
            mount.destination()
        );
    }
    for device in spec.linux().as_ref().and_then(|linux| linux.devices().as_ref()).into_iter().flatten() {
        prop_assert!(device.path().is_absolute(), "device path {:?}", device.path());
    }
    Ok(())
}

fn run(case: &Case) -> Result<(), TestCaseError> {
    let temp = case_dir();
    let config = render(case, temp.path());
    match build(&config, case, temp.path()) {
        Ok(spec) => check_spec(&config, &spec),
        Err(error) => check_error(&config, &error),
    }
}

// ---- the properties -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn any_config_gives_a_spec_or_names_the_field(case in case()) {
        run(&case)?;
    }
}

/// Plain configs whose numbers are all anything an int64 can hold.
fn plain_case() -> impl Strategy<Value = Case> {
    let any_number = || prop_oneof![extreme_i64(), -1001..=1001i64, any::<i64>()];
    let numbers = (any_number(), any_number(), any_number(), any_number(), any_number(), any_number());
    let hugepage = (prop_oneof![Just(0u64), Just(u64::MAX), Just(1u64 << 63), any::<u64>()])
        .prop_map(|limit| HugepageLimit { page_size: "2MB".into(), limit });
    (case(), numbers, vec(hugepage, 0..2)).prop_map(|(mut case, numbers, hugepage_limits)| {
        let (cpu_period, cpu_quota, cpu_shares, memory_limit_in_bytes, oom_score_adj, memory_swap_limit_in_bytes) =
            numbers;
        let resources = LinuxContainerResources {
            cpu_period,
            cpu_quota,
            cpu_shares,
            memory_limit_in_bytes,
            oom_score_adj,
            memory_swap_limit_in_bytes,
            hugepage_limits,
            ..Default::default()
        };
        let config = &mut case.config;
        config.command = vec!["/bin/sh".into()];
        config.working_dir = String::new();
        config.mounts.clear();
        config.devices.clear();
        case.mount_sources.clear();
        case.device_sources.clear();
        case.seccomp = None;
        case.apparmor = None;
        case.seccomp_profile_path = None;
        config.linux = Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption { pid: 1, ..Default::default() }),
                ..Default::default()
            }),
        });
        case
    })
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn extreme_resources_give_a_spec_or_name_the_field(case in plain_case()) {
        run(&case)?;
    }
}

// ---- regressions found by the properties above --------------------------------------------------

fn plain_config() -> ContainerConfig {
    ContainerConfig {
        command: vec!["/bin/sh".into()],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(NamespaceOption { pid: 1, ..Default::default() }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn build_plain(config: &ContainerConfig, image: &ImageConfiguration) -> Result<Spec, SpecError> {
    let temp = case_dir();
    let case = Case {
        config: config.clone(),
        mount_sources: Vec::new(),
        device_sources: Vec::new(),
        seccomp: None,
        apparmor: None,
        seccomp_profile_path: None,
        image: image.clone(),
        host: fixtures::host(),
        pod: Pod { host_network: false, infra: false },
    };
    build(config, &case, temp.path())
}

fn image_with_env(env: &[&str]) -> ImageConfiguration {
    let config = ConfigBuilder::default().env(env.iter().map(|e| e.to_string()).collect::<Vec<_>>()).build().unwrap();
    ImageConfigurationBuilder::default().config(config).build().unwrap()
}

/// An image Env entry without `=` reached the spec as it was, and runc refuses to start a process
/// with such a variable; containerd reads it as unsetting the variable.
#[test]
fn an_image_env_entry_without_a_value_unsets_the_variable() {
    let spec = build_plain(&plain_config(), &image_with_env(&["", "LANG=C", "PATH", "LANG"])).unwrap();
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert_eq!(env, ["HOSTNAME=pod-host"]);
    let err = build_plain(&plain_config(), &image_with_env(&["=x"])).unwrap_err();
    assert!(err.to_string().starts_with("image: "), "{err}");
}

/// A CRI env with an empty name reached the spec as `=value`, which runc refuses at start.
#[test]
fn an_env_without_a_name_is_refused_naming_it() {
    let config = ContainerConfig { envs: vec![KeyValue { key: String::new(), value: "v".into() }], ..plain_config() };
    let err = build_plain(&config, &image_with_env(&[])).unwrap_err();
    assert!(err.to_string().starts_with("envs[0].key: "), "{err}");
}

/// NUL bytes reached the spec (args, env, paths), where no runtime can pass them on; a NUL in a
/// hostPath failed as an internal error rather than naming the field.
#[test]
fn nul_bytes_are_refused_naming_the_field() {
    let with_nul = "a\0b".to_string();
    let cases: Vec<(ContainerConfig, &str)> = vec![
        (ContainerConfig { args: vec!["ok".into(), with_nul.clone()], ..plain_config() }, "args[1]"),
        (
            ContainerConfig {
                envs: vec![KeyValue { key: "K".into(), value: with_nul.clone().into_bytes() }],
                ..plain_config()
            },
            "envs[0].value",
        ),
        (ContainerConfig { working_dir: format!("/{with_nul}"), ..plain_config() }, "working_dir"),
        (
            ContainerConfig {
                mounts: vec![Mount {
                    container_path: "/m".into(),
                    host_path: format!("/{with_nul}"),
                    ..Default::default()
                }],
                ..plain_config()
            },
            "mounts[0].host_path",
        ),
    ];
    for (config, field) in cases {
        match build_plain(&config, &image_with_env(&[])) {
            Err(SpecError::InvalidArgument { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let err = build_plain(&plain_config(), &image_with_env(&["A=\0"])).unwrap_err();
    assert!(err.to_string().starts_with("image: "), "{err}");
}

/// An ID-mapped mount in a pod with no user namespace of its own: refused, naming the proto's
/// field (not the OCI spec's `uidMappings`), also for a mount with only GID mappings.
#[test]
fn id_mapped_mounts_are_refused_naming_the_proto_field() {
    let mapping = IdMapping { host_id: 1, container_id: 0, length: 1 };
    let mount =
        Mount { container_path: "/m".into(), host_path: "/tmp".into(), gid_mappings: vec![mapping], ..Default::default() };
    let config = ContainerConfig { mounts: vec![mount], ..plain_config() };
    let err = build_plain(&config, &image_with_env(&[])).unwrap_err();
    assert!(err.to_string().starts_with("mounts[0].gid_mappings: "), "{err}");
}
