//! The `UpdateContainerResources` RPC.

use crate::cri::v1::LinuxContainerResources;

use super::record::{self, ContainerState};
use super::spec::linux_resources;
use super::{ContainerError, ContainerService};

impl ContainerService {
    /// Applies new CPU, memory, cpuset and hugepage limits to a created or
    /// running container's cgroup, and remembers them for ContainerStatus.
    pub async fn update_resources(
        &self,
        wanted: &str,
        resources: LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        self.update_resources_told(wanted, resources, true).await
    }

    /// `announce`: whether NRI plugins hear of it (not when one asked for it).
    async fn update_resources_told(
        &self,
        wanted: &str,
        resources: LinuxContainerResources,
        announce: bool,
    ) -> Result<(), ContainerError> {
        let id = self.resolve(wanted)?.ok_or_else(|| ContainerError::NotFound(wanted.to_string()))?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut container =
            self.current(record::get(&self.store, &id)?.ok_or_else(|| ContainerError::NotFound(id.clone()))?);
        if container.state == ContainerState::Exited {
            return Err(ContainerError::WrongState {
                id,
                state: container.state.as_str(),
                reason: "an exited container has no cgroup to update",
            });
        }
        let limits = linux_resources(&resources).map_err(|e| match e {
            super::spec::SpecError::InvalidArgument { field, reason } => {
                ContainerError::InvalidArgument { field: field.replace("linux.resources", "linux"), reason }
            }
            other => other.into(),
        })?;
        let sandbox = self.sandbox_of(&container).filter(|_| announce);
        if let Some(sandbox) = &sandbox {
            self.nri.update_container(sandbox, &container, &resources).await?;
        }
        self.runtime_for(&container)?.update(&id, &limits).await?;
        let mut config = container.config();
        config.linux.get_or_insert_with(Default::default).resources = Some(resources);
        container.set_config(&config);
        record::save(&self.store, &container)?;
        tracing::info!(container = %id, "container resources updated");
        if let Some(sandbox) = &sandbox {
            self.nri.post_update_container(sandbox, &container).await;
        }
        Ok(())
    }
}

/// NRI plugins' updates and evictions (the Runtime service's UpdateContainers).
impl crate::nri::ContainerControl for ContainerService {
    fn update(
        &self,
        id: String,
        resources: crate::nri::api::LinuxResources,
    ) -> futures::future::BoxFuture<'static, Result<(), String>> {
        let Some(service) = self.me.get().and_then(std::sync::Weak::upgrade) else {
            return Box::pin(async { Err("berth is stopping".to_string()) });
        };
        Box::pin(async move {
            let container = record::get(&service.store, &id).map_err(|e| e.to_string())?.ok_or("no such container")?;
            let current = container.config().linux.and_then(|linux| linux.resources).unwrap_or_default();
            let wanted = crate::nri::convert_resources(&resources, current);
            service.update_resources_told(&id, wanted, false).await.map_err(|e| e.to_string())
        })
    }

    fn evict(&self, id: String, reason: String) {
        let Some(service) = self.me.get().and_then(std::sync::Weak::upgrade) else { return };
        tokio::spawn(async move {
            if let Err(e) = service.stop(&id, 0).await {
                tracing::warn!(container = %id, %reason, error = %e, "cannot evict the container an NRI plugin asked to");
            }
        });
    }
}
