//! berth's records as NRI describes pods and containers to plugins.

use crate::container::{ContainerRecord, ContainerState};
use crate::sandbox::SandboxRecord;

use super::api;

pub fn pod(sandbox: &SandboxRecord) -> api::PodSandbox {
    let pins = &sandbox.namespaces;
    let namespaces = [("network", &pins.net), ("ipc", &pins.ipc), ("uts", &pins.uts), ("user", &pins.user)]
        .into_iter()
        .filter_map(|(kind, pin)| {
            pin.as_ref().map(|path| api::LinuxNamespace { r#type: kind.into(), path: path.display().to_string() })
        })
        .collect();
    api::PodSandbox {
        id: sandbox.id.clone(),
        name: sandbox.metadata.name.clone(),
        uid: sandbox.metadata.uid.clone(),
        namespace: sandbox.metadata.namespace.clone(),
        labels: sandbox.labels.clone().into_iter().collect(),
        annotations: sandbox.annotations.clone().into_iter().collect(),
        runtime_handler: sandbox.runtime_handler.clone(),
        linux: Some(api::LinuxPodSandbox {
            cgroup_parent: sandbox.cgroup_parent.clone(),
            namespaces,
            ..Default::default()
        }),
        pid: sandbox.infra.map_or(0, |infra| u32::try_from(infra.pid).unwrap_or(0)),
        ips: sandbox.ips.clone(),
    }
}

/// A container as it is recorded; `args` and `env` as its config gave them.
pub fn container(record: &ContainerRecord) -> api::Container {
    let config = record.config();
    let state = match record.state {
        ContainerState::Created => api::ContainerState::ContainerCreated,
        ContainerState::Running => api::ContainerState::ContainerRunning,
        ContainerState::Exited => api::ContainerState::ContainerStopped,
    };
    let running = record.state == ContainerState::Running;
    api::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox_id.clone(),
        name: record.metadata.name.clone(),
        state: state as i32,
        labels: record.labels.clone().into_iter().collect(),
        annotations: record.annotations.clone().into_iter().collect(),
        args: config.command.iter().chain(config.args.iter()).cloned().collect(),
        env: config.envs.iter().map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value))).collect(),
        pid: if running { u32::try_from(record.pid).unwrap_or(0) } else { 0 },
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.exit.map_or(0, |exit| exit.exited_at),
        exit_code: record.exit.map_or(0, |exit| exit.exit_code),
        status_reason: record.exit_reason(),
        status_message: record.message.clone(),
        ..Default::default()
    }
}

/// CRI resources as NRI's (what UpdateContainer tells plugins).
pub fn resources(cri: &crate::cri::v1::LinuxContainerResources) -> api::LinuxResources {
    let int64 = |value: i64| (value != 0).then_some(api::OptionalInt64 { value });
    let uint64 = |value: i64| u64::try_from(value).ok().filter(|v| *v != 0).map(|value| api::OptionalUInt64 { value });
    api::LinuxResources {
        memory: Some(api::LinuxMemory {
            limit: int64(cri.memory_limit_in_bytes),
            swap: int64(cri.memory_swap_limit_in_bytes),
            ..Default::default()
        }),
        cpu: Some(api::LinuxCpu {
            shares: uint64(cri.cpu_shares),
            quota: int64(cri.cpu_quota),
            period: uint64(cri.cpu_period),
            cpus: cri.cpuset_cpus.clone(),
            mems: cri.cpuset_mems.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// NRI resources as the CRI's, onto `current` (what a plugin's update changes).
pub(crate) fn cri_resources(
    nri: &api::LinuxResources,
    mut current: crate::cri::v1::LinuxContainerResources,
) -> crate::cri::v1::LinuxContainerResources {
    if let Some(memory) = &nri.memory {
        if let Some(limit) = &memory.limit {
            current.memory_limit_in_bytes = limit.value;
        }
        if let Some(swap) = &memory.swap {
            current.memory_swap_limit_in_bytes = swap.value;
        }
    }
    if let Some(cpu) = &nri.cpu {
        if let Some(shares) = &cpu.shares {
            current.cpu_shares = i64::try_from(shares.value).unwrap_or(i64::MAX);
        }
        if let Some(quota) = &cpu.quota {
            current.cpu_quota = quota.value;
        }
        if let Some(period) = &cpu.period {
            current.cpu_period = i64::try_from(period.value).unwrap_or(i64::MAX);
        }
        if !cpu.cpus.is_empty() {
            current.cpuset_cpus = cpu.cpus.clone();
        }
        if !cpu.mems.is_empty() {
            current.cpuset_mems = cpu.mems.clone();
        }
    }
    current
}
