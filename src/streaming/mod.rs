//! Exec, Attach and PortForward streaming: the CRI calls hand out a URL on
//! berth's streaming server; the client upgrades it to SPDY/3.1 or WebSocket
//! and speaks Kubernetes' remote-command or port-forward protocol over it.
//!
//! `server` routes and spends tokens, `protocols` agrees on a subprotocol and
//! upgrades, `spdy_session` / `ws_session` turn the transport's streams or
//! channels into pipes, and `session` wires those to an exec'd process or a
//! container's monitor; `port_forward` relays a connection made in the pod.

mod idle;
mod port_forward;
mod protocols;
mod requests;
mod server;
mod session;
pub mod spdy;
mod spdy_session;
mod status;
mod tls;
mod ws_session;

pub use requests::{PendingRequests, StreamRequest};

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::StreamingConfig;
use crate::container::ContainerService;
use crate::sandbox::SandboxService;

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("streaming server {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("streaming TLS: {0}")]
    Tls(String),
}

pub struct Streaming {
    requests: PendingRequests,
    containers: Arc<ContainerService>,
    sandboxes: Arc<SandboxService>,
    /// `http://127.0.0.1:<port>` (`https` with TLS) as clients reach it.
    base_url: String,
    idle_timeout: std::time::Duration,
}

impl Streaming {
    /// Binds the server (port 0 picks a free one) and starts serving.
    pub async fn start(
        config: &StreamingConfig,
        containers: Arc<ContainerService>,
        sandboxes: Arc<SandboxService>,
    ) -> Result<Arc<Streaming>, StreamingError> {
        let address = format!("{}:{}", config.address, config.port);
        let bind_error = |source| StreamingError::Bind { address: address.clone(), source };
        let ip: std::net::IpAddr = config.address.parse().map_err(|e| bind_error(std::io::Error::other(e)))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, config.port))).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        let tls = tls::acceptor(config)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{bound}");
        let streaming = Arc::new(Streaming {
            requests: PendingRequests::default(),
            containers,
            sandboxes,
            base_url,
            idle_timeout: config.idle_timeout,
        });
        tracing::info!(url = %streaming.base_url, "streaming server serving");
        tokio::spawn(server::accept_loop(listener, tls, streaming.clone()));
        Ok(streaming)
    }

    /// The URL at which the client may run `request`, once, within a minute.
    pub fn url(&self, request: StreamRequest) -> String {
        let kind = request.kind();
        let token = self.requests.insert(request);
        format!("{}/{kind}/{token}", self.base_url)
    }
}
