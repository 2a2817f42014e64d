//! The `RuntimeConfig` and `UpdateRuntimeConfig` RPCs.

use super::Daemon;
use crate::config::CgroupDriver;

impl Daemon {
    /// kubelet reads this once at start to lay out its cgroup hierarchy.
    pub fn cgroup_driver(&self) -> CgroupDriver {
        self.config.cgroup_driver
    }

    /// kubelet sends the node's pod CIDR once it is known; an empty string clears it.
    pub fn update_pod_cidr(&self, pod_cidr: &str) {
        let cidr = (!pod_cidr.is_empty()).then(|| pod_cidr.to_string());
        if cidr != self.network.pod_cidr() {
            tracing::info!(pod_cidr = cidr.as_deref().unwrap_or(""), "pod CIDR updated");
        }
        self.network.set_pod_cidr(cidr);
    }
}
