//! A plain-HTTP reverse proxy to put between berth and a test [`Registry`].
//!
//! Tests point berth at the proxy instead of the registry, so they can
//! (a) count what berth asks for, independently of berth's own logs, and
//! (b) make the registry misbehave on purpose: stall a body half way, never
//! answer, download slowly, or answer something else entirely.
//!
//! ```ignore
//! let registry = Registry::start().await;
//! let proxy = RegistryProxy::start(&registry.url()).await;
//! proxy.set_rule(Rule::StallBody { path_contains: layer_digest.clone(), after_bytes: 4096 });
//! // ... pull "{proxy.host()}/test/busybox:latest" with berth, cancel it ...
//! assert_eq!(proxy.blob_gets(&layer_digest), 1);
//! ```
//!
//! Bodies are streamed chunk by chunk in both the normal and the misbehaving
//! cases: a 64 MiB layer never sits in the proxy's memory. The server is a
//! [`BackgroundServer`] (as the token server is), so it keeps answering while
//! a test blocks its own thread; dropping the proxy stops it and closes its
//! port before drop returns.
#![allow(dead_code)]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::http_server::BackgroundServer;
use super::registry::install_crypto_provider;

/// Request headers passed upstream: what the distribution API looks at.
/// Host is left to reqwest (the upstream's own), and Content-Length follows
/// from the body reqwest sends.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 4] =
    [header::ACCEPT, header::AUTHORIZATION, header::RANGE, header::CONTENT_TYPE];

/// Response headers passed back. Hop-by-hop headers (Transfer-Encoding,
/// Connection) are hyper's business on each side, so they are not copied.
const FORWARDED_RESPONSE_HEADERS: [&str; 10] = [
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
    "docker-content-digest",
    "docker-distribution-api-version",
    "docker-upload-uuid",
    "range",
    "www-authenticate",
];

/// Bodies go to the client in pieces of at most this size, which is also the
/// granularity of [`Rule::Throttle`].
const PIECE: usize = 16 * 1024;

/// How the proxy treats the requests it gets from now on. Rules match on the
/// request path (without the query), whatever the method.
#[derive(Clone, Debug, Default)]
pub enum Rule {
    /// Everything goes to the upstream and back unchanged.
    #[default]
    PassThrough,
    /// Matching requests get the response headers, then `after_bytes` of the
    /// body, then nothing ever again: the connection stays open and the body
    /// never ends. Other requests pass through.
    StallBody { path_contains: String, after_bytes: u64 },
    /// Matching requests are accepted and never answered at all (no headers).
    StallHeaders { path_contains: String },
    /// The body of matching requests is streamed at about `bytes_per_sec`, so
    /// a test can act while a download is under way.
    Throttle { path_contains: String, bytes_per_sec: u64 },
    /// Matching requests get this answer instead of going upstream.
    Respond { path_contains: String, status: u16, content_type: String, body: Vec<u8> },
    /// Matching requests get 200 and a body of spaces that never ends (no
    /// Content-Length), at about `bytes_per_sec`: a client that buffers a body
    /// whole never gets past it.
    RespondEndless { path_contains: String, content_type: String, bytes_per_sec: u64 },
}

/// One request the proxy received, as far as it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// "GET", "HEAD", ...
    pub method: String,
    /// The path, without the query ("/v2/test/x/blobs/sha256:...").
    pub path: String,
    /// The status the client got; None while (or if never) answered.
    pub status: Option<u16>,
    /// Body bytes handed to the client's connection so far.
    pub body_bytes: u64,
    /// Whether the whole body went out (true for bodiless answers such as HEAD's).
    pub body_complete: bool,
}

/// A reverse proxy on 127.0.0.1:<free port> in front of an upstream registry.
/// Stops (thread joined, port closed, open connections cut) on drop.
pub struct RegistryProxy {
    server: BackgroundServer,
    shared: Arc<Shared>,
}

impl RegistryProxy {
    /// Starts a proxy in front of `upstream_url` ("http://127.0.0.1:PORT"),
    /// passing everything through until told otherwise.
    pub async fn start(upstream_url: &str) -> RegistryProxy {
        install_crypto_provider();
        let bound = BackgroundServer::bind("registry-proxy");
        // Shared knows the proxy's own URL, to point Location headers back at it.
        let shared = Arc::new(Shared::new(upstream_url, bound.addr().port()));
        let serving = Arc::clone(&shared);
        let server = bound.serve(move |request| handle(Arc::clone(&serving), request));
        RegistryProxy { server, shared }
    }

