//! The container's namespaces. User (when the pod has its own), network, IPC
//! and UTS are the pod's, pinned by the sandbox (absent, i.e. the node's, when
//! the pod uses the node's); PID follows the container's own option; mount and
//! cgroup are always new, and owned by the pod's user namespace if it has one.

use std::path::{Path, PathBuf};

use crate::cri::v1::{
    ContainerConfig, IdMapping, LinuxContainerSecurityContext, NamespaceMode as CriMode, NamespaceOption,
};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::SpecError;
use crate::sandbox::infra;
use crate::sandbox::{NamespaceMode, SandboxRecord};

const PID_FIELD: &str = "linux.security_context.namespace_options.pid";
const USERNS_FIELD: &str = "linux.security_context.namespace_options.userns_options";

pub(super) fn build(
    sandbox: &SandboxRecord,
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let options = sc.and_then(|sc| sc.namespace_options.as_ref());
    let modes = &sandbox.namespace_modes;
    let pins = &sandbox.namespaces;
    let user = user_namespace(options, sandbox)?;
    let pod = [
        (LinuxNamespaceType::Network, modes.network, pins.net.as_deref(), "network"),
        (LinuxNamespaceType::Ipc, modes.ipc, pins.ipc.as_deref(), "IPC"),
        // A pod has its own UTS namespace exactly when it has its own network.
        (LinuxNamespaceType::Uts, modes.network, pins.uts.as_deref(), "UTS"),
    ];
    let mut namespaces: Vec<LinuxNamespace> = user.into_iter().collect();
    for (kind, mode, pin, name) in pod {
        if let Some(namespace) = pod_namespace(kind, mode, pin, name)? {
            namespaces.push(namespace);
        }
    }
    if let Some(pid) = pid_namespace(options, sandbox)? {
        namespaces.push(pid);
    }
    namespaces.push(namespace(LinuxNamespaceType::Mount, None));
    namespaces.push(namespace(LinuxNamespaceType::Cgroup, None));
    Ok(namespaces)
}

/// Joins the pod's pinned namespace; none for a pod on the node's. A pod of
/// its own whose pin is gone (a reboot emptied the run root) cannot host a
/// container: running it in the node's namespace instead would be wrong.
fn pod_namespace(
    kind: LinuxNamespaceType,
    mode: NamespaceMode,
    pin: Option<&Path>,
    name: &str,
) -> Result<Option<LinuxNamespace>, SpecError> {
    match (mode, pin) {
        (NamespaceMode::Node, _) => Ok(None),
        (_, Some(pin)) => Ok(Some(namespace(kind, Some(pin.to_path_buf())))),
        (_, None) => Err(SpecError::not_found(format!("the pod's {name} namespace"))),
    }
}

/// The container's PID namespace, by its own option: CONTAINER is a new one,
/// POD the pod's (through its infra process, PID 1 there), NODE the node's.
fn pid_namespace(
    options: Option<&NamespaceOption>,
    sandbox: &SandboxRecord,
) -> Result<Option<LinuxNamespace>, SpecError> {
    let raw = pid_mode(options);
    match CriMode::try_from(raw) {
        Ok(CriMode::Container) => Ok(Some(namespace(LinuxNamespaceType::Pid, None))),
        Ok(CriMode::Node) if sandbox.user_namespace.is_some() => {
            Err(SpecError::invalid(PID_FIELD, "NODE: a pod in its own user namespace cannot see the node's processes"))
        }
        Ok(CriMode::Node) => Ok(None),
        Ok(CriMode::Pod) => pod_pid_namespace(sandbox),
        Ok(CriMode::Target) => Err(SpecError::invalid(PID_FIELD, "TARGET (another container's) is not supported")),
        Err(_) => Err(SpecError::invalid(PID_FIELD, format!("unknown namespace mode {raw}"))),
    }
}

/// Whether `config` asks for the pod's PID namespace; an absent option is the
/// CRI default, POD.
pub fn asks_for_pod_pid_namespace(config: &ContainerConfig) -> bool {
    let options = config.linux.as_ref().and_then(|linux| linux.security_context.as_ref());
    pid_mode(options.and_then(|sc| sc.namespace_options.as_ref())) == CriMode::Pod as i32
}

fn pid_mode(options: Option<&NamespaceOption>) -> i32 {
    options.map_or(CriMode::Pod as i32, |options| options.pid)
}

