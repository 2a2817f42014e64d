//! The HTTP endpoint Prometheus scrapes: `GET /metrics`, nothing else.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Metrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// A scraper sends its request at once; a connection that sends nothing is
/// closed after this rather than held open for good.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (out of file descriptors, say), a pause: retrying at
/// once would spin a core on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
#[error("metrics endpoint {address}: {source}")]
pub struct EndpointError {
    address: String,
    source: std::io::Error,
}

/// Binds `address` and serves scrapes until `shutdown` resolves. Binding
/// happens before this returns, so a taken port fails berth's start.
async fn serve(
    address: &str,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, EndpointError> {
    let fail = |source| EndpointError { address: address.to_string(), source };
    let listener = TcpListener::bind(address).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, Infallible>(answer(&request, &metrics)) }
                });
                let mut http = http1::Builder::new();
                http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
                if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended");
                }
            });
        }
    });
    Ok(bound)
}

/// The endpoint while it is served; dropping it stops it (its port is free
/// again at once, so a reload can move it and move it back).
pub struct Served {
    pub address: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    pub async fn start(address: &str, metrics: Arc<Metrics>) -> Result<Served, EndpointError> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let address = serve(address, metrics, async {
            let _ = stopped.await;
        })
        .await?;
        Ok(Served { address, _stop: stop })
    }
}

fn answer(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "only /metrics is served here\n".into());
    }
    if request.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match metrics.encode() {
        Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
        Err(_) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "cannot encode the metrics\n".into()),
    }
}