    /// True once the proxy's server thread has ended.
    pub fn stopped_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.server.stopped_flag()
    }

    /// "127.0.0.1:PORT", as used in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// Replaces the current rule. Requests already being answered keep the
    /// rule they arrived under.
    pub fn set_rule(&self, rule: Rule) {
        *self.shared.rule.lock().expect("proxy rule lock") = rule;
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.records.lock().expect("proxy request log lock").clone()
    }

    /// Requests with this method ("GET") whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        let records = self.shared.records.lock().expect("proxy request log lock");
        records.iter().filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains)).count()
    }

    /// GETs of `/v2/<any repository>/blobs/<digest>`.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let suffix = format!("/blobs/{digest}");
        let records = self.shared.records.lock().expect("proxy request log lock");
        records.iter().filter(|r| r.method == "GET" && r.path.starts_with("/v2/") && r.path.ends_with(&suffix)).count()
    }

    /// Bodies being streamed to a client right now. A download the client
    /// gave up on leaves this count once the proxy notices the connection
    /// closed (poll for it).
    pub fn active_body_streams(&self) -> usize {
        self.shared.active_streams.load(Ordering::SeqCst)
    }
}

/// What the test's handle and the serving thread share.
struct Shared {
    /// "http://127.0.0.1:UPSTREAM", without a trailing slash.
    upstream: String,
    /// "http://127.0.0.1:PORT" of the proxy, for rewriting Location.
    own_url: String,
    http: reqwest::Client,
    rule: Mutex<Rule>,
    records: Mutex<Vec<RequestRecord>>,
    active_streams: AtomicUsize,
}

impl Shared {
    fn new(upstream_url: &str, port: u16) -> Shared {
        let http = reqwest::Client::builder()
            // Only loopback registries here; never go through a proxy from the environment.
            .no_proxy()
            // Redirects are the client's to follow (through us), not ours.
            .redirect(reqwest::redirect::Policy::none())
            // No overall timeout: a throttled 64 MiB layer takes as long as it takes.
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("building the proxy's HTTP client");
        Shared {
            upstream: upstream_url.trim_end_matches('/').to_owned(),
            own_url: format!("http://127.0.0.1:{port}"),
            http,
            rule: Mutex::default(),
            records: Mutex::default(),
            active_streams: AtomicUsize::new(0),
        }
    }

    /// Logs a new request; returns its index in the log.
    fn record(&self, method: &Method, path: &str) -> usize {
        let mut records = self.records.lock().expect("proxy request log lock");
        records.push(RequestRecord {
            method: method.to_string(),
            path: path.to_owned(),
            status: None,
            body_bytes: 0,
            body_complete: false,
        });
        records.len() - 1
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut RequestRecord)) {
        change(&mut self.records.lock().expect("proxy request log lock")[index]);
    }
}

type ProxyBody = BoxBody<Bytes, io::Error>;

/// How a body goes out to the client.
#[derive(Clone, Copy, Debug)]
enum Pace {
    AsFastAsPossible,
    BytesPerSec(u64),
    StallAfter(u64),
}

/// What the current rule makes of one request.
enum Action {
    Forward(Pace),
    StallHeaders,
    Respond { status: u16, content_type: String, body: Vec<u8> },
    RespondEndless { content_type: String, pace: Pace },
}

