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
        self.runtime_for(&container)?.update(&id, &limits).await?;
        let mut config = container.config();
        config.linux.get_or_insert_with(Default::default).resources = Some(resources);
        container.set_config(&config);
        record::save(&self.store, &container)?;
        tracing::info!(container = %id, "container resources updated");
        Ok(())
    }
}