/// The pod's PID namespace: its infra process's, or the node's for a pod on
/// the node's. The infra process of a pod created without one was started
/// before the spec is built (`SandboxService::share_pid_namespace`).
fn pod_pid_namespace(sandbox: &SandboxRecord) -> Result<Option<LinuxNamespace>, SpecError> {
    if sandbox.namespace_modes.pid == NamespaceMode::Node {
        return Ok(None);
    }
    let Some(process) = sandbox.infra.as_ref() else {
        return Err(SpecError::not_found("the pod's infra process (holding its PID namespace)"));
    };
    // A dead infra process's PID may have been reused by an unrelated one.
    if !infra::is_running(process) {
        return Err(SpecError::not_found("the pod's infra process (holding its PID namespace)"));
    }
    Ok(Some(namespace(LinuxNamespaceType::Pid, Some(infra_pid_namespace(process.pid)))))
}

fn infra_pid_namespace(pid: i32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/pid"))
}

/// The pod's user namespace, for every container of a pod that has one (a
/// container config that names none is taken as asking for it: its pod's
/// namespaces own everything it could reach); none in a pod on the node's.
fn user_namespace(options: Option<&NamespaceOption>, sandbox: &SandboxRecord) -> Result<Option<LinuxNamespace>, SpecError> {
    let asked = options.and_then(|options| options.userns_options.as_ref());
    let mode = asked.map(|userns| CriMode::try_from(userns.mode));
    match (mode, &sandbox.user_namespace, &sandbox.namespaces.user) {
        (None | Some(Ok(CriMode::Node)), None, _) => Ok(None),
        (None | Some(Ok(CriMode::Pod)), Some(pod), Some(pin)) => {
            let given = asked.map(|userns| (&userns.uids, &userns.gids));
            if let Some((uids, gids)) = given
                && !(uids.is_empty() && gids.is_empty())
                && !(same_mapping(uids, &pod.uids) && same_mapping(gids, &pod.gids))
            {
                return Err(SpecError::invalid(USERNS_FIELD, "the mappings differ from the pod's"));
            }
            Ok(Some(namespace(LinuxNamespaceType::User, Some(pin.clone()))))
        }
        (_, Some(_), None) => Err(SpecError::not_found("the pod's user namespace")),
        (Some(Ok(CriMode::Pod)), None, _) => {
            Err(SpecError::invalid(USERNS_FIELD, "POD: the pod has no user namespace of its own"))
        }
        (Some(Ok(CriMode::Node)), Some(_), _) => {
            Err(SpecError::invalid(USERNS_FIELD, "NODE: the pod runs in a user namespace of its own, and so do its containers"))
        }
        (Some(_), ..) => Err(SpecError::invalid(USERNS_FIELD, "a container's user namespace is its pod's or the node's")),
    }
}

fn same_mapping(given: &[IdMapping], pod: &crate::idmap::IdMapping) -> bool {
    matches!(given, [one] if one.container_id == pod.container_id && one.host_id == pod.host_id && one.length == pod.length)
}

