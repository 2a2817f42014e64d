//! One NRI connection: a unix socket carrying two ttrpc connections through
//! NRI's multiplexer. On connection 1 the plugin serves its Plugin service and
//! berth calls it; on connection 2 berth serves the Runtime service and the
//! plugin calls it. A frame of the multiplexer is an 8-byte big-endian header
//! (connection ID, payload length) and its payload; each connection's frames
//! carry one ttrpc byte stream.
//!
//! Frames are written as NRI's Go implementation writes them, because its
//! reader hands a whole frame to one read of a 4096-byte buffer: a message's
//! first 4096 bytes make one frame and the rest another, and no frame holds
//! bytes of two messages. Frames from the other side may be of any size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::lock;
use super::ttrpc::{self, Decoder, FrameError, Message};

/// Where the plugin serves and berth calls.
pub const PLUGIN_SERVICE_CONN: u32 = 1;
/// Where berth serves and the plugin calls.
pub const RUNTIME_SERVICE_CONN: u32 = 2;

const FRAME_HEADER_LEN: usize = 8;
/// The first frame of a message: what the Go reader's buffer holds.
const FIRST_FRAME_MAX: usize = 4096;
/// Any frame: the Go writer's own limit.
const FRAME_MAX: usize = ttrpc::MAX_PAYLOAD + ttrpc::HEADER_LEN;
/// Messages waiting for the writer; a caller past it waits.
const OUTGOING_DEPTH: usize = 64;
/// Calls from the other side answered at once; past it, berth reads no more
/// from the connection until one is answered (a flood holds no more tasks).
const SERVED_AT_ONCE: usize = 16;

/// Which side of the connection this end is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub serves_on: u32,
    pub calls_on: u32,
}

/// berth's side.
pub const RUNTIME: Role = Role { serves_on: RUNTIME_SERVICE_CONN, calls_on: PLUGIN_SERVICE_CONN };
/// A plugin's side (berth's tests play it).
pub const PLUGIN: Role = Role { serves_on: PLUGIN_SERVICE_CONN, calls_on: RUNTIME_SERVICE_CONN };

