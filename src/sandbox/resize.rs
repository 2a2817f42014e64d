//! The `UpdatePodSandboxResources` RPC: after kubelet resizes a pod, the pod's
//! cgroup parent gets its new limits, the containers' sum plus the pod's
//! overhead. kubelet owns that cgroup and writes the same limits itself; the
//! runtime applying them keeps a parent berth alone sees (another CRI client's)
//! in step. A pod with no cgroup parent of its own has nothing to resize.

use std::path::Path;

use crate::cri::v1::LinuxContainerResources;
use crate::stats::cgroup::{is_unified_host, mounted_hierarchies};

use super::error::SandboxError;
use super::{SandboxService, cgroups};

impl SandboxService {
    pub async fn update_resources(
        &self,
        wanted: &str,
        resources: Option<&LinuxContainerResources>,
        overhead: Option<&LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        let sandbox = self.find(wanted)?.ok_or_else(|| SandboxError::NotFound(wanted.to_string()))?;
        let limits = pod_limits(resources, overhead)?;
        // Plugins hear of every resize, cgroup parent or not.
        self.nri.update_pod_sandbox(&sandbox, resources, overhead).await?;
        if sandbox.cgroup_parent.is_empty() {
            self.nri.post_update_pod_sandbox(&sandbox).await;
            return Ok(());
        }
        let parent = cgroups::relative_parent(&sandbox.cgroup_parent, self.config.cgroup_driver);
        let write = move || {
            write_limits(&parent, &limits).map_err(|e| SandboxError::host(format!("the pod's cgroup {parent}"), e))
        };
        tokio::task::spawn_blocking(write).await.map_err(|e| SandboxError::host("cgroup update task", e))??;
        self.nri.post_update_pod_sandbox(&sandbox).await;
        Ok(())
    }
}

/// The limits a resize sets; None leaves a limit as it is.
#[derive(Debug, Default, PartialEq, Eq)]
struct PodLimits {
    memory: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    cpu_shares: Option<u64>,
}

/// The pod's limits: each the containers' sum plus the overhead; a field the
/// containers leave unset (0) stays unset, whatever the overhead.
fn pod_limits(
    resources: Option<&LinuxContainerResources>,
    overhead: Option<&LinuxContainerResources>,
) -> Result<PodLimits, SandboxError> {
    let zero = LinuxContainerResources::default();
    let (sum, extra) = (resources.unwrap_or(&zero), overhead.unwrap_or(&zero));
    let plus = |field: &str, value: i64, more: i64| -> Result<Option<i64>, SandboxError> {
        if value == 0 {
            return Ok(None);
        }
        if value < 0 || more < 0 {
            return Err(SandboxError::invalid(&format!("resources.{field}"), "must not be negative"));
        }
        Ok(Some(value.saturating_add(more)))
    };
    Ok(PodLimits {
        memory: plus("memory_limit_in_bytes", sum.memory_limit_in_bytes, extra.memory_limit_in_bytes)?,
        cpu_quota: plus("cpu_quota", sum.cpu_quota, extra.cpu_quota)?,
        cpu_period: plus("cpu_period", sum.cpu_period, 0)?.map(i64::unsigned_abs),
        cpu_shares: plus("cpu_shares", sum.cpu_shares, extra.cpu_shares)?.map(i64::unsigned_abs),
    })
}

/// Only the memory and CPU files: a cgroup library applying a whole resource
/// set would also rewrite the pod's device rules, which its containers inherit.
fn write_limits(parent: &str, limits: &PodLimits) -> std::io::Result<()> {
    let write = |dir: &Path, file: &str, value: Option<String>| match value {
        Some(value) => std::fs::write(dir.join(file), value),
        None => Ok(()),
    };
    if is_unified_host() {
        let dir = Path::new("/sys/fs/cgroup").join(parent);
        write(&dir, "memory.max", limits.memory.map(|m| m.to_string()))?;
        let period = limits.cpu_period.unwrap_or(100_000);
        write(&dir, "cpu.max", limits.cpu_quota.map(|q| format!("{q} {period}")))?;
        // cgroup v2's weight for v1 shares, as runc converts them.
        let weight = |shares: u64| 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
        return write(&dir, "cpu.weight", limits.cpu_shares.map(|s| weight(s).to_string()));
    }
    for hierarchy in mounted_hierarchies() {
        let name = hierarchy.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let controllers: Vec<&str> = name.split(',').collect();
        let dir = hierarchy.root.join(parent);
        if controllers.contains(&"memory") {
            write(&dir, "memory.limit_in_bytes", limits.memory.map(|m| m.to_string()))?;
        }
        if controllers.contains(&"cpu") {
            // The period first: the kernel checks the quota against it.
            write(&dir, "cpu.cfs_period_us", limits.cpu_period.map(|p| p.to_string()))?;
            write(&dir, "cpu.cfs_quota_us", limits.cpu_quota.map(|q| q.to_string()))?;
            write(&dir, "cpu.shares", limits.cpu_shares.map(|s| s.to_string()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_gets_the_sum_plus_overhead_and_unset_stays_unset() {
        let sum = LinuxContainerResources { memory_limit_in_bytes: 200 << 20, cpu_quota: 50_000, cpu_period: 100_000, ..Default::default() };
        let overhead = LinuxContainerResources { memory_limit_in_bytes: 10 << 20, cpu_quota: 5_000, cpu_shares: 100, ..Default::default() };
        let limits = pod_limits(Some(&sum), Some(&overhead)).unwrap();
        let expected =
            PodLimits { memory: Some(210 << 20), cpu_quota: Some(55_000), cpu_period: Some(100_000), cpu_shares: None };
        assert_eq!(limits, expected);
        let negative = LinuxContainerResources { memory_limit_in_bytes: -1, ..Default::default() };
        assert!(pod_limits(Some(&negative), None).is_err());
    }
}
