//! The `ContainerStats` and `ListContainerStats` RPCs: the container's cgroup
//! figures and its writable layer's size.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::record::{ContainerRecord, ContainerState};
use super::{ContainerError, ContainerFilter, ContainerService};
use crate::images::snapshots::{Usage, disk_usage};
use crate::stats::CgroupUsage;

/// How long a writable layer's measured size is reused. Walking a layer costs a
/// stat per file; kubelet asks every 10 s or so for every container, and a
/// layer's size is a slow-moving figure (cadvisor measures it once a minute).
const LAYER_USAGE_TTL: Duration = Duration::from_secs(10);

pub struct ContainerUsage {
    pub container: ContainerRecord,
    /// When the figures were read, Unix nanoseconds.
    pub timestamp: i64,
    pub cgroup: CgroupUsage,
    pub nano_cores: Option<u64>,
    pub writable_layer: Usage,
    /// The filesystem the writable layer is on (berth's state root).
    pub layer_mountpoint: PathBuf,
}

/// Writable layer sizes measured recently, by container ID.
#[derive(Default)]
pub(super) struct LayerUsageCache {
    measured: Mutex<HashMap<String, (Instant, Usage)>>,
}

impl ContainerService {
    pub fn stats(&self, wanted: &str) -> Result<ContainerUsage, ContainerError> {
        let container = self.current(self.find(wanted)?);
        Ok(self.usage(container))
    }

    /// Stats of the containers `filter` selects that have not exited (an exited
    /// container has no cgroup left to read).
    pub fn list_stats(&self, filter: &ContainerFilter) -> Result<Vec<ContainerUsage>, ContainerError> {
        let containers = self.list(filter)?;
        let live: Vec<ContainerRecord> = containers.into_iter().filter(|c| c.state != ContainerState::Exited).collect();
        Ok(live.into_iter().map(|c| self.usage(c)).collect())
    }

    fn usage(&self, container: ContainerRecord) -> ContainerUsage {
        let timestamp = crate::time::now_nanos();
        let cgroup = if container.state == ContainerState::Exited || container.cgroup.is_empty() {
            CgroupUsage::default()
        } else {
            self.hierarchy.read(&container.cgroup)
        };
        let nano_cores = cgroup.cpu_ns.and_then(|cpu| self.cpu_rates.rate(&container.id, timestamp, cpu));
        let writable_layer = self.layer_usage(&container.id);
        ContainerUsage {
            container,
            timestamp,
            cgroup,
            nano_cores,
            writable_layer,
            layer_mountpoint: self.config.state_root.clone(),
        }
    }

    fn layer_usage(&self, id: &str) -> Usage {
        let cached = {
            let measured = self.layer_usage.measured.lock().unwrap_or_else(|p| p.into_inner());
            measured.get(id).filter(|(at, _)| at.elapsed() < LAYER_USAGE_TTL).map(|(_, usage)| *usage)
        };
        if let Some(usage) = cached {
            return usage;
        }
        let usage = disk_usage(&self.state_dir(id).join("upper"));
        let mut measured = self.layer_usage.measured.lock().unwrap_or_else(|p| p.into_inner());
        measured.insert(id.to_string(), (Instant::now(), usage));
        usage
    }

    /// Forgets the samples of a removed container.
    pub(super) fn forget_usage(&self, id: &str) {
        self.layer_usage.measured.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.cpu_rates.retain(|key| key != id);
    }
}
