//! Pod sandbox configs as kubelet sends them, for tests and the benchmark.
#![allow(dead_code)]

use std::collections::HashMap;

use berth::cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata,
};

/// A pod named `name` in `default`, labelled `app=<name>`.
pub fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        // As kubelet sends it: in the CRI, 0 (POD) would mean a shared PID namespace.
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(container_pid()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Namespace options with a PID namespace per container (kubelet's default).
pub fn container_pid() -> NamespaceOption {
    NamespaceOption { pid: NamespaceMode::Container as i32, ..Default::default() }
}
