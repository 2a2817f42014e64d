//! `PodSandboxStats` and `ListPodSandboxStats`: the pod's cgroup (or the sum of its
//! containers' when it has no cgroup parent), its network counters and process
//! count, and every container's stats.

use std::collections::HashMap;

use super::{Daemon, PodError};
use crate::container::{ContainerFilter, ContainerUsage};
use crate::sandbox::{NamespaceMode, SandboxError, SandboxFilter, SandboxRecord, SandboxState};
use crate::stats::{CgroupUsage, InterfaceUsage, MemoryFigures, cgroup, network};

pub struct PodUsage {
    pub sandbox: SandboxRecord,
    pub timestamp: i64,
    pub cgroup: CgroupUsage,
    pub nano_cores: Option<u64>,
    /// The pod network's interfaces (none for a host-network pod or one with no
    /// process to read them through).
    pub interfaces: Vec<InterfaceUsage>,
    pub containers: Vec<ContainerUsage>,
}

impl Daemon {
    pub fn pod_stats(&self, wanted: &str) -> Result<PodUsage, PodError> {
        let sandbox = self.sandboxes.find(wanted)?.ok_or_else(|| SandboxError::NotFound(wanted.to_string()))?;
        let filter = ContainerFilter { sandbox_id: Some(sandbox.id.clone()), ..Default::default() };
        let containers = self.containers.list_stats(&filter)?;
        Ok(self.pod_usage(sandbox, containers))
    }

    /// Stats of the ready pods `filter` selects. The containers are listed once
    /// for all pods, not once per pod.
    pub fn list_pod_stats(&self, filter: &SandboxFilter) -> Result<Vec<PodUsage>, PodError> {
        let pods = self.sandboxes.list(filter)?;
        let mut by_pod: HashMap<String, Vec<ContainerUsage>> = HashMap::new();
        for usage in self.containers.list_stats(&ContainerFilter::default())? {
            by_pod.entry(usage.container.sandbox_id.clone()).or_default().push(usage);
        }
        Ok(pods
            .into_iter()
            .filter(|pod| pod.state == SandboxState::Ready)
            .map(|pod| {
                let containers = by_pod.remove(&pod.id).unwrap_or_default();
                self.pod_usage(pod, containers)
            })
            .collect())
    }

    fn pod_usage(&self, sandbox: SandboxRecord, containers: Vec<ContainerUsage>) -> PodUsage {
        let timestamp = crate::time::now_nanos();
        let mut usage = if sandbox.cgroup_parent.is_empty() {
            sum(containers.iter().map(|c| &c.cgroup))
        } else {
            self.hierarchy.read(&cgroup::parent_path(&sandbox.cgroup_parent))
        };
        // cgroup.procs lists a cgroup's own processes, not its children's.
        let processes: u64 = containers.iter().filter_map(|c| c.cgroup.processes).sum();
        usage.processes = Some(processes + u64::from(sandbox.infra.is_some()));
        let nano_cores = usage.cpu_ns.and_then(|cpu| self.pod_cpu_rates.rate(&sandbox.id, timestamp, cpu));
        let reader = containers.iter().map(|c| c.container.pid).find(|pid| *pid > 0).or(sandbox.infra.map(|i| i.pid));
        let interfaces = match reader {
            Some(pid) if sandbox.namespace_modes.network != NamespaceMode::Node => network::interfaces_of(pid),
            _ => Vec::new(),
        };
        PodUsage { sandbox, timestamp, cgroup: usage, nano_cores, interfaces, containers }
    }
}

/// The pod's figures as the sum of its containers' (a pod without a cgroup parent).
fn sum<'a>(cgroups: impl Iterator<Item = &'a CgroupUsage>) -> CgroupUsage {
    let mut total = CgroupUsage::default();
    for usage in cgroups {
        if let Some(cpu) = usage.cpu_ns {
            total.cpu_ns = Some(total.cpu_ns.unwrap_or(0) + cpu);
        }
        if let Some(memory) = &usage.memory {
            let t = total.memory.get_or_insert_with(MemoryFigures::default);
            t.usage += memory.usage;
            t.working_set += memory.working_set;
            t.rss += memory.rss;
            t.page_faults += memory.page_faults;
            t.major_page_faults += memory.major_page_faults;
        }
    }
    total
}