impl Rule {
    fn action(self, path: &str) -> Action {
        match self {
            Rule::StallBody { path_contains, after_bytes } if path.contains(&path_contains) => {
                Action::Forward(Pace::StallAfter(after_bytes))
            }
            Rule::StallHeaders { path_contains } if path.contains(&path_contains) => Action::StallHeaders,
            // A rate of 0 would never finish; treat it as the slowest possible.
            Rule::Throttle { path_contains, bytes_per_sec } if path.contains(&path_contains) => {
                Action::Forward(Pace::BytesPerSec(bytes_per_sec.max(1)))
            }
            Rule::Respond { path_contains, status, content_type, body } if path.contains(&path_contains) => {
                Action::Respond { status, content_type, body }
            }
            Rule::RespondEndless { path_contains, content_type, bytes_per_sec } if path.contains(&path_contains) => {
                Action::RespondEndless { content_type, pace: Pace::BytesPerSec(bytes_per_sec.max(1)) }
            }
            _ => Action::Forward(Pace::AsFastAsPossible),
        }
    }
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ProxyBody> {
    let path = request.uri().path().to_owned();
    let index = shared.record(request.method(), &path);
    let rule = shared.rule.lock().expect("proxy rule lock").clone();
    let response = match rule.action(&path) {
        // Cancelled with the connection or, at the latest, with the runtime on drop.
        Action::StallHeaders => std::future::pending().await,
        Action::Respond { status, content_type, body } => {
            let head_only = request.method() == Method::HEAD;
            canned(&shared, index, status, &content_type, body, head_only)
        }
        Action::RespondEndless { content_type, pace } => Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(stream_body(&shared, index, Source::Endless, pace))
            .expect("an endless answer"),
        Action::Forward(pace) => forward(&shared, index, request, pace).await,
    };
    shared.update(index, |record| record.status = Some(response.status().as_u16()));
    response
}

/// Sends `request` upstream and streams the answer back at `pace`.
async fn forward(shared: &Arc<Shared>, index: usize, request: Request<Incoming>, pace: Pace) -> Response<ProxyBody> {
    let (parts, body) = request.into_parts();
    // Request bodies are buffered: they are pushes of small test content (a
    // test pushes big images to the registry directly, and berth only pulls).
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error_response(shared, index, StatusCode::BAD_REQUEST, format!("reading the request: {e}")),
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path_and_query}", shared.upstream);
    let mut upstream_request = shared.http.request(parts.method.clone(), &url);
    for name in &FORWARDED_REQUEST_HEADERS {
        for value in parts.headers.get_all(name) {
            upstream_request = upstream_request.header(name, value);
        }
    }
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        upstream_request = upstream_request.body(body);
    }
    let upstream = match upstream_request.send().await {
        Ok(upstream) => upstream,
        Err(e) => {
            let message = format!("{} {url}: {e}", parts.method);
            return error_response(shared, index, StatusCode::BAD_GATEWAY, message);
        }
    };

    let mut response = Response::builder().status(upstream.status());
    for name in FORWARDED_RESPONSE_HEADERS {
        for value in upstream.headers().get_all(name) {
            response = response.header(name, value.clone());
        }
    }
    if let Some(location) = upstream.headers().get(header::LOCATION) {
        response = response.header(header::LOCATION, shared.rewrite_location(location));
    }
    let body = if parts.method == Method::HEAD {
        no_body(shared, index)
    } else {
        stream_body(shared, index, Source::Upstream(upstream), pace)
    };
    response.body(body).expect("building a proxied response from the upstream's parts")
}

impl Shared {
    /// A Location pointing at the upstream points at the proxy instead, so a
    /// client following it (an upload's PUT, say) stays behind the proxy.
    fn rewrite_location(&self, location: &HeaderValue) -> HeaderValue {
        let rewritten = location
            .to_str()
            .ok()
            .and_then(|location| location.strip_prefix(&self.upstream))
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            .map(|rest| format!("{}{rest}", self.own_url));
        match rewritten {
            Some(location) => HeaderValue::try_from(location).expect("a Location header rewritten from a valid one"),
            None => location.clone(),
        }
    }
}

/// The answer of a [`Rule::Respond`].
fn canned(
    shared: &Arc<Shared>,
    index: usize,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    head_only: bool,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(status).unwrap_or_else(|e| panic!("Rule::Respond with status {status}: {e}"));
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    let body = if head_only {
        no_body(shared, index)
    } else {
        stream_body(shared, index, Source::Canned(Some(Bytes::from(body))), Pace::AsFastAsPossible)
    };
    response.body(body).unwrap_or_else(|e| panic!("Rule::Respond with content type {content_type:?}: {e}"))
}

/// The proxy's own complaint (upstream unreachable, unreadable request).
fn error_response(shared: &Arc<Shared>, index: usize, status: StatusCode, message: String) -> Response<ProxyBody> {
    let body = Bytes::from(format!("registry proxy: {message}\n"));
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .header(header::CONTENT_LENGTH, body.len())
        .body(stream_body(shared, index, Source::Canned(Some(body)), Pace::AsFastAsPossible))
        .expect("building the proxy's error response")
}

