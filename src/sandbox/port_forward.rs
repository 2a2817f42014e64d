//! The process side of `PortForward`: TCP connections made by berth itself
//! inside the pod's network namespace (no socat, no helper process).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CloneFlags;

use super::record::{NamespaceMode, SandboxRecord, SandboxState};
use super::{SandboxError, SandboxService};

/// A port that does not answer within this is reported as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl SandboxService {
    /// Checks a PortForward request: the pod is ready, and the ports it names are ports.
    pub fn check_port_forward(&self, wanted: &str, ports: &[i32]) -> Result<SandboxRecord, SandboxError> {
        if let Some(port) = ports.iter().find(|port| !(1..=65535).contains(*port)) {
            return Err(SandboxError::invalid("port", format!("{port} is not a TCP port")));
        }
        self.ready(wanted)
    }

    /// Connects to `port` on the pod's loopback (IPv4, then IPv6).
    pub async fn dial(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream, SandboxError> {
        let pod = self.ready(id)?;
        let netns = match pod.namespace_modes.network {
            NamespaceMode::Node => None,
            _ => Some(pod.namespaces.net.clone().ok_or_else(|| SandboxError::NotReady(pod.id.clone()))?),
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        // A thread of its own: the network namespace is per thread, and this one
        // ends with the connection made, so no other work ever runs inside the pod.
        std::thread::Builder::new()
            .name("berth-portfwd".into())
            .spawn(move || {
                let _ = answer.send(connect_in(netns, port));
            })
            .map_err(|e| SandboxError::host("starting a port-forward thread", e))?;
        let unreachable = |message: String| SandboxError::Unreachable { id: pod.id.clone(), port, message };
        let stream = answered
            .await
            .map_err(|_| unreachable("the connecting thread ended".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        stream.set_nonblocking(true).map_err(|e| unreachable(e.to_string()))?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| unreachable(e.to_string()))
    }

    fn ready(&self, wanted: &str) -> Result<SandboxRecord, SandboxError> {
        let pod = self.find(wanted)?.ok_or_else(|| SandboxError::NotFound(wanted.to_string()))?;
        if pod.state != SandboxState::Ready {
            return Err(SandboxError::NotReady(pod.id));
        }
        Ok(pod)
    }
}

fn connect_in(netns: Option<PathBuf>, port: u16) -> std::io::Result<TcpStream> {
    if let Some(path) = netns {
        let namespace = std::fs::File::open(&path)?;
        nix::sched::setns(namespace.as_fd(), CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|v4_error| {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| v4_error)
    })
}
