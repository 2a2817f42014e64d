//! The container's seccomp filter: which profile the CRI asks for, berth's default profile (built
//! for the container's capabilities, as Docker's is), and profiles installed on the node.

use std::collections::BTreeSet;
use std::path::Path;

use crate::cri::v1::LinuxContainerSecurityContext;
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde_json::Value;

use super::SpecError;
use super::regular_file::{Refused, read_regular};
use super::seccomp_default::{ALLOWED, ARM_ONLY, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS, PERSONALITY_VALUES, X86_ONLY};
use super::security::{Requested, SC, from_security_profile};

/// What a denied syscall returns. "Operation not permitted" tells the program it was refused, not
/// that the kernel lacks the call (Docker's and containerd's profiles answer the same).
const EPERM: u32 = 1;

/// What `clone3` returns to a container without CAP_SYS_ADMIN. Its flags sit in a struct in
/// memory, out of the filter's reach, so it cannot be allowed "without namespace flags" as
/// `clone` is; "not implemented" makes libc fall back to `clone`, where the flags are checked.
/// (`EPERM` would make glibc's thread creation fail outright.)
const ENOSYS: u32 = 38;

/// The filter of a container that is not privileged, whose bounding set is `capabilities`, as its
/// security context asks: the `seccomp` field if set, else the deprecated `seccomp_profile_path`.
/// No setting at all means no filter: kubelet asks for RuntimeDefault when it wants it.
#[allow(deprecated)] // seccomp_profile_path: older kubelets and crictl still send it.
pub(super) fn seccomp(
    sc: &LinuxContainerSecurityContext,
    capabilities: &Capabilities,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    let requested = match &sc.seccomp {
        Some(profile) => from_security_profile(&format!("{SC}.seccomp"), profile)?,
        None => from_profile_path(&sc.seccomp_profile_path)?,
    };
    match requested {
        Requested::RuntimeDefault => Ok(Some(default_profile(capabilities))),
        Requested::Unconfined => Ok(None),
        Requested::Localhost { field, name } => load(&field, name).map(Some),
    }
}

/// The deprecated string form: `runtime/default` (or Docker's older `docker/default`),
/// `unconfined` (also the empty default), or `localhost/<absolute path>`.
fn from_profile_path(value: &str) -> Result<Requested<'_>, SpecError> {
    let field = format!("{SC}.seccomp_profile_path");
    match value {
        "" | "unconfined" => Ok(Requested::Unconfined),
        "runtime/default" | "docker/default" => Ok(Requested::RuntimeDefault),
        _ => match value.strip_prefix("localhost/") {
            Some(name) => Ok(Requested::Localhost { field, name }),
            None => Err(SpecError::invalid(
                field,
                format!("unknown seccomp profile {value:?}: expected runtime/default, unconfined or localhost/<path>"),
            )),
        },
    }
}

/// The largest profile berth reads: Docker's default is about 20 KiB.
const MAX_PROFILE: u64 = 4 * 1024 * 1024;

/// A profile installed on the node: a JSON file in the OCI runtime spec's `linux.seccomp` format.
/// `field` is the CRI field that named it.
fn load(field: &str, file: &str) -> Result<LinuxSeccomp, SpecError> {
    if !Path::new(file).is_absolute() {
        return Err(SpecError::invalid(field, format!("seccomp profile {file:?} is not an absolute path")));
    }
    // The node's profile may be a link (kubelet's dir often holds them); its
    // target is what must be a regular file.
    let target = match std::fs::canonicalize(file) {
        Ok(target) => target,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::not_found(format!("seccomp profile {file}")));
        }
        Err(err) => return Err(SpecError::io(format!("resolving seccomp profile {file}"), err)),
    };
    let bytes = match read_regular(&target, MAX_PROFILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(SpecError::not_found(format!("seccomp profile {file}"))),
        Err(Refused::Io(err)) => return Err(SpecError::io(format!("reading seccomp profile {file}"), err)),
        Err(problem) => return Err(SpecError::invalid(field, format!("seccomp profile {file} {problem}"))),
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| SpecError::invalid(field, format!("seccomp profile {file} is not UTF-8 text")))?;
    parse(&text).map_err(|reason| SpecError::invalid(field, format!("seccomp profile {file}: {reason}")))
}

/// Parses a profile, naming the JSON path at fault.
fn parse(text: &str) -> Result<LinuxSeccomp, String> {
    let profile = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text))
        .map_err(|err| err.to_string())?;
    let value: Value = serde_json::from_str(text).map_err(|err| err.to_string())?;
    refuse_docker_conditions(&value)?;
    Ok(profile)
}

