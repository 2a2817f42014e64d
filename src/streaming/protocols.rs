//! Agreeing on a subprotocol and upgrading the connection, as kubelet's
//! streaming server does: the client lists what it speaks, most preferred
//! first, and the server takes the first it knows.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderMap, HeaderName, HeaderValue, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::server::{HttpResponse, plain};
use super::{StreamRequest, Streaming, idle, spdy_session, ws_session};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy,
    WebSocket,
}

/// The remote-command protocols over SPDY, by preference. v5 differs from v4
/// only on WebSocket (its close signal), so over SPDY it is served as v4.
const SPDY_REMOTE_COMMAND: &[&str] =
    &["v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
const SPDY_PORT_FORWARD: &[&str] = &["portforward.k8s.io"];
/// WebSocket subprotocols; "" is a client that names none.
const WS_REMOTE_COMMAND: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "",
];
const WS_PORT_FORWARD: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io", ""];

const STREAM_PROTOCOL_VERSION: &str = "x-stream-protocol-version";
const ACCEPTED_STREAM_PROTOCOL_VERSIONS: &str = "x-accepted-stream-protocol-versions";

/// A remote-command protocol version as its error stream and resize stream see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn of(protocol: &str) -> Version {
        match protocol {
            "v5.channel.k8s.io" => Version::V5,
            "v4.channel.k8s.io" | "v4.base64.channel.k8s.io" => Version::V4,
            "v3.channel.k8s.io" => Version::V3,
            "v2.channel.k8s.io" => Version::V2,
            _ => Version::V1,
        }
    }
}

/// Answers the upgrade request and, once the client has the answer, runs the
/// session on the upgraded connection.
pub fn upgrade(
    request: Request<Incoming>,
    transport: Transport,
    stream_request: StreamRequest,
    streaming: Arc<Streaming>,
) -> HttpResponse {
    let port_forward = matches!(stream_request, StreamRequest::PortForward { .. });
    match transport {
        Transport::Spdy => {
            let supported = if port_forward { SPDY_PORT_FORWARD } else { SPDY_REMOTE_COMMAND };
            let offered = listed(request.headers(), STREAM_PROTOCOL_VERSION);
            if offered.is_empty() {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "unable to upgrade: header X-Stream-Protocol-Version does not exist in request",
                );
            }
            let Some(protocol) = choose(&offered, supported) else { return refuse(&offered, supported) };
            let mut response = switching(&[(UPGRADE, "SPDY/3.1")]);
            insert(&mut response, HeaderName::from_static(STREAM_PROTOCOL_VERSION), protocol);
            tokio::spawn(async move {
                match hyper::upgrade::on(request).await {
                    Ok(upgraded) => {
                        let (io, activity) = idle::watch(TokioIo::new(upgraded));
                        spdy_session::run(io, activity, Version::of(protocol), stream_request, streaming).await
                    }
                    Err(e) => tracing::debug!(error = %e, "streaming: SPDY upgrade failed"),
                }
            });
            response
        }
        Transport::WebSocket => {
            let key = request.headers().get("sec-websocket-key").map(|key| key.as_bytes().to_vec());
            let version_13 = request.headers().get("sec-websocket-version").is_some_and(|v| v.as_bytes() == b"13");
            let (Some(key), true, true) = (key, version_13, request.method() == Method::GET) else {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "a WebSocket upgrade is a GET with Sec-WebSocket-Key and version 13",
                );
            };
            let mut offered = listed(request.headers(), "sec-websocket-protocol");
            if offered.is_empty() {
                offered.push(String::new());
            }
            let supported = if port_forward { WS_PORT_FORWARD } else { WS_REMOTE_COMMAND };
            let Some(protocol) = choose(&offered, supported) else {
                let mut refused = Response::new(Default::default());
                *refused.status_mut() = StatusCode::FORBIDDEN;
                return refused;
            };
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
            let mut response = switching(&[(UPGRADE, "websocket")]);
            insert(&mut response, HeaderName::from_static("sec-websocket-accept"), &accept);
            if !protocol.is_empty() {
                insert(&mut response, HeaderName::from_static("sec-websocket-protocol"), protocol);
            }
            tokio::spawn(async move {
                match hyper::upgrade::on(request).await {
                    Ok(upgraded) => {
                        let (io, activity) = idle::watch(TokioIo::new(upgraded));
                        ws_session::run(io, activity, protocol, stream_request, streaming).await
                    }
                    Err(e) => tracing::debug!(error = %e, "streaming: WebSocket upgrade failed"),
                }
            });
            response
        }
    }
}

/// Every value of `name`, whether the client repeated the header or joined
/// the values with commas.
fn listed(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .collect()
}

/// The first of the client's protocols the server speaks.
fn choose(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    offered.iter().find_map(|wanted| supported.iter().find(|known| **known == wanted.as_str()).copied())
}

fn refuse(offered: &[String], supported: &[&str]) -> HttpResponse {
    let message = format!(
        "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
    );
    let mut response = plain(StatusCode::FORBIDDEN, &message);
    for protocol in supported {
        if let Ok(value) = HeaderValue::from_str(protocol) {
            response.headers_mut().append(ACCEPTED_STREAM_PROTOCOL_VERSIONS, value);
        }
    }
    response
}

fn switching(headers: &[(HeaderName, &str)]) -> HttpResponse {
    let mut response = Response::new(Default::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    for (name, value) in headers {
        insert(&mut response, name.clone(), value);
    }
    response
}

fn insert(response: &mut HttpResponse, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_first_known_protocol_wins() {
        let offered: Vec<String> =
            ["v9.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"].map(String::from).into();
        assert_eq!(choose(&offered, SPDY_REMOTE_COMMAND), Some("v4.channel.k8s.io"));
        assert_eq!(choose(&offered, SPDY_PORT_FORWARD), None);
        assert_eq!(choose(&[String::new()], WS_REMOTE_COMMAND), Some(""));
        assert_eq!(Version::of("v4.base64.channel.k8s.io"), Version::V4);
        assert_eq!(Version::of(""), Version::V1);
    }

    #[test]
    fn repeated_and_comma_joined_headers_both_list() {
        let mut headers = HeaderMap::new();
        headers.append(STREAM_PROTOCOL_VERSION, HeaderValue::from_static("v4.channel.k8s.io, v3.channel.k8s.io"));
        headers.append(STREAM_PROTOCOL_VERSION, HeaderValue::from_static("channel.k8s.io"));
        assert_eq!(
            listed(&headers, STREAM_PROTOCOL_VERSION),
            ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
        );
        let refused = refuse(&["x".into()], SPDY_PORT_FORWARD);
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(refused.headers()[ACCEPTED_STREAM_PROTOCOL_VERSIONS], "portforward.k8s.io");
    }
}
