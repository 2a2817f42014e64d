//! The remote-command and port-forward protocols over WebSocket: every message
//! starts with its channel number (an ASCII digit and base64 text in the
//! `base64` subprotocols). Each channel becomes a bounded in-memory pipe, so
//! the session code is the same as over SPDY and a slow side slows the other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::idle::Activity;
use super::protocols::Version;
use super::session::{self, ClientStreams};
use super::status::StatusFormat;
use super::{StreamRequest, Streaming};
use crate::container::StreamChoice;
use crate::remote_command::{CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};

/// Bytes buffered per channel and direction.
const PIPE_BUFFER: usize = 64 * 1024;
/// Messages queued for the socket across all channels.
const OUTGOING_MESSAGES: usize = 16;
/// A client's message may not be larger (stdin chunks are a few KiB).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// After the server's close frame, how long the client has to answer it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// After the session, how long a client has to take the output still queued.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

pub async fn run<T>(
    io: T,
    activity: Activity,
    protocol: &'static str,
    request: StreamRequest,
    streaming: Arc<Streaming>,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let config = WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    let base64 = protocol.contains("base64");
    let version = Version::of(protocol);
    let (sink, source) = socket.split();
    let (outgoing, queued) = mpsc::channel(OUTGOING_MESSAGES);
    let writer = tokio::spawn(write_messages(sink, queued, base64));
    let mut wiring = Wiring { outgoing, inputs: HashMap::new(), pumps: Vec::new() };
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let idle_timeout = streaming.idle_timeout;
    // The client is gone when its socket ends, or when it has been idle too long.
    let gone = Box::pin(async move {
        tokio::select! {
            _ = gone_rx => {}
            () = activity.idle_for(idle_timeout) => {
                tracing::info!(?idle_timeout, "streaming: ending an idle WebSocket session");
            }
        }
    });
    let reader = match request {
        StreamRequest::Exec { container_id, cmd, choice } => {
            let client = wiring.remote_command(choice, version, gone).await;
            let reader = wiring.start_reader(source, base64, version, gone_tx);
            session::exec(streaming.containers.clone(), container_id, cmd, choice, client).await;
            reader
        }
        StreamRequest::Attach { container_id, choice, close_stdin_on_end } => {
            let client = wiring.remote_command(choice, version, gone).await;
            let reader = wiring.start_reader(source, base64, version, gone_tx);
            session::attach(streaming.containers.clone(), container_id, choice, close_stdin_on_end, client).await;
            reader
        }
        StreamRequest::PortForward { sandbox_id, ports } => {
            let connections = wiring.port_forward(&ports).await;
            let reader = wiring.start_reader(source, base64, version, gone_tx);
            let forwards = connections.into_iter().map(|(port, data, error)| {
                let streaming = streaming.clone();
                let sandbox_id = sandbox_id.clone();
                async move { forward(&streaming, &sandbox_id, port, data, error).await }
            });
            tokio::select! {
                _ = futures::future::join_all(forwards) => {}
                () = gone => {}
            }
            reader
        }
    };
    wiring.finish(writer, reader).await;
}

/// The pipes between the session and the socket's reader and writer tasks.
struct Wiring {
    outgoing: mpsc::Sender<(u8, Vec<u8>)>,
    /// Where each readable channel's input goes.
    inputs: HashMap<u8, WriteHalf<DuplexStream>>,
    /// One task per writable channel, moving its output to the socket.
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

impl Wiring {
    /// A channel's session end: the client's messages on `id` arrive in it when
    /// `readable`, and what the session writes to it goes out when `writable`.
    fn channel(&mut self, id: u8, readable: bool, writable: bool) -> DuplexStream {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        let (output, input) = tokio::io::split(theirs);
        if readable {
            self.inputs.insert(id, input);
        }
        if writable {
            self.pumps.push(tokio::spawn(pump(id, output, self.outgoing.clone())));
        }
        ours
    }

    async fn remote_command(
        &mut self,
        choice: StreamChoice,
        version: Version,
        gone: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> ClientStreams {
        // kubelet's first message: an empty one on the lowest writable channel,
        // which tells the client the streams are open.
        let StreamChoice { stdin, stdout, stderr, tty } = choice;
        let first = if stdout {
            STDOUT
        } else if stderr {
            STDERR
        } else {
            ERROR
        };
        let _ = self.outgoing.send((first, Vec::new())).await;
        let boxed_read = |pipe: DuplexStream| Box::new(pipe) as session::BoxRead;
        let boxed_write = |pipe: DuplexStream| Box::new(pipe) as session::BoxWrite;
        ClientStreams {
            stdin: stdin.then(|| boxed_read(self.channel(STDIN, true, false))),
            stdout: stdout.then(|| boxed_write(self.channel(STDOUT, false, true))),
            stderr: stderr.then(|| boxed_write(self.channel(STDERR, false, true))),
            // Without a tty nothing reads sizes: the channel's messages are
            // dropped, rather than filling a pipe and stalling the other channels.
            resize: tty.then(|| boxed_read(self.channel(RESIZE, true, false))),
            error: Some(boxed_write(self.channel(ERROR, false, true))),
            status: if version >= Version::V4 { StatusFormat::Status } else { StatusFormat::Text },
            gone,
            stop_input: None,
        }
    }

    /// Port i's data channel is 2i and its error channel 2i + 1; each starts
    /// with the port, two bytes little-endian, before anything else.
    async fn port_forward(&mut self, ports: &[u16]) -> Vec<(u16, DuplexStream, DuplexStream)> {
        let mut connections = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let (Ok(data_id), Ok(error_id)) = (u8::try_from(2 * i), u8::try_from(2 * i + 1)) else { break };
            for id in [data_id, error_id] {
                let _ = self.outgoing.send((id, port.to_le_bytes().to_vec())).await;
            }
            let data = self.channel(data_id, true, true);
            let error = self.channel(error_id, false, true);
            connections.push((*port, data, error));
        }
        connections
    }

