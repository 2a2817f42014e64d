//! The `RemoveContainer` RPC: idempotent, and succeeds for an unknown ID.

use super::create::lease_holder;
use super::events::EventKind;
use super::record::{self, ContainerRecord};
use super::{rootfs, staging};
use super::{ContainerError, ContainerService};

impl ContainerService {
    /// Kills the container if it runs, then deletes it from its runtime, its
    /// rootfs, image volumes and writable layer, its image leases and its record. The log file
    /// is kubelet's and stays.
    pub async fn remove(&self, wanted: &str) -> Result<(), ContainerError> {
        let Some(id) = self.resolve(wanted)? else { return Ok(()) };
        let lock = self.lock_for(&id);
        let guard = lock.lock().await;
        let Some(container) = record::get(&self.store, &id)? else { return Ok(()) };
        self.remove_locked(&container).await?;
        drop(guard);
        self.forget(&id);
        Ok(())
    }

    async fn remove_locked(&self, container: &ContainerRecord) -> Result<(), ContainerError> {
        let id = container.id.as_str();
        self.stop_locked(container, 0).await?;
        self.runtime_for(container)?.delete(id, true).await?;
        let paths = self.rootfs_paths(id);
        tokio::task::block_in_place(|| {
            rootfs::remove_rootfs(&paths)?;
            staging::unmount_all(&self.run_dir(id))
        })?;
        for dir in [self.run_dir(id), self.state_dir(id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(ContainerError::host(dir.display().to_string(), e));
            }
        }
        self.images.release_lease(&lease_holder(id)).await?;
        if let Some(sandbox) = self.sandbox_of(container) {
            self.nri.remove_container(&sandbox, container).await;
        }
        record::delete(&self.store, container)?;
        tracing::info!(container = %id, "container removed");
        self.events.publish(id, &container.sandbox_id, EventKind::Deleted);
        Ok(())
    }
}
