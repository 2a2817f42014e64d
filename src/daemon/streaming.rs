//! `Exec`, `Attach` and `PortForward`: the request is checked now, and the
//! session runs when the client comes to the URL handed back.

use super::Daemon;
use crate::container::{ContainerError, StreamChoice};
use crate::sandbox::SandboxError;
use crate::streaming::StreamRequest;

impl Daemon {
    pub fn exec_url(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        choice: StreamChoice,
    ) -> Result<String, ContainerError> {
        let container = self.containers.check_exec(container_id, &cmd, choice)?;
        Ok(self.streaming.url(StreamRequest::Exec { container_id: container.id, cmd, choice }))
    }

    pub fn attach_url(&self, container_id: &str, choice: StreamChoice) -> Result<String, ContainerError> {
        let (container, close_stdin_on_end) = self.containers.check_attach(container_id, choice)?;
        Ok(self.streaming.url(StreamRequest::Attach { container_id: container.id, choice, close_stdin_on_end }))
    }

    pub fn port_forward_url(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, SandboxError> {
        let pod = self.sandboxes.check_port_forward(sandbox_id, ports)?;
        let ports = ports.iter().filter_map(|port| u16::try_from(*port).ok()).collect();
        Ok(self.streaming.url(StreamRequest::PortForward { sandbox_id: pod.id, ports }))
    }
}
