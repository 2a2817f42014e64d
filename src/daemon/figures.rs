//! berth's own figures for its metrics endpoint: what it runs and what it pulled.

use super::{Daemon, PodError};
use crate::container::{ContainerFilter, ContainerState};
use crate::images::PullFigures;
use crate::sandbox::{SandboxFilter, SandboxState};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonFigures {
    pub pods_ready: u64,
    pub pods_not_ready: u64,
    pub containers_created: u64,
    pub containers_running: u64,
    pub containers_exited: u64,
    /// Container monitors still running.
    pub monitors: u64,
    pub pulls: PullFigures,
}

impl Daemon {
    pub fn figures(&self) -> Result<DaemonFigures, PodError> {
        let mut figures = DaemonFigures { pulls: self.images.pull_figures(), ..Default::default() };
        for pod in self.sandboxes.list(&SandboxFilter::default())? {
            match pod.state {
                SandboxState::Ready => figures.pods_ready += 1,
                SandboxState::NotReady => figures.pods_not_ready += 1,
            }
        }
        for container in self.containers.list(&ContainerFilter::default())? {
            match container.state {
                ContainerState::Created => figures.containers_created += 1,
                ContainerState::Running => figures.containers_running += 1,
                ContainerState::Exited => figures.containers_exited += 1,
            }
        }
        figures.monitors = self.containers.live_monitors() as u64;
        Ok(figures)
    }
}
