//! The streaming HTTP server: `/exec/<token>`, `/attach/<token>` and
//! `/portforward/<token>`, each upgraded to SPDY/3.1 or WebSocket after the
//! subprotocol is agreed. The token names the request the CRI call validated;
//! it is spent on first use, so a URL works once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::Streaming;
use super::protocols::{self, Transport};

pub type HttpResponse = Response<Full<Bytes>>;

/// A connection must finish its TLS handshake, and send its request headers,
/// within this: no token is needed to open one.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Accepts connections until the listener fails; each is served on its own task.
pub async fn accept_loop(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, streaming: Arc<Streaming>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "streaming server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        keep_alive(&stream);
        // Sessions are many small frames each way (a status, a keystroke):
        // Nagle's algorithm would hold each for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let streaming = streaming.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), peer, streaming).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "streaming server: TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "streaming server: TLS handshake timed out"),
                },
                None => serve_connection(TokioIo::new(stream), peer, streaming).await,
            }
        });
    }
}

async fn serve_connection<I>(io: I, peer: SocketAddr, streaming: Arc<Streaming>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let streaming = streaming.clone();
        async move { Ok::<_, Infallible>(route(request, &streaming)) }
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HANDSHAKE_TIMEOUT);
    if let Err(e) = http.serve_connection(io, service).with_upgrades().await {
        tracing::debug!(%peer, error = %e, "streaming server: connection ended");
    }
}

/// TCP keepalive finds a client that vanished without a word (a network
/// partition, a proxy that died) within about a minute; its session then ends
/// and the process it ran is killed.
fn keep_alive(stream: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let set = setsockopt(stream, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepIdle, &30))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepInterval, &10))
        .and_then(|()| setsockopt(stream, sockopt::TcpKeepCount, &3));
    if let Err(e) = set {
        tracing::debug!(error = %e, "streaming server: cannot set TCP keepalive");
    }
}

fn route(request: Request<Incoming>, streaming: &Arc<Streaming>) -> HttpResponse {
    let mut segments = request.uri().path().trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (segments.next().unwrap_or_default(), segments.next().unwrap_or_default());
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/') {
        return plain(StatusCode::NOT_FOUND, "no such streaming endpoint");
    }
    let Some(stream_request) = streaming.requests.take(token) else {
        return plain(StatusCode::NOT_FOUND, "unknown or expired streaming token: ask the runtime for a new URL");
    };
    if stream_request.kind() != kind {
        return plain(StatusCode::NOT_FOUND, "this token is for another kind of stream");
    }
    let transport = match upgrade_kind(request.headers()) {
        Some(transport) => transport,
        None => return plain(StatusCode::BAD_REQUEST, "this endpoint needs an upgrade to SPDY/3.1 or websocket"),
    };
    protocols::upgrade(request, transport, stream_request, streaming.clone())
}

/// The protocol a client asks to upgrade to.
fn upgrade_kind(headers: &HeaderMap) -> Option<Transport> {
    let upgrade = headers.get(UPGRADE)?.to_str().ok()?;
    let wants_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if !wants_upgrade {
        return None;
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        Some(Transport::Spdy)
    } else if upgrade.eq_ignore_ascii_case("websocket") {
        Some(Transport::WebSocket)
    } else {
        None
    }
}

pub fn plain(status: StatusCode, message: &str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn the_upgrade_header_picks_the_transport() {
        let spdy = headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert_eq!(upgrade_kind(&spdy), Some(Transport::Spdy));
        let ws = headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "websocket")]);
        assert_eq!(upgrade_kind(&ws), Some(Transport::WebSocket));
        assert_eq!(upgrade_kind(&headers(&[("upgrade", "websocket")])), None, "no Connection: upgrade");
        assert_eq!(upgrade_kind(&headers(&[("connection", "upgrade"), ("upgrade", "h2c")])), None);
    }
}