fn no_body(shared: &Shared, index: usize) -> ProxyBody {
    shared.update(index, |record| record.body_complete = true);
    Empty::new().map_err(|never| match never {}).boxed()
}

// ---------------------------------------------------------------------------
// Body streaming
// ---------------------------------------------------------------------------

/// Where a body's bytes come from.
enum Source {
    Upstream(reqwest::Response),
    /// Taken on the first read.
    Canned(Option<Bytes>),
    /// Spaces, PIECE at a time, for ever.
    Endless,
}

impl Source {
    /// The body's length, when known up front (Content-Length).
    fn length(&self) -> Option<u64> {
        match self {
            Source::Upstream(response) => response.content_length(),
            Source::Canned(bytes) => bytes.as_ref().map(|bytes| bytes.len() as u64),
            Source::Endless => None,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
        match self {
            Source::Upstream(response) => response.chunk().await,
            Source::Canned(bytes) => Ok(bytes.take()),
            Source::Endless => Ok(Some(Bytes::from_static(&[b' '; PIECE]))),
        }
    }
}

type Sender = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// A body fed by a task that pumps `source` into a channel at `pace`. The
/// channel holds one piece, so what the task has sent is close to what the
/// connection has taken, and the task notices at once when hyper drops the
/// body (the client went away).
fn stream_body(shared: &Arc<Shared>, index: usize, source: Source, pace: Pace) -> ProxyBody {
    let (sender, mut receiver) = mpsc::channel(1);
    // Counted from here, not from inside the task, so the count is up as soon
    // as the client has the headers.
    let stream = ActiveStream::new(Arc::clone(shared), index, source.length());
    tokio::spawn(pump(source, sender, pace, stream));
    let frames = futures::stream::poll_fn(move |cx| receiver.poll_recv(cx));
    StreamBody::new(frames).boxed()
}

/// One body being streamed: counts itself in `active_streams` while alive
/// (also when its task is cancelled by the runtime shutting down) and keeps
/// its request's record up to date.
struct ActiveStream {
    shared: Arc<Shared>,
    index: usize,
    sent: u64,
    length: Option<u64>,
}

impl ActiveStream {
    fn new(shared: Arc<Shared>, index: usize, length: Option<u64>) -> ActiveStream {
        shared.active_streams.fetch_add(1, Ordering::SeqCst);
        ActiveStream { shared, index, sent: 0, length }
    }

    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
        // A body of known length is complete with its last byte: hyper drops
        // the body as soon as it has written Content-Length bytes, so the pump
        // may never see the source's end.
        let complete = self.length == Some(self.sent);
        self.shared.update(self.index, |record| {
            record.body_bytes += bytes as u64;
            record.body_complete |= complete;
        });
    }

    fn complete(&self) {
        self.shared.update(self.index, |record| record.body_complete = true);
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        self.shared.active_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn pump(mut source: Source, sender: Sender, pace: Pace, mut stream: ActiveStream) {
    let started = Instant::now();
    loop {
        // Waiting on a slow upstream must not hide that the client left.
        let chunk = tokio::select! {
            chunk = source.next_chunk() => chunk,
            () = sender.closed() => return,
        };
        let mut chunk = match chunk {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // An error frame makes hyper cut the connection, so the client
                // sees a broken body rather than a short one that looks whole.
                let _ = sender.send(Err(io::Error::other(format!("reading the upstream body: {e}")))).await;
                return;
            }
        };
        while !chunk.is_empty() {
            let allowed = match pace {
                Pace::StallAfter(limit) => usize::try_from(limit.saturating_sub(stream.sent)).unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            if allowed == 0 {
                // Keep the connection and the body open, sending nothing,
                // until the client gives up (or the proxy stops).
                sender.closed().await;
                return;
            }
            let piece = chunk.split_to(chunk.len().min(PIECE).min(allowed));
            let length = piece.len();
            if sender.send(Ok(Frame::data(piece))).await.is_err() {
                return; // The client went away.
            }
            stream.sent(length);
            if let Pace::BytesPerSec(rate) = pace {
                // Pace against the start rather than sleeping per piece, so
                // timer slack does not add up over a long body.
                let due = started + Duration::from_secs_f64(stream.sent as f64 / rate as f64);
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = sender.closed() => return,
                }
            }
        }
    }
    stream.complete();
}