/// Docker's profile format adds `includes` / `excludes` conditions (capabilities, kernel version,
/// architecture) to rules. The OCI format has none, so reading such a profile as OCI would apply
/// every conditional rule unconditionally (Docker's own profile would allow `mount` to everyone).
/// Refuse it rather than load a looser filter than its author wrote.
fn refuse_docker_conditions(profile: &Value) -> Result<(), String> {
    let rules = profile.get("syscalls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        for key in ["includes", "excludes"] {
            if rule.get(key).is_some_and(has_content) {
                return Err(format!(
                    "syscalls[{i}].{key}: conditional rules are Docker's profile format, not the OCI one; \
                     resolve them into plain rules"
                ));
            }
        }
    }
    Ok(())
}

/// Whether a JSON value says anything: Docker's tools write empty `{}` conditions freely.
fn has_content(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Object(fields) => fields.values().any(has_content),
        Value::Array(items) => !items.is_empty(),
        Value::String(text) => !text.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// berth's RuntimeDefault profile for a container whose bounding set is `capabilities`: deny by
/// default, allow the groups of `seccomp_default.rs`, plus those the capabilities unlock.
pub(super) fn default_profile(capabilities: &Capabilities) -> LinuxSeccomp {
    let mut allowed: BTreeSet<&str> = ALLOWED.iter().flat_map(|group| group.iter().copied()).collect();
    allowed.extend(arch_specific());
    for (capability, syscalls) in BY_CAPABILITY {
        if capabilities.contains(capability) {
            allowed.extend(syscalls.iter().copied());
        }
    }
    let mut rules = vec![allow(allowed)];
    rules.extend(personality_rules());
    if !capabilities.contains(&Capability::SysAdmin) {
        rules.extend(clone_rules());
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(architectures())
        .set_syscalls(Some(rules));
    profile
}

/// One rule allowing `names` whatever their arguments.
fn allow<'a>(names: impl IntoIterator<Item = &'a str>) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.into_iter().map(str::to_string).collect()).set_action(LinuxSeccompAction::ScmpActAllow);
    rule
}

/// A rule for one syscall whose first argument matches: `value` compared with `op` (for
/// SCMP_CMP_MASKED_EQ, `value` is the mask and `value_two` the expected result).
fn allow_when_first_arg(name: &str, op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> LinuxSyscall {
    let builder = LinuxSeccompArgBuilder::default().index(0_usize).op(op).value(value);
    let builder = match value_two {
        Some(value_two) => builder.value_two(value_two),
        None => builder,
    };
    // Every field of the builder has a default, so `build` cannot fail (and the tests check the
    // conditions that come out).
    let arg = builder.build().unwrap_or_default();
    let mut rule = allow([name]);
    rule.set_args(Some(vec![arg]));
    rule
}

/// `personality` with the harmless values only. One rule per value: the conditions of a single
/// rule must all hold at once, separate rules are alternatives.
fn personality_rules() -> impl Iterator<Item = LinuxSyscall> {
    PERSONALITY_VALUES
        .iter()
        .map(|&value| allow_when_first_arg("personality", LinuxSeccompOperator::ScmpCmpEq, value, None))
}

/// Without CAP_SYS_ADMIN: `clone` only when it creates no namespace, `clone3` not at all (with
/// `ENOSYS`, see [`ENOSYS`]). The flags are `clone`'s first argument on x86 and ARM alike (s390,
/// which swaps them, is not a target of berth).
fn clone_rules() -> [LinuxSyscall; 2] {
    let clone = allow_when_first_arg("clone", LinuxSeccompOperator::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, Some(0));
    let mut clone3 = LinuxSyscall::default();
    clone3
        .set_names(vec!["clone3".to_string()])
        .set_action(LinuxSeccompAction::ScmpActErrno)
        .set_errno_ret(Some(ENOSYS));
    [clone, clone3]
}

/// The ABIs a process of this machine can call the kernel through. The 32-bit (and x32) ones are
/// listed so that 32-bit programs run under the same rules; a call through an unlisted ABI is
/// refused outright.
fn architectures() -> Option<Vec<Arch>> {
    if cfg!(target_arch = "x86_64") {
        Some(vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32])
    } else if cfg!(target_arch = "aarch64") {
        Some(vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm])
    } else {
        // Elsewhere the native architecture only, which is what an absent list means.
        None
    }
}

