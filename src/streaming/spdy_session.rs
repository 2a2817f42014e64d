//! The remote-command and port-forward protocols over SPDY: the client opens
//! one stream per role (`streamtype` header), the server answers each and
//! wires them to the session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::idle::Activity;
use super::protocols::Version;
use super::session::{self, ClientStreams};
use super::spdy::{RecvStream, RstStatus, SendStream, Session, Stream};
use super::status::StatusFormat;
use super::{StreamRequest, Streaming};
use crate::container::StreamChoice;

/// How long the client has to open its streams (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client has to close the connection after the session ended.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(60);

pub async fn run<T>(io: T, activity: Activity, version: Version, request: StreamRequest, streaming: Arc<Streaming>)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (spdy, incoming) = Session::server(io);
    // An idle connection is aborted: every stream fails, so the session ends
    // the way it does when the client goes.
    let idle_timeout = streaming.idle_timeout;
    let watchdog = tokio::spawn({
        let spdy = spdy.clone();
        async move {
            activity.idle_for(idle_timeout).await;
            tracing::info!(?idle_timeout, "streaming: ending an idle SPDY session");
            spdy.abort();
        }
    });
    let _stop_watching = AbortOnDrop(watchdog);
    match request {
        StreamRequest::Exec { container_id, cmd, choice } => {
            let Some(client) = remote_command_streams(&spdy, incoming, version, choice).await else { return };
            session::exec(streaming.containers.clone(), container_id, cmd, choice, client).await;
        }
        StreamRequest::Attach { container_id, choice, close_stdin_on_end } => {
            let Some(client) = remote_command_streams(&spdy, incoming, version, choice).await else { return };
            session::attach(streaming.containers.clone(), container_id, choice, close_stdin_on_end, client).await;
        }
        StreamRequest::PortForward { sandbox_id, .. } => port_forward(incoming, sandbox_id, streaming).await,
    }
    // client-go closes the connection once it has read every stream to its end;
    // closing first could lose what it has not read yet to a TCP reset.
    let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, spdy.closed()).await;
    // Sends what is queued, then GOAWAY.
    let _ = spdy.close().await;
}

/// Waits for the streams the client must open for `choice`, and hands them out
/// as the session's client side; none if they do not all come in time.
async fn remote_command_streams(
    spdy: &Session,
    mut incoming: super::spdy::Incoming,
    version: Version,
    choice: StreamChoice,
) -> Option<ClientStreams> {
    let wants_resize = choice.tty && version >= Version::V3;
    let expected = 1
        + usize::from(choice.stdin)
        + usize::from(choice.stdout)
        + usize::from(choice.stderr)
        + usize::from(wants_resize);
    let mut streams: HashMap<String, Stream> = HashMap::new();
    let deadline = Instant::now() + STREAM_CREATION_TIMEOUT;
    while streams.len() < expected {
        let stream = match tokio::time::timeout_at(deadline, incoming.accept()).await {
            Ok(Some(stream)) => stream,
            Ok(None) => return None,
            Err(_) => {
                tracing::debug!(
                    expected,
                    got = streams.len(),
                    "streaming: the client did not open its streams in time"
                );
                spdy.abort();
                return None;
            }
        };
        let kind = stream.headers().get("streamtype").unwrap_or_default().to_ascii_lowercase();
        let wanted = match kind.as_str() {
            "error" => true,
            "stdin" => choice.stdin,
            "stdout" => choice.stdout,
            "stderr" => choice.stderr,
            "resize" => wants_resize,
            _ => false,
        };
        if !wanted || streams.contains_key(&kind) {
            stream.reset(RstStatus::CANCEL);
            continue;
        }
        streams.insert(kind, stream);
    }
    // Later streams are refused: the session has all it needs.
    drop(incoming);
    let mut take = |kind: &str| streams.remove(kind).map(Stream::split);
    let writer =
        |halves: Option<(RecvStream, SendStream)>| halves.map(|(_recv, send)| Box::new(send) as session::BoxWrite);
    let (stdin, resize) = (take("stdin"), take("resize"));
    // Our sides of stdin and resize carry nothing, but ending them is a signal:
    // client-go ends its stdin when we end ours. kubelet ends ours at once only
    // in v1; since v2 it resets both when the session is over.
    let mut held: Vec<SendStream> = Vec::new();
    let mut reader = |halves: Option<(RecvStream, SendStream)>| {
        halves.map(|(recv, send)| {
            if version > Version::V1 {
                held.push(send);
            }
            Box::new(recv) as session::BoxRead
        })
    };
    let (stdin, resize) = (reader(stdin), reader(resize));
    let closed = spdy.clone();
    Some(ClientStreams {
        stdin,
        stdout: writer(take("stdout")),
        stderr: writer(take("stderr")),
        resize,
        error: writer(take("error")),
        status: if version >= Version::V4 { StatusFormat::Status } else { StatusFormat::Text },
        gone: Box::pin(async move {
            let _ = closed.closed().await;
        }),
        stop_input: Some(Box::new(move || held.iter().for_each(|send| send.reset(RstStatus::CANCEL)))),
    })
}

