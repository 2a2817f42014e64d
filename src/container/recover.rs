//! Start-up: containers kept running while berth was away are watched again,
//! those that exited meanwhile get their exits recorded, and a container left
//! half-made by a crash mid-CreateContainer (or held by a runtime with no
//! record in berth) is undone.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use super::create::lease_holder;
use super::record::{self, ContainerState};
use super::rootfs;
use super::{ContainerError, ContainerService, is_monitor_of};

impl ContainerService {
    pub(super) async fn recover(self: &Arc<Self>) -> Result<(), ContainerError> {
        let containers = record::list(&self.store)?;
        for container in &containers {
            if container.state == ContainerState::Exited {
                continue;
            }
            if is_monitor_of(container.monitor_pid, &container.id) {
                self.watch(container);
            } else {
                self.fold_exit(&container.id).await?;
            }
        }
        self.clean_half_made(containers.iter().map(|c| c.id.clone()).collect()).await
    }

    async fn clean_half_made(&self, known: HashSet<String>) -> Result<(), ContainerError> {
        let mut orphans = BTreeSet::new();
        for (key, id) in record::orphan_names(&self.store)? {
            record::release_name(&self.store, &key, &id)?;
            orphans.insert(id);
        }
        for root in [self.config.run_root.join("containers"), self.config.state_root.join("containers")] {
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&id) {
                    orphans.insert(id);
                }
            }
        }
        // Each handler's root is berth's own: what a runtime holds there with no
        // record is a container nobody will ever stop.
        for handler in self.handlers.iter() {
            match handler.runtime().list().await {
                Ok(held) => orphans.extend(held.into_iter().map(|state| state.id).filter(|id| !known.contains(id))),
                Err(e) => tracing::warn!(handler = %handler.name, error = %e, "cannot list the runtime's containers"),
            }
        }
        for id in orphans {
            tracing::info!(container = %id, "cleaning up a container left half-made by a crash");
            // Which handler created it is not recorded yet: ask each to forget it.
            for handler in self.handlers.iter() {
                let _ = handler.runtime().delete(&id, true).await;
            }
            let _ = rootfs::remove_rootfs(&self.rootfs_paths(&id));
            if let Err(e) = super::staging::unmount_all(&self.run_dir(&id)) {
                tracing::warn!(container = %id, error = %e, "cannot unmount its staged mounts; its files stay");
                continue;
            }
            for dir in [self.run_dir(&id), self.state_dir(&id)] {
                let _ = std::fs::remove_dir_all(dir);
            }
            self.images.release_lease(&lease_holder(&id)).await?;
        }
        Ok(())
    }
}