/// The allowed syscalls only some of [`architectures`] have.
fn arch_specific() -> impl Iterator<Item = &'static str> {
    let names: &[&str] = if cfg!(target_arch = "x86_64") {
        X86_ONLY
    } else if cfg!(target_arch = "aarch64") {
        ARM_ONLY
    } else {
        &[]
    };
    names.iter().copied()
}

#[cfg(test)]
#[allow(deprecated)] // The tests exercise the deprecated fields too.
mod tests {
    use std::collections::HashSet;

    use crate::cri::v1::SecurityProfile;
    use crate::cri::v1::security_profile::ProfileType;

    use super::super::seccomp_default::ALWAYS_DENIED;
    use super::super::security::DEFAULT_CAPABILITIES;
    use super::*;

    fn default_capabilities() -> Capabilities {
        DEFAULT_CAPABILITIES.iter().copied().collect()
    }

    fn with(extra: Capability) -> Capabilities {
        let mut capabilities = default_capabilities();
        capabilities.insert(extra);
        capabilities
    }

    /// Whether `name` is allowed whatever its arguments.
    fn allows(profile: &LinuxSeccomp, name: &str) -> bool {
        rules(profile, name).any(|rule| rule.action() == LinuxSeccompAction::ScmpActAllow && rule.args().is_none())
    }

    fn rules<'a>(profile: &'a LinuxSeccomp, name: &'a str) -> impl Iterator<Item = &'a LinuxSyscall> {
        profile.syscalls().iter().flatten().filter(move |rule| rule.names().iter().any(|n| n == name))
    }

