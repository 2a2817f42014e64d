//! The client side of the streaming server's remote-command protocol, over
//! WebSocket (`v5.channel.k8s.io`, else `v4.channel.k8s.io`): every message
//! starts with its channel, 0 stdin, 1 stdout, 2 stderr, 3 the command's
//! status (JSON), 4 a terminal resize (JSON); v5 adds 255, closing a channel.

use std::io::Read;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::error::ClientError;
use super::terminal::{self, RawMode};
use crate::remote_command::{CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const STDIN_CHUNK: usize = 32 * 1024;
/// Chunks of stdin waiting for the socket.
const STDIN_QUEUED: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Wanted {
    pub stdin: bool,
    pub tty: bool,
}

/// Runs the session at `url` (from Exec or Attach); returns the command's
/// exit code.
pub async fn run(url: &str, wanted: Wanted, timeout: Duration) -> Result<u8, ClientError> {
    let failed = |reason: String| ClientError::Stream { url: url.to_string(), reason };
    let Some(rest) = url.strip_prefix("http://") else {
        let reason =
            "only plain http streaming URLs are supported (turn the runtime's streaming TLS off for this client)";
        return Err(failed(reason.into()));
    };
    let address = rest.split('/').next().unwrap_or_default().to_string();
    let mut request = format!("ws://{rest}").into_client_request().map_err(|e| failed(e.to_string()))?;
    let protocols = format!("{V5}, {V4}").parse().map_err(|_| failed("bad protocol header".into()))?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols);
    let connect = async {
        let stream = TcpStream::connect(&address).await.map_err(|e| failed(e.to_string()))?;
        // Keystrokes go out as they are typed.
        stream.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
        tokio_tungstenite::client_async(request, stream).await.map_err(|e| failed(e.to_string()))
    };
    let (socket, response) =
        tokio::time::timeout(timeout, connect).await.map_err(|_| failed("no answer (raise --timeout)".into()))??;
    let v5 = response.headers().get("sec-websocket-protocol").is_some_and(|p| p.as_bytes() == V5.as_bytes());

    // Before any output arrives, so the first prompt is drawn raw.
    let raw = if wanted.tty { Some(RawMode::enter()?) } else { None };
    let outcome = session(url, socket, wanted, v5).await;
    drop(raw);
    outcome
}

async fn session(
    url: &str,
    socket: tokio_tungstenite::WebSocketStream<TcpStream>,
    wanted: Wanted,
    v5: bool,
) -> Result<u8, ClientError> {
    let (mut sink, mut source) = socket.split();
    let lost =
        |e: tokio_tungstenite::tungstenite::Error| ClientError::Stream { url: url.to_string(), reason: e.to_string() };
    let signals = |kind| signal(kind).map_err(|e| ClientError::io("installing a signal handler", e));
    let mut window = signals(SignalKind::window_change())?;
    let mut terminate = signals(SignalKind::terminate())?;
    let mut hangup = signals(SignalKind::hangup())?;
    let mut interrupt = signals(SignalKind::interrupt())?;
    let mut stdin = if wanted.stdin { Some(read_stdin()) } else { None };
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let mut status = Vec::new();

    if wanted.tty
        && let Some((width, height)) = terminal::size()
    {
        sink.send(framed(RESIZE, &terminal::resize_message(width, height))).await.map_err(lost)?;
    }
    loop {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                    let written = match data[0] {
                        STDOUT => write(&mut stdout, &data[1..]).await,
                        STDERR => write(&mut stderr, &data[1..]).await,
                        ERROR => {
                            status.extend_from_slice(&data[1..]);
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    written.map_err(|e| ClientError::io("writing the command's output", e))?;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(lost(e)),
            },
            chunk = next_chunk(&mut stdin) => match chunk {
                Some(bytes) => sink.send(framed(STDIN, &bytes)).await.map_err(lost)?,
                None => {
                    stdin = None;
                    // Before v5 the protocol cannot say stdin ended: the
                    // command sees it open until it exits.
                    if v5 {
                        sink.send(Message::binary(vec![CLOSE, STDIN])).await.map_err(lost)?;
                    }
                }
            },
            _ = window.recv() => {
                if let Some((width, height)) = terminal::size() {
                    sink.send(framed(RESIZE, &terminal::resize_message(width, height))).await.map_err(lost)?;
                }
            }
            _ = terminate.recv() => return Ok(128 + 15),
            _ = hangup.recv() => return Ok(128 + 1),
            _ = interrupt.recv() => return Ok(128 + 2),
        }
    }
    let _ = sink.close().await;
    exit_code(&status)
}

async fn write(target: &mut (impl AsyncWriteExt + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    target.write_all(bytes).await?;
    target.flush().await
}

fn framed(channel: u8, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(payload);
    Message::binary(bytes)
}

async fn next_chunk(stdin: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match stdin {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Stdin on a thread of its own: a read blocks until a key is pressed, and
/// must neither hold a runtime thread nor keep the process from exiting once
/// the command has ended (tokio's stdin would, on its blocking pool).
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(STDIN_QUEUED);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// The exit code the status on channel 3 gives, as kubectl reads it.
fn exit_code(status: &[u8]) -> Result<u8, ClientError> {
    if status.is_empty() {
        return Err(ClientError::Remote("the session ended without the command's status".into()));
    }
    let status: serde_json::Value = serde_json::from_slice(status)
        .map_err(|_| ClientError::Remote(String::from_utf8_lossy(status).trim().to_string()))?;
    if status["status"] == "Success" {
        return Ok(0);
    }
    if status["reason"] == "NonZeroExitCode" {
        let causes = status["details"]["causes"].as_array().into_iter().flatten();
        let code = causes
            .filter(|cause| cause["reason"] == "ExitCode")
            .find_map(|cause| cause["message"].as_str().and_then(|m| m.parse::<i64>().ok()));
        if let Some(code) = code {
            return Ok(u8::try_from(code).unwrap_or(u8::MAX));
        }
    }
    let message = status["message"].as_str().unwrap_or("no message").to_string();
    Err(ClientError::Remote(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_read_as_kubectl_reads_them() {
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#).ok(), Some(0));
        let failed = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(failed).ok(), Some(3));
        let other = br#"{"metadata":{},"status":"Failure","message":"executable not found"}"#;
        assert!(matches!(exit_code(other), Err(ClientError::Remote(m)) if m == "executable not found"));
        assert!(exit_code(b"").is_err());
    }
}
