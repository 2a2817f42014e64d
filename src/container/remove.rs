//! The `RemoveContainer` RPC: idempotent, and succeeds for an unknown ID.

use tracing::Instrument;

use super::create::lease_holder;
use super::events::EventKind;
use super::record::{self, ContainerRecord};
use super::{ContainerError, ContainerService};
use super::{rootfs, staging};

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
        // The stop recorded the exit, and whether the runtime's delete went with it.
        let stopped = record::get(&self.store, id)?;
        if !stopped.is_some_and(|stopped| stopped.runtime_deleted) {
            let runtime = self.runtime_for(container)?;
            let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "runtime", what = "delete");
            runtime.delete(id, true).instrument(step).await?;
        }
        let paths = self.rootfs_paths(id);
        tokio::task::block_in_place(|| {
            let _step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "rootfs remove").entered();
            rootfs::remove_rootfs(&paths)?;
            staging::unmount_all(&self.run_dir(id))
        })?;
        let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "dirs remove").entered();
        for dir in [self.run_dir(id), self.state_dir(id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(ContainerError::host(dir.display().to_string(), e));
            }
        }
        drop(step);
        let holder = lease_holder(id);
        self.images
            .release_lease(&holder)
            .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "image release"))
            .await?;
        if let Some(sandbox) = self.sandbox_of(container) {
            self.nri.remove_container(&sandbox, container).await;
        }
        record::delete(&self.store, container)?;
        tracing::info!(container = %id, "container removed");
        self.events.publish(id, &container.sandbox_id, EventKind::Deleted);
        Ok(())
    }
}