/// Ends a task when the session it watched is over.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A data stream and its error stream, paired by `requestid`.
#[derive(Default)]
struct Pair {
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
    opened: Option<Instant>,
}

/// Serves port-forward streams until the client closes the connection. Each
/// pair is one TCP connection into the pod, on its own task.
async fn port_forward(mut incoming: super::spdy::Incoming, sandbox_id: String, streaming: Arc<Streaming>) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            accepted = incoming.accept() => match accepted {
                Some(stream) => stream,
                None => return,
            },
            _ = sweep.tick() => {
                expire_incomplete(&mut pairs).await;
                continue;
            }
        };
        let headers = stream.headers();
        let port = headers.get("port").and_then(|p| p.trim().parse::<u16>().ok()).filter(|p| *p > 0);
        let kind = headers.get("streamtype").map(str::to_ascii_lowercase);
        let request_id = headers.get("requestid").map(str::to_string);
        let (Some(port), Some(kind), Some(request_id)) = (port, kind, request_id) else {
            stream.reset(RstStatus::CANCEL);
            continue;
        };
        let pair = pairs.entry(request_id.clone()).or_insert_with(|| Pair { port, ..Default::default() });
        pair.opened.get_or_insert_with(Instant::now);
        let slot = match kind.as_str() {
            "data" => &mut pair.data,
            "error" => &mut pair.error,
            _ => {
                stream.reset(RstStatus::CANCEL);
                continue;
            }
        };
        if slot.is_some() || pair.port != port {
            stream.reset(RstStatus::CANCEL);
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some() && pair.error.is_some() {
            if let Some(Pair { port, data: Some(data), error: Some(error), .. }) = pairs.remove(&request_id) {
                let (streaming, sandbox_id) = (streaming.clone(), sandbox_id.clone());
                tokio::spawn(async move { forward(streaming, sandbox_id, port, data, error).await });
            }
        }
    }
}

/// Tells the client of pairs whose second stream never came, and forgets them.
async fn expire_incomplete(pairs: &mut HashMap<String, Pair>) {
    let expired: Vec<String> = pairs
        .iter()
        .filter(|(_, pair)| pair.opened.is_some_and(|at| at.elapsed() >= STREAM_CREATION_TIMEOUT))
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        if let Some(pair) = pairs.remove(&id) {
            if let Some(mut error) = pair.error {
                let _ =
                    error.write_all(format!("request {id}: timed out waiting for the data stream").as_bytes()).await;
                let _ = error.shutdown().await;
            }
            if let Some(data) = pair.data {
                data.reset(RstStatus::CANCEL);
            }
        }
    }
}

async fn forward(streaming: Arc<Streaming>, sandbox_id: String, port: u16, data: Stream, mut error: Stream) {
    let connection = match streaming.sandboxes.dial(&sandbox_id, port).await {
        Ok(connection) => connection,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
            let _ = error.write_all(message.as_bytes()).await;
            let _ = error.shutdown().await;
            data.reset(RstStatus::CANCEL);
            return;
        }
    };
    super::port_forward::relay(connection, data).await;
    let _ = error.shutdown().await;
}
