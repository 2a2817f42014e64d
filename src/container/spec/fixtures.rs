//! Test fixtures shared by the spec builder's tests.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::HostFacts;
use crate::config::CgroupDriver;
use crate::sandbox::record::PodNamespaces;
use crate::sandbox::{Metadata, NamespaceMode, NamespaceModes, SandboxRecord, SandboxState};

/// A ready pod with its own network, IPC and UTS namespaces, pinned under
/// `/run/berth/pods/p/ns`, and no shared PID namespace.
pub fn sandbox() -> SandboxRecord {
    let ns = PathBuf::from("/run/berth/pods/p/ns");
    SandboxRecord {
        id: "p".repeat(64),
        metadata: Metadata { name: "pod".into(), uid: "uid-1".into(), namespace: "default".into(), attempt: 0 },
        state: SandboxState::Ready,
        created_at: 0,
        hostname: "pod-host".into(),
        log_directory: "/var/log/pods/p".into(),
        runtime_handler: "runc".into(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        namespace_modes: NamespaceModes {
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Container,
            ipc: NamespaceMode::Pod,
        },
        cgroup_parent: "/kubepods/burstable/pod1".into(),
        sysctls: BTreeMap::new(),
        dns: None,
        port_mappings: Vec::new(),
        namespaces: PodNamespaces {
            net: Some(ns.join("net")),
            ipc: Some(ns.join("ipc")),
            uts: Some(ns.join("uts")),
            shm: Some(PathBuf::from("/run/berth/pods/p/shm")),
            user: None,
        },
        user_namespace: None,
        ips: vec!["10.88.0.2".into()],
        resolv_conf: PathBuf::from("/var/lib/berth/pods/p/resolv.conf"),
        hostname_file: PathBuf::from("/var/lib/berth/pods/p/hostname"),
        infra: None,
        infra_cgroups: Vec::new(),
    }
}

pub fn host() -> HostFacts {
    HostFacts {
        cgroup_driver: CgroupDriver::Cgroupfs,
        min_oom_score_adj: -1000,
        capabilities: u64::MAX,
        max_nofile: u64::MAX,
        apparmor: false,
        selinux: false,
    }
}
