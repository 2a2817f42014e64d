//! The `ReopenContainerLog` RPC: kubelet rotated the log file (renamed it) and
//! asks for the output to go to a new file at the path.

use super::record::ContainerState;
use super::{ContainerError, ContainerService};

impl ContainerService {
    pub async fn reopen_log(&self, wanted: &str) -> Result<(), ContainerError> {
        let container = self.current(self.find(wanted)?);
        if container.state != ContainerState::Running {
            return Err(ContainerError::WrongState {
                id: container.id,
                state: container.state.as_str(),
                reason: "only a running container's log can be reopened",
            });
        }
        self.tell_monitor(&container, "reopen").await
    }
}