    fn start_reader<S>(
        &mut self,
        source: S,
        base64: bool,
        version: Version,
        gone: oneshot::Sender<()>,
    ) -> tokio::task::JoinHandle<()>
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Send + Unpin + 'static,
    {
        let inputs = std::mem::take(&mut self.inputs);
        tokio::spawn(read_messages(source, inputs, base64, version >= Version::V5, gone))
    }

    /// Lets the outputs drain, closes the socket with a normal close frame and
    /// gives the client a moment to answer it. A client that stopped reading
    /// gets `DRAIN_GRACE` to take what is queued.
    async fn finish(self, mut writer: tokio::task::JoinHandle<()>, mut reader: tokio::task::JoinHandle<()>) {
        let Wiring { outgoing, inputs, pumps } = self;
        drop((outgoing, inputs));
        let aborts: Vec<_> = pumps.iter().map(tokio::task::JoinHandle::abort_handle).collect();
        let drained = tokio::time::timeout(DRAIN_GRACE, async {
            futures::future::join_all(pumps).await;
            let _ = (&mut writer).await;
        })
        .await;
        if drained.is_err() {
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
            writer.abort();
        }
        if tokio::time::timeout(CLOSE_GRACE, &mut reader).await.is_err() {
            reader.abort();
        }
    }
}

/// Moves what the session writes on channel `id` to the socket, in chunks.
async fn pump(id: u8, mut output: impl AsyncRead + Unpin, outgoing: mpsc::Sender<(u8, Vec<u8>)>) {
    let mut buffer = vec![0u8; PIPE_BUFFER];
    loop {
        match output.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if outgoing.send((id, buffer[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_messages<S>(mut sink: S, mut queued: mpsc::Receiver<(u8, Vec<u8>)>, base64: bool)
where
    S: futures::Sink<Message> + Unpin,
{
    while let Some((channel, data)) = queued.recv().await {
        let message = if base64 {
            Message::text(format!("{}{}", char::from(b'0'.wrapping_add(channel)), STANDARD.encode(&data)))
        } else {
            let mut framed = Vec::with_capacity(1 + data.len());
            framed.push(channel);
            framed.extend_from_slice(&data);
            Message::binary(framed)
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    let _ = sink.send(Message::Close(Some(close))).await;
}

/// Routes the client's messages to the channels' pipes until the socket ends;
/// then `gone` tells the session.
async fn read_messages<S>(
    mut source: S,
    mut inputs: HashMap<u8, WriteHalf<DuplexStream>>,
    base64: bool,
    close_signal: bool,
    gone: oneshot::Sender<()>,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(message)) = source.next().await {
        let Some((channel, data)) = decode(message, base64) else { continue };
        if close_signal && channel == CLOSE {
            // `[255, channel]`: the client is done sending on that channel.
            if let [closed] = data[..] {
                if let Some(mut input) = inputs.remove(&closed) {
                    let _ = input.shutdown().await;
                }
            }
            continue;
        }
        if let Some(input) = inputs.get_mut(&channel) {
            if input.write_all(&data).await.is_err() {
                inputs.remove(&channel);
            }
        }
    }
    drop(inputs);
    let _ = gone.send(());
}

/// A data message's channel and payload; none for control or malformed messages.
fn decode(message: Message, base64: bool) -> Option<(u8, Vec<u8>)> {
    let bytes: Vec<u8> = match message {
        Message::Binary(bytes) => bytes.to_vec(),
        Message::Text(text) => text.as_bytes().to_vec(),
        _ => return None,
    };
    let (&first, payload) = bytes.split_first()?;
    if base64 {
        let channel = first.checked_sub(b'0')?;
        Some((channel, STANDARD.decode(payload).ok()?))
    } else {
        Some((first, payload.to_vec()))
    }
}

async fn forward(streaming: &Streaming, sandbox_id: &str, port: u16, data: DuplexStream, mut error: DuplexStream) {
    match streaming.sandboxes.dial(sandbox_id, port).await {
        Ok(connection) => super::port_forward::relay(connection, data).await,
        Err(e) => {
            let message = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
            let _ = error.write_all(message.as_bytes()).await;
        }
    }
    let _ = error.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_decode_in_both_framings() {
        assert_eq!(decode(Message::binary(vec![0, b'h', b'i']), false), Some((0, b"hi".to_vec())));
        assert_eq!(decode(Message::text("0aGk="), true), Some((0, b"hi".to_vec())));
        assert_eq!(decode(Message::text("0!!"), true), None, "bad base64 is dropped");
        assert_eq!(decode(Message::binary(Vec::<u8>::new()), false), None);
        assert_eq!(decode(Message::Ping(Default::default()), false), None);
        assert_eq!(decode(Message::binary(vec![CLOSE, STDIN]), false), Some((CLOSE, vec![STDIN])));
    }
}
