//! The `StopPodSandbox` RPC: idempotent, and succeeds for an unknown ID.

use super::error::SandboxError;
use super::record::{self, PodNamespaces, SandboxRecord, SandboxState};
use super::{SandboxService, cgroups, infra, namespaces};

impl SandboxService {
    /// Tears the pod's network down and releases its namespaces; the sandbox
    /// stays listed, NOTREADY, until removed. kubelet calls this several times.
    pub async fn stop(&self, wanted: &str) -> Result<(), SandboxError> {
        let Some(id) = self.resolve(wanted)? else { return Ok(()) };
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(mut sandbox) = record::get(&self.store, &id)? else { return Ok(()) };
        self.stop_locked(&mut sandbox).await
    }

    /// The work of a stop, for a caller holding the sandbox's lock.
    pub(super) async fn stop_locked(&self, sandbox: &mut SandboxRecord) -> Result<(), SandboxError> {
        // The pod's containers were killed before (Daemon::stop_pod_sandbox);
        // plugins hear of the stop while the pod is still whole, once.
        if sandbox.state == SandboxState::Ready {
            self.nri.stop_pod_sandbox(sandbox).await;
        }
        // The network goes first: CNI DEL wants the netns while it still exists,
        // and a failure is returned so kubelet retries with state intact.
        self.network.detach(&sandbox.id, sandbox.namespaces.net.as_deref()).await?;
        if let Some(process) = &sandbox.infra {
            infra::stop(process);
            let dirs = sandbox.infra_cgroups.clone();
            tokio::task::spawn_blocking(move || cgroups::remove(&dirs))
                .await
                .map_err(|e| SandboxError::host("cgroup task", e))?;
        }
        tracing::debug_span!(target: crate::metrics::STEP_TARGET, "namespaces release")
            .in_scope(|| namespaces::release(&sandbox.namespaces));
        if sandbox.state != SandboxState::NotReady
            || sandbox.namespaces != PodNamespaces::default()
            || sandbox.infra.is_some()
        {
            sandbox.state = SandboxState::NotReady;
            sandbox.namespaces = PodNamespaces::default();
            sandbox.infra = None;
            sandbox.infra_cgroups.clear();
            record::save(&self.store, sandbox)?;
            tracing::info!(sandbox = %sandbox.id, "pod sandbox stopped");
        }
        Ok(())
    }
}
