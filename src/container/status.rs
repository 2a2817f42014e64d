//! The `ContainerStatus` RPC.

use std::collections::BTreeMap;

use super::record::{ContainerRecord, ContainerState};
use super::{ContainerError, ContainerService};
use crate::monitor::read_exit_file;

pub struct ContainerStatus {
    pub container: ContainerRecord,
    pub config: crate::cri::v1::ContainerConfig,
    /// Verbose only: JSON details keyed by topic.
    pub info: BTreeMap<String, String>,
}

impl ContainerService {
    pub fn status(&self, wanted: &str, verbose: bool) -> Result<ContainerStatus, ContainerError> {
        let container = self.current(self.find(wanted)?);
        let mut info = BTreeMap::new();
        if verbose {
            let spec: serde_json::Value = std::fs::read(self.run_dir(&container.id).join("config.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            let running = container.state != ContainerState::Exited;
            let details = serde_json::json!({
                "sandboxID": container.sandbox_id,
                "pid": if running { container.pid } else { 0 },
                "monitorPid": if running { container.monitor_pid } else { 0 },
                "runtimeHandler": container.runtime_handler,
                "snapshotKey": container.image.top_chain_id,
                "rootfs": self.rootfs_paths(&container.id).mount_point,
                "logPath": container.log_path,
                "runtimeSpec": spec,
            });
            info.insert("info".to_string(), details.to_string());
        }
        let config = container.config();
        Ok(ContainerStatus { container, config, info })
    }

    /// The record as it is now: an exit the monitor recorded that berth has not
    /// folded in yet (its watcher is about to) is shown already.
    pub(super) fn current(&self, mut container: ContainerRecord) -> ContainerRecord {
        if container.state != ContainerState::Exited
            && let Ok(Some(exit)) = read_exit_file(&self.exit_file(&container.id))
        {
            container.record_exit(exit, "", "");
        }
        container
    }
}
