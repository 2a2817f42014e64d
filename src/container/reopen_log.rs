//! The `ReopenContainerLog` RPC: kubelet rotated the log file (renamed it) and
//! asks for the output to go to a new file at the path.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use super::record::ContainerState;
use super::{ContainerError, ContainerService};
use crate::monitor::{CONTROL_SOCKET, connect};

/// The monitor answers at once; a monitor that does not is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

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
        let socket_dir = self.run_dir(&container.id);
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut stream = connect(&socket_dir, CONTROL_SOCKET)?;
            stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            stream.write_all(b"reopen\n")?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(line.trim_end().to_string())
        })
        .await
        .map_err(|e| ContainerError::host("reopen task", e))?
        .map_err(|e| ContainerError::host(format!("container {} monitor", container.id), e))?;
        match answer.strip_prefix("error ") {
            None if answer == "ok" => Ok(()),
            Some(message) => Err(ContainerError::host(format!("reopening the log of {}", container.id), message)),
            None => Err(ContainerError::host(
                format!("container {} monitor", container.id),
                format!("unexpected answer {answer:?}"),
            )),
        }
    }
}