fn namespace(kind: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut namespace = LinuxNamespace::default();
    namespace.set_typ(kind).set_path(path);
    namespace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::fixtures;
    use crate::sandbox::infra::InfraProcess;
    use crate::cri::v1::UserNamespace;

    fn entries(namespaces: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        namespaces.iter().map(|ns| (ns.typ(), ns.path().clone())).collect()
    }

    fn with_pid(mode: CriMode) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption { pid: mode as i32, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_namespaces_are_joined_through_their_pins() {
        let sandbox = fixtures::sandbox();
        let got = entries(&build(&sandbox, Some(&with_pid(CriMode::Container))).unwrap());
        assert_eq!(
            got,
            vec![
                (LinuxNamespaceType::Network, Some(PathBuf::from("/run/berth/pods/p/ns/net"))),
                (LinuxNamespaceType::Ipc, Some(PathBuf::from("/run/berth/pods/p/ns/ipc"))),
                (LinuxNamespaceType::Uts, Some(PathBuf::from("/run/berth/pods/p/ns/uts"))),
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Cgroup, None),
            ]
        );
    }

    #[test]
    fn host_network_and_ipc_pods_have_no_entries_for_them() {
        let mut sandbox = fixtures::sandbox();
        sandbox.namespace_modes.network = NamespaceMode::Node;
        sandbox.namespace_modes.ipc = NamespaceMode::Node;
        sandbox.namespaces = Default::default();
        let got = entries(&build(&sandbox, Some(&with_pid(CriMode::Node))).unwrap());
        assert_eq!(got, vec![(LinuxNamespaceType::Mount, None), (LinuxNamespaceType::Cgroup, None)]);
    }

    #[test]
    fn a_vanished_pin_is_not_found() {
        let mut sandbox = fixtures::sandbox();
        sandbox.namespaces.net = None;
        let err = build(&sandbox, Some(&with_pid(CriMode::Container))).unwrap_err();
        assert!(matches!(err, SpecError::NotFound { .. }), "{err}");
    }

    #[test]
    fn pod_pid_joins_the_infra_process() {
        let mut sandbox = fixtures::sandbox();
        // This test process stands in for the infra process: it is alive.
        let pid = std::process::id() as i32;
        let start_time = crate::procfs::stat(pid).unwrap().start_time;
        sandbox.infra = Some(InfraProcess { pid, start_time });
        let got = entries(&build(&sandbox, Some(&with_pid(CriMode::Pod))).unwrap());
        assert!(got.contains(&(LinuxNamespaceType::Pid, Some(PathBuf::from(format!("/proc/{pid}/ns/pid"))))));

        // The CRI default (no options) is POD too.
        assert!(
            entries(&build(&sandbox, None).unwrap())
                .contains(&(LinuxNamespaceType::Pid, Some(infra_pid_namespace(pid))))
        );

        sandbox.infra = Some(InfraProcess { pid, start_time: start_time + 1 });
        assert!(matches!(build(&sandbox, Some(&with_pid(CriMode::Pod))), Err(SpecError::NotFound { .. })));
    }

    #[test]
    fn target_is_invalid_and_pod_without_infra_is_not_found() {
        let sandbox = fixtures::sandbox();
        let err = build(&sandbox, Some(&with_pid(CriMode::Target))).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == PID_FIELD), "{err}");
        // The infra process is started before the spec is built; its absence
        // here means it vanished.
        let err = build(&sandbox, Some(&with_pid(CriMode::Pod))).unwrap_err();
        assert!(matches!(err, SpecError::NotFound { .. }), "{err}");
    }

    #[test]
    fn pod_pid_in_a_pod_on_the_node_pid_namespace_is_the_node() {
        let mut sandbox = fixtures::sandbox();
        sandbox.namespace_modes.pid = NamespaceMode::Node;
        let got = entries(&build(&sandbox, Some(&with_pid(CriMode::Pod))).unwrap());
        assert!(!got.iter().any(|(kind, _)| *kind == LinuxNamespaceType::Pid), "{got:?}");
    }

    #[test]
    fn only_configs_asking_for_pod_need_the_pod_pid_namespace() {
        use crate::cri::v1::LinuxContainerConfig;
        let config = |sc: Option<LinuxContainerSecurityContext>| ContainerConfig {
            linux: Some(LinuxContainerConfig { security_context: sc, ..Default::default() }),
            ..Default::default()
        };
        assert!(asks_for_pod_pid_namespace(&ContainerConfig::default()));
        assert!(asks_for_pod_pid_namespace(&config(None)));
        assert!(asks_for_pod_pid_namespace(&config(Some(with_pid(CriMode::Pod)))));
        assert!(!asks_for_pod_pid_namespace(&config(Some(with_pid(CriMode::Container)))));
        assert!(!asks_for_pod_pid_namespace(&config(Some(with_pid(CriMode::Node)))));
    }

    #[test]
    fn containers_join_their_pods_user_namespace_and_no_other() {
        let userns = |mode: CriMode, uids: Vec<IdMapping>| {
            let mut sc = with_pid(CriMode::Container);
            if let Some(options) = sc.namespace_options.as_mut() {
                options.userns_options = Some(UserNamespace { mode: mode as i32, gids: uids.clone(), uids });
            }
            sc
        };
        let plain = fixtures::sandbox();
        assert!(build(&plain, Some(&userns(CriMode::Pod, vec![]))).is_err(), "POD in a pod without one");
        let listed = build(&plain, Some(&userns(CriMode::Node, vec![]))).unwrap();
        assert!(listed.iter().all(|ns| ns.typ() != LinuxNamespaceType::User));

        let mut pod = fixtures::sandbox();
        let range = crate::idmap::IdMapping { container_id: 0, host_id: 65536, length: 65536 };
        pod.user_namespace = Some(crate::idmap::UserNamespaceMappings { uids: range, gids: range });
        pod.namespaces.user = Some(PathBuf::from("/run/berth/pods/p/ns/user"));
        let kubelets = vec![IdMapping { container_id: 0, host_id: 65536, length: 65536 }];
        for sc in [userns(CriMode::Pod, kubelets), userns(CriMode::Pod, vec![]), with_pid(CriMode::Container)] {
            let joined = entries(&build(&pod, Some(&sc)).unwrap());
            assert_eq!(joined[0], (LinuxNamespaceType::User, Some(PathBuf::from("/run/berth/pods/p/ns/user"))));
        }
        let other = vec![IdMapping { container_id: 0, host_id: 1000, length: 65536 }];
        assert!(build(&pod, Some(&userns(CriMode::Pod, other))).is_err(), "other mappings");
        assert!(build(&pod, Some(&userns(CriMode::Node, vec![]))).is_err(), "the node's, beside the pod's namespaces");
        assert!(build(&pod, Some(&userns(CriMode::Container, vec![]))).is_err());
        assert!(build(&pod, Some(&with_pid(CriMode::Node))).is_err(), "the node's PID namespace");
    }
}
