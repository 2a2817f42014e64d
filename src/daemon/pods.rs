//! What spans pods and their containers: a pod's containers go before the pod,
//! and slow creates of either are handed to kubelet's retry.

use std::sync::Arc;

use crate::cri::v1::ContainerConfig;

use super::Daemon;
use crate::container::{ContainerError, record, spec};
use crate::error::{Classify, ErrorKind};
use crate::sandbox::{PodSpec, SandboxError};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Container(#[from] ContainerError),
}

impl Classify for PodError {
    fn kind(&self) -> ErrorKind {
        match self {
            PodError::Sandbox(e) => e.kind(),
            PodError::Container(e) => e.kind(),
        }
    }
}

impl crate::handoff::WorkLost for SandboxError {
    fn lost() -> Self {
        SandboxError::host("RunPodSandbox", "the task creating the sandbox ended without an outcome")
    }
}

fn unshared<E>(error: Arc<E>, shared: impl FnOnce(Arc<E>) -> E) -> E {
    Arc::try_unwrap(error).unwrap_or_else(shared)
}

impl Daemon {
    pub async fn run_pod_sandbox(&self, spec: PodSpec) -> Result<String, SandboxError> {
        let sandboxes = self.sandboxes.clone();
        self.pod_creates
            .run(spec.metadata.key(), move || async move { sandboxes.run(spec).await })
            .await
            .map_err(|e| unshared(e, SandboxError::Shared))
    }

    /// Kills the pod's containers (kubelet stopped them gracefully before, if it
    /// could), then tears the pod's network and namespaces down.
    pub async fn stop_pod_sandbox(&self, wanted: &str) -> Result<(), PodError> {
        let Some(sandbox) = self.sandboxes.find(wanted)? else { return Ok(()) };
        for container in self.containers.in_sandbox(&sandbox.id)? {
            self.containers.stop(&container.id, 0).await?;
        }
        Ok(self.sandboxes.stop(&sandbox.id).await?)
    }

    pub async fn remove_pod_sandbox(&self, wanted: &str) -> Result<(), PodError> {
        let Some(sandbox) = self.sandboxes.find(wanted)? else { return Ok(()) };
        for container in self.containers.in_sandbox(&sandbox.id)? {
            self.containers.remove(&container.id).await?;
        }
        self.sandboxes.remove(&sandbox.id).await?;
        self.pod_cpu_rates.retain(|id| id != sandbox.id);
        Ok(())
    }

    pub async fn create_container(&self, sandbox: &str, config: ContainerConfig) -> Result<String, ContainerError> {
        let mut sandbox = self.sandboxes.find(sandbox)?.ok_or_else(|| SandboxError::NotFound(sandbox.to_string()))?;
        if sandbox.infra.is_none() && spec::namespaces::asks_for_pod_pid_namespace(&config) {
            sandbox = self.sandboxes.share_pid_namespace(&sandbox.id).await?;
        }
        let metadata = config.metadata.clone().unwrap_or_default();
        let key = record::name_key(&sandbox.id, &record::Metadata { name: metadata.name, attempt: metadata.attempt });
        let containers = self.containers.clone();
        self.container_creates
            .run(key, move || async move { containers.create(&sandbox, config).await })
            .await
            .map_err(|e| unshared(e, ContainerError::Shared))
    }
}