/// Answers the calls that arrive: the encoded result, or a status.
pub type Handler = Arc<dyn Fn(ttrpc::Request) -> BoxFuture<'static, Result<Vec<u8>, ttrpc::Status>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the NRI connection is closed")]
    Closed,
    #[error("{method}: no answer within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("{method}: {message} (code {code})")]
    Status { method: String, code: i32, message: String },
    #[error("{method}: the answer does not decode: {source}")]
    Decode {
        method: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

type Pending = Arc<Mutex<Option<HashMap<u32, oneshot::Sender<ttrpc::Response>>>>>;

/// One end of an NRI connection; dropping it closes the connection.
pub struct Peer {
    role: Role,
    outgoing: mpsc::Sender<(u32, Vec<u8>)>,
    /// Calls waiting for an answer, by stream ID; None once the connection broke.
    pending: Pending,
    /// Odd, rising, as ttrpc wants a client's.
    next_stream: AtomicU32,
    tasks: Vec<JoinHandle<()>>,
}

impl Peer {
    /// Starts reading and writing `stream` as `role`, answering calls with `handler`.
    pub fn start(stream: UnixStream, role: Role, handler: Handler) -> Peer {
        let (reader, writer) = stream.into_split();
        let (outgoing, queue) = mpsc::channel(OUTGOING_DEPTH);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let writing = tokio::spawn(write_frames(writer, queue));
        let reading = tokio::spawn(read_frames(reader, role, handler, outgoing.clone(), pending.clone()));
        Peer { role, outgoing, pending, next_stream: AtomicU32::new(1), tasks: vec![writing, reading] }
    }

    /// Calls `service`/`method` on the other side and waits at most `timeout`
    /// (which the other side is told, as its deadline).
    pub async fn call<Answer: prost::Message + Default>(
        &self,
        service: &str,
        method: &str,
        argument: &impl prost::Message,
        timeout: Duration,
    ) -> Result<Answer, PeerError> {
        let stream_id = self.next_stream.fetch_add(2, Ordering::Relaxed);
        let (answered, answer) = oneshot::channel();
        lock(&self.pending).as_mut().ok_or(PeerError::Closed)?.insert(stream_id, answered);
        let request = ttrpc::Request {
            service: service.to_string(),
            method: method.to_string(),
            payload: argument.encode_to_vec(),
            timeout_nano: i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX),
            metadata: Vec::new(),
        };
        let message = Message { stream_id, kind: ttrpc::REQUEST, flags: 0, payload: request.encode_to_vec() };
        let result = async {
            self.outgoing.send((self.role.calls_on, message.encode()?)).await.map_err(|_| PeerError::Closed)?;
            answer.await.map_err(|_| PeerError::Closed)
        };
        let response = match tokio::time::timeout(timeout, result).await {
            Ok(response) => response?,
            Err(_) => {
                // No cancel exists in ttrpc: a late answer finds no one waiting.
                if let Some(pending) = lock(&self.pending).as_mut() {
                    pending.remove(&stream_id);
                }
                return Err(PeerError::Timeout { method: method.to_string(), timeout });
            }
        };
        if let Some(status) = response.status.filter(|status| status.code != ttrpc::code::OK) {
            return Err(PeerError::Status { method: method.to_string(), code: status.code, message: status.message });
        }
        Answer::decode(response.payload.as_slice()).map_err(|source| PeerError::Decode { method: method.to_string(), source })
    }

    /// Whether the connection still works.
    pub fn is_open(&self) -> bool {
        lock(&self.pending).is_some() && !self.outgoing.is_closed()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn write_frames(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<(u32, Vec<u8>)>) {
    while let Some((conn, bytes)) = queue.recv().await {
        let (first, rest) = bytes.split_at(bytes.len().min(FIRST_FRAME_MAX));
        for frame in std::iter::once(first).chain(rest.chunks(FRAME_MAX)) {
            let mut out = Vec::with_capacity(FRAME_HEADER_LEN + frame.len());
            out.extend_from_slice(&conn.to_be_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
            out.extend_from_slice(frame);
            if writer.write_all(&out).await.is_err() {
                return;
            }
        }
    }
}

async fn read_frames(
    mut reader: OwnedReadHalf,
    role: Role,
    handler: Handler,
    outgoing: mpsc::Sender<(u32, Vec<u8>)>,
    pending: Pending,
) {
    let (mut answers, mut calls) = (Decoder::default(), Decoder::default());
    let serving = Arc::new(tokio::sync::Semaphore::new(SERVED_AT_ONCE));
    let result: Result<(), ()> = async {
        loop {
            let mut header = [0u8; FRAME_HEADER_LEN];
            reader.read_exact(&mut header).await.map_err(drop)?;
            let conn = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if length > FRAME_MAX {
                return Err(());
            }
            let mut payload = vec![0u8; length];
            reader.read_exact(&mut payload).await.map_err(drop)?;
            if conn == role.calls_on {
                answers.push(&payload);
                while let Some(message) = answers.next_message().map_err(drop)? {
                    deliver_answer(&pending, message);
                }
            } else if conn == role.serves_on {
                calls.push(&payload);
                while let Some(message) = calls.next_message().map_err(drop)? {
                    let permit = serving.clone().acquire_owned().await.map_err(drop)?;
                    serve(message, role, &handler, &outgoing, permit);
                }
            }
            // A frame for a connection neither side opened is dropped, as NRI's own reader does.
        }
    }
    .await;
    let _ = result;
    // Every waiting call learns the connection is gone.
    lock(&pending).take();
}

fn deliver_answer(pending: &Pending, message: Message) {
    if message.kind != ttrpc::RESPONSE {
        return;
    }
    let Ok(response) = ttrpc::Response::decode(message.payload.as_slice()) else { return };
    if let Some(waiting) = lock(pending).as_mut().and_then(|p| p.remove(&message.stream_id)) {
        let _ = waiting.send(response);
    }
}

/// Answers one call on a task of its own, as ttrpc's servers do; `permit`
/// is held until the answer is queued.
fn serve(
    message: Message,
    role: Role,
    handler: &Handler,
    outgoing: &mpsc::Sender<(u32, Vec<u8>)>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    if message.kind != ttrpc::REQUEST {
        return;
    }
    let (handler, outgoing) = (handler.clone(), outgoing.clone());
    tokio::spawn(async move {
        let _permit = permit;
        let result = match ttrpc::Request::decode(message.payload.as_slice()) {
            Ok(request) => handler(request).await,
            Err(e) => Err(ttrpc::Status { code: ttrpc::code::INVALID_ARGUMENT, message: e.to_string() }),
        };
        let response = match result {
            Ok(payload) => ttrpc::Response { status: Some(ttrpc::Status::default()), payload },
            Err(status) => ttrpc::Response { status: Some(status), payload: Vec::new() },
        };
        let answer = Message { stream_id: message.stream_id, kind: ttrpc::RESPONSE, flags: 0, payload: response.encode_to_vec() };
        if let Ok(bytes) = answer.encode() {
            let _ = outgoing.send((role.serves_on, bytes)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nri::api;

    fn handler(answer: impl Fn(ttrpc::Request) -> Result<Vec<u8>, ttrpc::Status> + Send + Sync + 'static) -> Handler {
        let answer = Arc::new(answer);
        Arc::new(move |request| {
            let answer = answer.clone();
            Box::pin(async move { answer(request) })
        })
    }

    /// berth's end and a plugin's end of one socket pair.
    fn pair(runtime: Handler, plugin: Handler) -> (Peer, Peer) {
        let (a, b) = UnixStream::pair().unwrap();
        (Peer::start(a, RUNTIME, runtime), Peer::start(b, PLUGIN, plugin))
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn each_side_calls_the_other_on_its_own_connection() {
        let runtime = handler(|request| {
            assert_eq!((request.service.as_str(), request.method.as_str()), ("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin"));
            let registered = api::RegisterPluginRequest::decode(request.payload.as_slice()).unwrap();
            assert_eq!(registered.plugin_name, "test");
            Ok(api::Empty {}.encode_to_vec())
        });
        let plugin = handler(|request| {
            assert_eq!(request.method, "Configure");
            assert!(request.timeout_nano > 0, "the caller's deadline travels with the call");
            Ok(api::ConfigureResponse { events: 0x62f }.encode_to_vec())
        });
        let (berth, plugin) = pair(runtime, plugin);
        let register = api::RegisterPluginRequest { plugin_name: "test".into(), plugin_idx: "00".into(), ..Default::default() };
        let _: api::Empty = plugin.call("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin", &register, SECOND).await.unwrap();
        let configured: api::ConfigureResponse =
            berth.call("nri.pkg.api.v1alpha1.Plugin", "Configure", &api::ConfigureRequest::default(), SECOND).await.unwrap();
        assert_eq!(configured.events, 0x62f);
    }

    #[tokio::test]
    async fn large_messages_statuses_and_timeouts() {
        let plugin: Handler = Arc::new(|request: ttrpc::Request| {
            Box::pin(async move {
                match request.method.as_str() {
                    "Synchronize" => {
                        let sync = api::SynchronizeRequest::decode(request.payload.as_slice()).unwrap();
                        Ok(api::SynchronizeResponse { more: sync.pods.len() == 300, update: Vec::new() }.encode_to_vec())
                    }
                    "Hang" => {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok(Vec::new())
                    }
                    _ => Err(ttrpc::Status { code: ttrpc::code::UNKNOWN, message: "refused by the plugin".into() }),
                }
            })
        });
        let (berth, _plugin) = pair(handler(|_| Ok(Vec::new())), plugin);
        let pods = (0..300).map(|i| api::PodSandbox { id: format!("{i:064}"), ..Default::default() }).collect();
        let sync = api::SynchronizeRequest { pods, ..Default::default() };
        assert!(sync.encoded_len() > 3 * FIRST_FRAME_MAX, "spans frames");
        let answer: api::SynchronizeResponse = berth.call("p", "Synchronize", &sync, SECOND).await.unwrap();
        assert!(answer.more, "the whole message arrived");

        let refused = berth.call::<api::Empty>("p", "CreateContainer", &api::Empty {}, SECOND).await.unwrap_err();
        assert!(matches!(&refused, PeerError::Status { code: 2, message, .. } if message == "refused by the plugin"));
        let late = berth.call::<api::Empty>("p", "Hang", &api::Empty {}, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(late, PeerError::Timeout { .. }), "{late}");
        // The late answer is dropped; the connection still works.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(berth.call::<api::SynchronizeResponse>("p", "Synchronize", &api::SynchronizeRequest::default(), SECOND).await.is_ok());
    }

    #[tokio::test]
    async fn a_vanished_plugin_fails_calls_at_once() {
        let (berth, plugin) = pair(handler(|_| Ok(Vec::new())), handler(|_| Ok(Vec::new())));
        drop(plugin);
        let error = berth.call::<api::Empty>("p", "Configure", &api::Empty {}, Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(error, PeerError::Closed), "{error}");
        assert!(!berth.is_open());
    }

    /// The Go reader's rule: no first frame over 4096 bytes, no frame with two messages.
    #[tokio::test]
    async fn frames_are_cut_as_the_go_reader_needs() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let berth = Peer::start(a, RUNTIME, handler(|_| Ok(Vec::new())));
        let big = api::SynchronizeRequest {
            pods: (0..100).map(|i| api::PodSandbox { id: format!("{i:064}"), ..Default::default() }).collect(),
            ..Default::default()
        };
        let call = tokio::spawn(async move { berth.call::<api::Empty>("p", "Synchronize", &big, Duration::from_millis(200)).await });
        let mut frames = Vec::new();
        let mut total = 0;
        loop {
            let mut header = [0u8; FRAME_HEADER_LEN];
            b.read_exact(&mut header).await.unwrap();
            let length = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
            let mut payload = vec![0; length];
            b.read_exact(&mut payload).await.unwrap();
            if frames.is_empty() {
                let message_len = u32::from_be_bytes(payload[..4].try_into().unwrap()) as usize;
                total = ttrpc::HEADER_LEN + message_len;
            }
            frames.push((u32::from_be_bytes(header[..4].try_into().unwrap()), length));
            if frames.iter().map(|(_, n)| n).sum::<usize>() == total {
                break;
            }
        }
        assert_eq!(frames[0], (PLUGIN_SERVICE_CONN, FIRST_FRAME_MAX));
        assert_eq!(frames.len(), 2, "the rest in one frame: {frames:?}");
        assert!(call.await.unwrap().is_err(), "no answer came");
    }
}
