//! Commands to a container's monitor on its `control.sock`: one line each,
//! answered `ok` or `error <message>`.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use super::record::ContainerRecord;
use super::{ContainerError, ContainerService};
use crate::monitor::{CONTROL_SOCKET, connect};

/// The monitor answers at once; a monitor that does not is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

impl ContainerService {
    /// Sends `command` (`reopen`, `resize <rows> <cols>`) and waits for the answer.
    pub(super) async fn tell_monitor(&self, container: &ContainerRecord, command: &str) -> Result<(), ContainerError> {
        let socket_dir = self.run_dir(&container.id);
        let line = format!("{command}\n");
        let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut stream = connect(&socket_dir, CONTROL_SOCKET)?;
            stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            stream.write_all(line.as_bytes())?;
            let mut answer = String::new();
            BufReader::new(stream).read_line(&mut answer)?;
            Ok(answer.trim_end().to_string())
        })
        .await
        .map_err(|e| ContainerError::host("monitor control task", e))?
        .map_err(|e| ContainerError::host(format!("container {} monitor", container.id), e))?;
        match answer.strip_prefix("error ") {
            None if answer == "ok" => Ok(()),
            Some(message) => {
                Err(ContainerError::host(format!("{command:?} to the monitor of {}", container.id), message))
            }
            None => Err(ContainerError::host(
                format!("container {} monitor", container.id),
                format!("unexpected answer {answer:?}"),
            )),
        }
    }
}
