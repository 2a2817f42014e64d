//! CRI pod-sandbox messages to and from the sandbox service's types.

use std::collections::BTreeMap;

use crate::cri::v1 as cri;
use tonic::Status;

use super::status_code::to_status;
use crate::idmap::IdMapping;
use crate::sandbox::{
    DnsConfig, Metadata, NamespaceMode, NamespaceModes, PodSpec, PortMapping, SandboxError, SandboxFilter,
    SandboxRecord, SandboxState, SandboxStatus, UserNamespaceRequest,
};

fn invalid(field: &str, reason: impl Into<String>) -> Status {
    to_status(SandboxError::invalid(field, reason))
}

pub fn pod_spec(config: Option<cri::PodSandboxConfig>, runtime_handler: String) -> Result<PodSpec, Status> {
    let config = config.ok_or_else(|| invalid("config", "must be set"))?;
    let metadata = config.metadata.ok_or_else(|| invalid("config.metadata", "must be set"))?;
    let linux = config.linux.unwrap_or_default();
    let options = linux.security_context.and_then(|s| s.namespace_options).unwrap_or_default();
    let mode = |field: &str, value: i32| match cri::NamespaceMode::try_from(value) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        _ => Err(invalid(field, format!("unsupported namespace mode {value} for a pod"))),
    };
    let namespace_modes = NamespaceModes {
        network: mode("namespace_options.network", options.network)?,
        pid: mode("namespace_options.pid", options.pid)?,
        ipc: mode("namespace_options.ipc", options.ipc)?,
    };
    if namespace_modes.network == NamespaceMode::Container || namespace_modes.ipc == NamespaceMode::Container {
        return Err(invalid("namespace_options", "network and IPC namespaces are per pod or per node"));
    }
    let user_namespace = user_namespace(options.userns_options.as_ref())?;
    let port_mappings = config
        .port_mappings
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let port = |field: &str, value: i32| {
                u16::try_from(value)
                    .map_err(|_| invalid(&format!("port_mappings[{i}].{field}"), format!("{value} is not a port")))
            };
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Tcp) => "tcp",
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                Err(_) => return Err(invalid(&format!("port_mappings[{i}].protocol"), "unknown protocol")),
            };
            Ok(PortMapping {
                protocol: protocol.into(),
                container_port: port("container_port", p.container_port)?,
                host_port: port("host_port", p.host_port)?,
                host_ip: p.host_ip.clone(),
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(PodSpec {
        metadata: Metadata {
            name: metadata.name,
            uid: metadata.uid,
            namespace: metadata.namespace,
            attempt: metadata.attempt,
        },
        hostname: config.hostname,
        log_directory: config.log_directory,
        dns: config.dns_config.map(|d| DnsConfig { servers: d.servers, searches: d.searches, options: d.options }),
        port_mappings,
        labels: config.labels.into_iter().collect(),
        annotations: config.annotations.into_iter().collect(),
        cgroup_parent: linux.cgroup_parent,
        namespace_modes,
        sysctls: linux.sysctls.into_iter().collect(),
        runtime_handler,
        user_namespace,
    })
}

fn user_namespace(options: Option<&cri::UserNamespace>) -> Result<UserNamespaceRequest, Status> {
    let Some(options) = options else { return Ok(UserNamespaceRequest::Node) };
    let mappings = |list: &[cri::IdMapping]| {
        list.iter().map(|m| IdMapping { container_id: m.container_id, host_id: m.host_id, length: m.length }).collect()
    };
    match cri::NamespaceMode::try_from(options.mode) {
        Ok(cri::NamespaceMode::Node) => Ok(UserNamespaceRequest::Node),
        Ok(cri::NamespaceMode::Pod) => {
            Ok(UserNamespaceRequest::Pod { uids: mappings(&options.uids), gids: mappings(&options.gids) })
        }
        _ => Err(invalid(
            "linux.security_context.namespace_options.userns_options.mode",
            format!("mode {}: a user namespace is the pod's own (POD) or the node's (NODE)", options.mode),
        )),
    }
}

fn state(state: SandboxState) -> i32 {
    match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn metadata(m: &Metadata) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

fn mode(mode: NamespaceMode) -> i32 {
    match mode {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
    }
}

fn map(m: &BTreeMap<String, String>) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn pod_status(status: SandboxStatus) -> cri::PodSandboxStatusResponse {
    let s = status.sandbox;
    let network = (!s.ips.is_empty()).then(|| cri::PodSandboxNetworkStatus {
        ip: s.ips[0].clone(),
        additional_ips: s.ips[1..].iter().map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    });
    let mapping = |m: &IdMapping| cri::IdMapping { container_id: m.container_id, host_id: m.host_id, length: m.length };
    let userns_options = Some(match &s.user_namespace {
        Some(pod) => cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![mapping(&pod.uids)],
            gids: vec![mapping(&pod.gids)],
        },
        None => cri::UserNamespace { mode: cri::NamespaceMode::Node as i32, ..Default::default() },
    });
    let options = cri::NamespaceOption {
        network: mode(s.namespace_modes.network),
        pid: mode(s.namespace_modes.pid),
        ipc: mode(s.namespace_modes.ipc),
        userns_options,
        ..Default::default()
    };
    cri::PodSandboxStatusResponse {
        status: Some(cri::PodSandboxStatus {
            id: s.id.clone(),
            metadata: Some(metadata(&s.metadata)),
            state: state(s.state),
            created_at: s.created_at,
            network,
            linux: Some(cri::LinuxPodSandboxStatus { namespaces: Some(cri::Namespace { options: Some(options) }) }),
            labels: map(&s.labels),
            annotations: map(&s.annotations),
            runtime_handler: s.runtime_handler.clone(),
        }),
        info: status.info.into_iter().collect(),
        containers_statuses: Vec::new(),
        timestamp: crate::time::now_nanos(),
    }
}

pub fn pod_sandbox(s: SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        metadata: Some(metadata(&s.metadata)),
        state: state(s.state),
        created_at: s.created_at,
        labels: map(&s.labels),
        annotations: map(&s.annotations),
        runtime_handler: s.runtime_handler,
        id: s.id,
    }
}

pub fn filter(filter: Option<cri::PodSandboxFilter>) -> SandboxFilter {
    let Some(f) = filter else { return SandboxFilter::default() };
    SandboxFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state: f.state.map(|s| match cri::PodSandboxState::try_from(s.state) {
            Ok(cri::PodSandboxState::SandboxNotready) => SandboxState::NotReady,
            _ => SandboxState::Ready,
        }),
        labels: f.label_selector.into_iter().collect(),
    }
}
