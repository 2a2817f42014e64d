//! The `StartContainer` RPC.

use tracing::Instrument;

use super::events::EventKind;
use super::record::{self, ContainerState};
use super::{ContainerError, ContainerService};
use crate::monitor::ExitRecord;

/// The exit code a container that never started is given (containerd's choice).
const START_FAILED_EXIT_CODE: i32 = 128;

impl ContainerService {
    /// Runs a created container's process. A container that cannot start is
    /// recorded as exited with reason `StartError`, as kubelet expects.
    pub async fn start(&self, wanted: &str) -> Result<(), ContainerError> {
        let id = self.resolve(wanted)?.ok_or_else(|| ContainerError::NotFound(wanted.to_string()))?;
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut container = record::get(&self.store, &id)?.ok_or_else(|| ContainerError::NotFound(id.clone()))?;
        if container.state != ContainerState::Created {
            return Err(ContainerError::WrongState {
                id,
                state: container.state.as_str(),
                reason: "only a created container can be started",
            });
        }
        let runtime = self.runtime_for(&container)?;
        // Taken before the call: a process that exits at once must not seem to
        // have finished before it started.
        let started_at = crate::time::now_nanos();
        // NRI plugins hear of the start before the process runs, so that its
        // exit, however quick, reaches them after it.
        let sandbox = self.sandbox_of(&container);
        let announced = match &sandbox {
            Some(sandbox) => self.nri.start_container(sandbox, &container).await.map_err(ContainerError::from),
            None => Ok(()),
        };
        let started = match announced {
            Ok(()) => runtime
                .start(&id)
                .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "runtime", what = "start"))
                .await
                .map_err(ContainerError::from),
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                container.state = ContainerState::Running;
                container.started_at = started_at;
                record::save(&self.store, &container)?;
                tracing::info!(container = %id, "container started");
                self.events.publish(&id, &container.sandbox_id, EventKind::Started);
                if let Some(sandbox) = &sandbox {
                    self.nri.post_start_container(sandbox, &container).await;
                }
                Ok(())
            }
            Err(e) => {
                let exit = ExitRecord {
                    exit_code: START_FAILED_EXIT_CODE,
                    exited_at: crate::time::now_nanos(),
                    oom_killed: false,
                };
                container.record_exit(exit, "StartError", &e.to_string());
                record::save(&self.store, &container)?;
                self.events.publish(&id, &container.sandbox_id, EventKind::Stopped);
                if let Err(delete) = runtime.delete(&id, true).await {
                    tracing::warn!(container = %id, error = %delete, "cannot delete a container that failed to start");
                }
                if let Some(sandbox) = &sandbox {
                    self.nri.stop_container(sandbox, &container).await;
                }
                Err(e)
            }
        }
    }
}
