//! Reaching a CRI endpoint: crictl's endpoint syntax, one tonic channel over
//! its unix socket, and unary calls bounded by `--timeout`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::ClientError;
use crate::berth_api::v1::images_client::ImagesClient;
use crate::cri::v1::image_service_client::ImageServiceClient;
use crate::cri::v1::runtime_service_client::RuntimeServiceClient;

/// berth's socket when nothing else is said (the config's default).
const DEFAULT_ENDPOINT: &str = "unix:///run/berth/berth.sock";
/// As the daemon accepts: kubelet sends large filters, lists can be large.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The CRI endpoint: unix:///path/to/socket or the socket's path [default: unix:///run/berth/berth.sock]
    #[arg(short = 'r', long = "runtime-endpoint", env = "CONTAINER_RUNTIME_ENDPOINT", value_name = "ENDPOINT")]
    pub endpoint: Option<String>,
    /// How long to wait for the endpoint to connect and to answer a call; a pull, an interactive
    /// exec or attach and `logs -f` run as long as they take
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// A connected CRI endpoint.
#[derive(Clone)]
pub struct Cri {
    channel: Channel,
    pub endpoint: String,
    pub timeout: Duration,
}

impl Cri {
    pub async fn connect(connection: &Connection) -> Result<Cri, ClientError> {
        let endpoint = connection.endpoint.clone().unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let path = socket_path(&endpoint)?;
        let connect_error = |reason: String| ClientError::Connect { endpoint: endpoint.clone(), reason };
        // The authority names nothing on a unix socket; any valid one will do.
        let endpoint_config = Endpoint::from_static("http://localhost").connect_timeout(connection.timeout);
        let channel = endpoint_config.connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }));
        let channel = tokio::time::timeout(connection.timeout, channel)
            .await
            .map_err(|_| connect_error(format!("no answer within {}", humantime::format_duration(connection.timeout))))?
            .map_err(|e| connect_error(innermost(&e)))?;
        Ok(Cri { channel, endpoint, timeout: connection.timeout })
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// berth's own services, which other runtimes answer with UNIMPLEMENTED.
    pub fn berth(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    /// A unary call bounded by `--timeout`.
    pub async fn call<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, ClientError> {
        let answer = tokio::time::timeout(self.timeout, call).await.map_err(|_| ClientError::Timeout {
            endpoint: self.endpoint.clone(),
            rpc,
            after: self.timeout,
        })?;
        self.unbounded(rpc, answer)
    }

    /// The answer of a call that runs as long as it takes (a pull, ExecSync).
    pub fn unbounded<T>(
        &self,
        rpc: &'static str,
        answer: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, ClientError> {
        answer.map(tonic::Response::into_inner).map_err(|status| ClientError::rpc(&self.endpoint, rpc, &status))
    }
}

/// crictl's syntax: `unix:///path`, or a bare path.
fn socket_path(endpoint: &str) -> Result<PathBuf, ClientError> {
    match endpoint.split_once("://") {
        Some(("unix", path)) if !path.is_empty() => Ok(PathBuf::from(path)),
        Some(_) => Err(ClientError::Endpoint(endpoint.to_string())),
        None if !endpoint.is_empty() => Ok(PathBuf::from(endpoint)),
        None => Err(ClientError::Endpoint(endpoint.to_string())),
    }
}

/// The deepest cause: tonic's own message is only "transport error".
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut error = error;
    while let Some(source) = error.source() {
        error = source;
    }
    let message = error.to_string();
    // "No such file or directory (os error 2)": the number tells a person nothing.
    match message.find(" (os error ") {
        Some(at) => message[..at].to_string(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_read_as_crictl_reads_them() {
        assert_eq!(socket_path("unix:///run/x.sock").ok(), Some(PathBuf::from("/run/x.sock")));
        assert_eq!(socket_path("/run/x.sock").ok(), Some(PathBuf::from("/run/x.sock")));
        assert!(matches!(socket_path("tcp://1.2.3.4:5"), Err(ClientError::Endpoint(_))));
        assert!(matches!(socket_path("unix://"), Err(ClientError::Endpoint(_))));
        assert!(matches!(socket_path(""), Err(ClientError::Endpoint(_))));
    }
}
