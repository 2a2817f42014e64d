//! The gRPC face: the only module of the daemon that knows tonic (the
//! `berth` client commands in `client/` are the other side). It binds the CRI
//! socket, serves RuntimeService and ImageService on it, with berth's own
//! `berth.v1.Images` (pull progress) beside them, and maps domain errors to
//! gRPC codes in `status_code`.

mod authority;
mod container;
mod deadline;
mod image_service;
mod list_stream;
mod listener;
mod pod;
mod pull_progress;
mod rpc_layer;
mod runtime_service;
mod stats;
pub mod status_code;

pub use listener::{ListenError, bind};
pub use rpc_layer::InFlight;

use std::future::Future;
use std::sync::Arc;

use crate::berth_api::v1::images_server::ImagesServer;
use crate::cri::v1::image_service_server::ImageServiceServer;
use crate::cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::daemon::Daemon;
use crate::metrics::Metrics;

/// kubelet sends image pull secrets and large filters; containerd allows 16 MiB.
const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Serves both CRI services, and berth's own beside them, on `listener` until `shutdown` resolves; `in_flight`
/// counts the calls being answered, for the caller to wait on at shutdown, and
/// `metrics` records their latencies.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let runtime = RuntimeServiceServer::new(runtime_service::RuntimeApi::new(daemon.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let images = ImageServiceServer::new(image_service::ImageApi::new(daemon.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let progress = ImagesServer::new(pull_progress::ProgressApi::new(daemon))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    tonic::transport::Server::builder()
        .layer(rpc_layer::RpcLayer::new(in_flight, metrics))
        .layer(deadline::DeadlineLayer)
        .add_service(runtime)
        .add_service(images)
        .add_service(progress)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map(|accepted| accepted.map(authority::AuthorityTolerant::new)),
            shutdown,
        )
        .await
}
