//! The pod's infra process, which holds a PID namespace its containers share.
//! A pod created with PID mode POD starts it in RunPodSandbox. A pod created
//! with CONTAINER starts it only when a container asks for POD (the CRI
//! default, so any config without namespace options, as crictl's README
//! files): containerd runs such a container in its pause container's PID
//! namespace, and berth does the same without making every pod pay for an
//! infra process it may never need.

use std::path::PathBuf;

use super::error::SandboxError;
use super::infra::{self, InfraProcess};
use super::record::{self, NamespaceMode, PodNamespaces, SandboxRecord, SandboxState};
use super::{SandboxService, cgroups};

impl SandboxService {
    /// The sandbox, with an infra process holding a pod-wide PID namespace
    /// (started now if it had none). A pod on the node's PID namespace, or one
    /// no longer ready, is returned as it is: the container's spec decides.
    pub async fn share_pid_namespace(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        let mut sandbox = record::get(&self.store, id)?.ok_or_else(|| SandboxError::NotFound(id.to_string()))?;
        if sandbox.infra.is_some()
            || sandbox.state != SandboxState::Ready
            || sandbox.namespace_modes.pid == NamespaceMode::Node
        {
            return Ok(sandbox);
        }
        let (process, cgroup_dirs) = self.start_infra(&sandbox.namespaces, id, &sandbox.cgroup_parent).await?;
        sandbox.infra = Some(process);
        sandbox.infra_cgroups = cgroup_dirs.clone();
        if let Err(e) = record::save(&self.store, &sandbox) {
            stop_infra(process, cgroup_dirs).await;
            return Err(e);
        }
        tracing::info!(sandbox = %id, pid = process.pid, "pod-wide PID namespace started for a container asking for it");
        Ok(sandbox)
    }

    /// Starts `berth pause` in the pod's namespaces and, when the pod names a
    /// cgroup parent, places it there; nothing is left running on failure.
    pub(super) async fn start_infra(
        &self,
        pins: &PodNamespaces,
        id: &str,
        cgroup_parent: &str,
    ) -> Result<(InfraProcess, Vec<PathBuf>), SandboxError> {
        let (infra_pins, infra_dir) = (pins.clone(), self.run_dir(id));
        let process = tokio::task::spawn_blocking(move || infra::start(&infra_pins, &infra_dir))
            .await
            .map_err(|e| SandboxError::host("infra task", e))??;
        if cgroup_parent.is_empty() {
            return Ok((process, Vec::new()));
        }
        match cgroups::place(cgroup_parent, self.config.cgroup_driver, &format!("berth-{id}"), process.pid) {
            Ok(dirs) => Ok((process, dirs)),
            Err(e) => {
                stop_infra(process, Vec::new()).await;
                Err(e)
            }
        }
    }
}

/// Stops the infra process and removes its cgroups, off the async workers.
pub(super) async fn stop_infra(process: InfraProcess, cgroup_dirs: Vec<PathBuf>) {
    infra::stop(&process);
    // Removing a cgroup waits for the kernel to let go of it: off the workers.
    let _ = tokio::task::spawn_blocking(move || cgroups::remove(&cgroup_dirs)).await;
}