    fn sc_with_profile(profile_type: ProfileType, localhost_ref: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: profile_type as i32,
                localhost_ref: localhost_ref.to_string(),
            }),
            ..Default::default()
        }
    }

    fn sc_with_path(path: &str) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext { seccomp_profile_path: path.to_string(), ..Default::default() }
    }

    fn field_of(err: SpecError) -> String {
        match err {
            SpecError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn default_profile_denies_with_eperm_on_every_abi() {
        let profile = default_profile(&default_capabilities());
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(1));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        #[cfg(target_arch = "aarch64")]
        assert_eq!(profile.architectures().as_deref(), Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..]));
    }

    #[test]
    fn default_profile_allows_what_programs_need() {
        let profile = default_profile(&default_capabilities());
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "exit_group",
            "futex",
            "epoll_wait",
            "mmap",
            "brk",
            "rt_sigaction",
            "socket",
            "connect",
            "accept4",
            "getrandom",
            "fork",
            "wait4",
            "statx",
            "getdents64",
            "prctl",
            "setuid",
            "chown",
            "chroot",
            "seccomp",
        ] {
            assert!(allows(&profile, name), "{name} should be allowed");
        }
    }

    #[test]
    fn default_profile_blocks_dangerous_syscalls() {
        let profile = default_profile(&default_capabilities());
        for name in [
            "add_key",
            "request_key",
            "keyctl",
            "bpf",
            "clock_adjtime",
            "clock_settime",
            "settimeofday",
            "stime",
            "adjtimex",
            "create_module",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "mount",
            "umount2",
            "pivot_root",
            "swapon",
            "swapoff",
            "reboot",
            "acct",
            "open_by_handle_at",
            "name_to_handle_at",
            "perf_event_open",
            "ptrace",
            "process_vm_readv",
            "process_vm_writev",
            "quotactl",
            "setns",
            "unshare",
            "userfaultfd",
            "iopl",
            "ioperm",
            "lookup_dcookie",
            "move_pages",
            "nfsservctl",
            "personality",
            "sysfs",
            "_sysctl",
            "uselib",
            "ustat",
            "vm86",
            "vm86old",
            "fanotify_init",
            "kcmp",
            "syslog",
            "io_uring_setup",
            "clone",
            "clone3",
        ] {
            assert!(!allows(&profile, name), "{name} should not be allowed unconditionally");
        }
    }

    #[test]
    fn personality_is_allowed_with_safe_values_only() {
        let profile = default_profile(&default_capabilities());
        let values: Vec<u64> = rules(&profile, "personality")
            .map(|rule| {
                assert_eq!(rule.action(), LinuxSeccompAction::ScmpActAllow);
                let args = rule.args().as_deref().unwrap_or_default();
                assert_eq!(args.len(), 1);
                assert_eq!((args[0].index(), args[0].op()), (0, LinuxSeccompOperator::ScmpCmpEq));
                args[0].value()
            })
            .collect();
        assert_eq!(values, [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn clone_without_namespace_flags_and_clone3_enosys_by_default() {
        let profile = default_profile(&default_capabilities());
        let clone: Vec<_> = rules(&profile, "clone").collect();
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().as_deref().unwrap_or_default();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!((args[0].index(), args[0].value(), args[0].value_two()), (0, 0x7E02_0000, Some(0)));
        let clone3: Vec<_> = rules(&profile, "clone3").collect();
        assert_eq!(clone3.len(), 1);
        assert_eq!((clone3[0].action(), clone3[0].errno_ret()), (LinuxSeccompAction::ScmpActErrno, Some(38)));
    }

    #[test]
    fn cap_sys_admin_unlocks_mounts_and_namespaces() {
        let profile = default_profile(&with(Capability::SysAdmin));
        for name in ["mount", "umount2", "pivot_root", "setns", "unshare", "clone", "clone3", "sethostname"] {
            assert!(allows(&profile, name), "{name} should be allowed with CAP_SYS_ADMIN");
        }
        assert_eq!(rules(&profile, "clone").count(), 1, "no conditional clone rule besides the plain one");
        assert_eq!(rules(&profile, "clone3").count(), 1, "no ENOSYS rule besides the plain one");
        assert!(!allows(&profile, "keyctl"));
    }

    #[test]
    fn other_capabilities_unlock_their_syscalls() {
        let cases: [(Capability, &[&str]); 6] = [
            (Capability::SysPtrace, &["ptrace", "process_vm_readv", "process_vm_writev", "kcmp"]),
            (Capability::SysTime, &["settimeofday", "clock_settime", "adjtimex", "clock_adjtime"]),
            (Capability::SysModule, &["init_module", "finit_module", "delete_module"]),
            (Capability::SysBoot, &["reboot"]),
            (Capability::SysNice, &["mbind", "set_mempolicy", "move_pages"]),
            (Capability::DacReadSearch, &["open_by_handle_at"]),
        ];
        for (capability, names) in cases {
            let profile = default_profile(&with(capability));
            for name in names {
                assert!(allows(&profile, name), "{name} should be allowed with {capability}");
            }
            assert!(!allows(&profile, "mount"), "{capability} must not unlock mount");
        }
        let without_chroot = default_profile(&[Capability::Chown].into_iter().collect());
        assert!(!allows(&without_chroot, "chroot"));
    }

    #[test]
    fn always_denied_stays_denied_with_every_capability() {
        let every: Capabilities = BY_CAPABILITY.iter().map(|(capability, _)| *capability).collect();
        let profile = default_profile(&every);
        for name in ALWAYS_DENIED {
            assert_eq!(rules(&profile, name).count(), 0, "{name} must never be allowed");
        }
    }

    #[test]
    fn the_lists_do_not_contradict_each_other() {
        let allowed: HashSet<&str> =
            ALLOWED.iter().flat_map(|group| group.iter().copied()).chain(X86_ONLY.iter().copied()).collect();
        for (capability, names) in BY_CAPABILITY {
            for name in *names {
                assert!(!allowed.contains(name), "{name} is gated by {capability} yet always allowed");
                assert!(!ALWAYS_DENIED.contains(name), "{name} is both gated and always denied");
            }
        }
        for name in ALWAYS_DENIED {
            assert!(!allowed.contains(name), "{name} is both allowed and always denied");
        }
        assert!(!allowed.contains("clone") && !allowed.contains("clone3") && !allowed.contains("personality"));
        let total: usize = ALLOWED.iter().map(|group| group.len()).sum();
        let distinct: HashSet<&str> = ALLOWED.iter().flat_map(|group| group.iter().copied()).collect();
        assert_eq!(total, distinct.len(), "a syscall is listed in two groups");
    }

    #[test]
    fn default_profile_serialises_in_the_oci_format() {
        let json = serde_json::to_value(default_profile(&default_capabilities())).unwrap_or_default();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(json["syscalls"][0]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn runtime_default_is_the_default_profile() {
        let capabilities = default_capabilities();
        let expected = Some(default_profile(&capabilities));
        let profile = sc_with_profile(ProfileType::RuntimeDefault, "");
        assert_eq!(seccomp(&profile, &capabilities).unwrap(), expected);
        for path in ["runtime/default", "docker/default"] {
            assert_eq!(seccomp(&sc_with_path(path), &capabilities).unwrap(), expected, "{path}");
        }
    }

    #[test]
    fn unconfined_and_unset_mean_no_filter() {
        let capabilities = default_capabilities();
        assert_eq!(seccomp(&sc_with_profile(ProfileType::Unconfined, ""), &capabilities).unwrap(), None);
        assert_eq!(seccomp(&sc_with_path("unconfined"), &capabilities).unwrap(), None);
        assert_eq!(seccomp(&LinuxContainerSecurityContext::default(), &capabilities).unwrap(), None);
    }

    #[test]
    fn the_seccomp_field_wins_over_the_deprecated_path() {
        let sc = LinuxContainerSecurityContext {
            seccomp_profile_path: "runtime/default".to_string(),
            ..sc_with_profile(ProfileType::Unconfined, "")
        };
        assert_eq!(seccomp(&sc, &default_capabilities()).unwrap(), None);
    }

    #[test]
    fn localhost_profiles_are_loaded_from_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("profile.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
        )
        .unwrap();
        let path = file.to_str().unwrap();
        for sc in [
            sc_with_profile(ProfileType::Localhost, path),
            sc_with_profile(ProfileType::Localhost, &format!("localhost/{path}")),
            sc_with_path(&format!("localhost/{path}")),
        ] {
            let profile = seccomp(&sc, &default_capabilities()).unwrap().unwrap();
            assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActLog);
            let rule = &profile.syscalls().as_deref().unwrap()[0];
            assert_eq!((rule.names()[0].as_str(), rule.errno_ret()), ("getcwd", Some(13)));
        }
    }

    #[test]
    fn the_default_profile_round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("default.json");
        let profile = default_profile(&default_capabilities());
        std::fs::write(&file, serde_json::to_string_pretty(&profile).unwrap()).unwrap();
        let sc = sc_with_profile(ProfileType::Localhost, file.to_str().unwrap());
        assert_eq!(seccomp(&sc, &Capabilities::new()).unwrap(), Some(profile));
    }

    /// A profile path that is no regular file (a FIFO would block the read for
    /// ever, a device be read without end) is refused naming the field.
    #[test]
    fn a_profile_that_is_no_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let linked = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &linked).unwrap();
        for (path, kind) in [(&fifo, "a FIFO"), (&linked, "a character device")] {
            let err = seccomp(&sc_with_profile(ProfileType::Localhost, path.to_str().unwrap()), &Capabilities::new())
                .unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("linux.security_context.seccomp.localhost_ref: "), "{message}");
            assert!(message.contains(kind), "{message}");
        }
    }

    #[test]
    fn a_missing_profile_file_is_not_found() {
        let sc = sc_with_profile(ProfileType::Localhost, "/nonexistent/berth/profile.json");
        let err = seccomp(&sc, &default_capabilities()).unwrap_err();
        assert!(
            matches!(&err, SpecError::NotFound { what } if what.contains("/nonexistent/berth/profile.json")),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_profile_names_the_file_and_the_json_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}"#,
        )
        .unwrap();
        let err = seccomp(&sc_with_profile(ProfileType::Localhost, file.to_str().unwrap()), &Capabilities::new())
            .unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("linux.security_context.seccomp.localhost_ref: "), "{message}");
        assert!(message.contains(file.to_str().unwrap()) && message.contains("syscalls[0].action"), "{message}");
    }

    #[test]
    fn docker_conditional_rules_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker.json");
        std::fs::write(
            &file,
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {}},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}]}"#,
        )
        .unwrap();
        let err = seccomp(&sc_with_path(&format!("localhost/{}", file.display())), &Capabilities::new()).unwrap_err();
        assert!(err.to_string().contains("syscalls[1].includes"), "{err}");
    }

    #[test]
    fn bad_requests_name_their_field() {
        let capabilities = default_capabilities();
        let cases = [
            (
                sc_with_profile(ProfileType::Localhost, "relative/profile.json"),
                "linux.security_context.seccomp.localhost_ref",
            ),
            (sc_with_profile(ProfileType::Localhost, ""), "linux.security_context.seccomp.localhost_ref"),
            (
                sc_with_profile(ProfileType::RuntimeDefault, "/some/file.json"),
                "linux.security_context.seccomp.localhost_ref",
            ),
            (sc_with_path("localhost/relative.json"), "linux.security_context.seccomp_profile_path"),
            (sc_with_path("default"), "linux.security_context.seccomp_profile_path"),
        ];
        for (sc, field) in cases {
            assert_eq!(field_of(seccomp(&sc, &capabilities).unwrap_err()), field, "{sc:?}");
        }
        let mut unknown = sc_with_profile(ProfileType::RuntimeDefault, "");
        if let Some(profile) = unknown.seccomp.as_mut() {
            profile.profile_type = 7;
        }
        assert_eq!(
            field_of(seccomp(&unknown, &capabilities).unwrap_err()),
            "linux.security_context.seccomp.profile_type"
        );
    }
}
