//! Exec and Attach sessions, whatever the transport (SPDY or WebSocket): the
//! client's streams as byte pipes, wired to an exec'd process or to the
//! container's monitor, and the outcome reported on the error stream.
//!
//! Output is copied with bounded buffers: a slow client slows the process (its
//! pipe fills), it never grows berth's memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::status::{Outcome, StatusFormat};
use crate::container::{AttachInput, ContainerService, ExecStreams, Output, StreamChoice};

pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// How long output is still relayed after the process exited: a background
/// child holding the pipe would otherwise keep the session open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
const COPY_BUFFER: usize = 64 * 1024;
/// A resize message is a few dozen bytes; a client sending more is broken.
const MAX_RESIZE_MESSAGE: usize = 4096;

/// The client's side of a session.
pub struct ClientStreams {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    /// A stream of JSON terminal sizes.
    pub resize: Option<BoxRead>,
    pub error: Option<BoxWrite>,
    pub status: StatusFormat,
    /// Resolves when the client's connection is gone.
    pub gone: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Run when the session ends, before the outcome is written: the transport
    /// ends the client's input streams (kubelet resets SPDY's stdin and resize
    /// then; ending them earlier would make client-go end its own stdin).
    pub stop_input: Option<Box<dyn FnOnce() + Send>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Runs `cmd` in the container and relays it until it exits or the client goes.
pub async fn exec(
    containers: Arc<ContainerService>,
    container_id: String,
    cmd: Vec<String>,
    choice: StreamChoice,
    mut client: ClientStreams,
) {
    let mut session = match containers.exec_streaming(&container_id, cmd.clone(), choice).await {
        Ok(session) => session,
        Err(e) => return finish(client, Outcome::Failed(e.to_string()), Vec::new()).await,
    };
    let mut outputs = Vec::new();
    let mut inputs = Vec::new();
    let (exited_tx, exited) = tokio::sync::watch::channel(false);
    match session.take_streams() {
        Some(ExecStreams::Pipes { stdin, stdout, stderr }) => {
            if let (Some(from), Some(to)) = (client.stdin.take(), stdin) {
                // Dropping the pipe's end at the client's end of stdin closes it.
                inputs.push(tokio::spawn(copy(from, to, None)));
            }
            if let (Some(from), Some(to)) = (stdout, client.stdout.take()) {
                outputs.push(tokio::spawn(copy(from, to, Some(exited.clone()))));
            }
            if let (Some(from), Some(to)) = (stderr, client.stderr.take()) {
                outputs.push(tokio::spawn(copy(from, to, Some(exited.clone()))));
            }
        }
        Some(ExecStreams::Terminal(master)) => {
            // With a tty, the client's end of stdin is not the process's: it
            // ends its input with ^D, as at a terminal.
            if let Some(from) = client.stdin.take() {
                inputs.push(tokio::spawn(copy(from, master.clone(), None)));
            }
            if let Some(to) = client.stdout.take() {
                outputs.push(tokio::spawn(copy(master.clone(), to, Some(exited.clone()))));
            }
            if let Some(sizes) = client.resize.take() {
                inputs.push(tokio::spawn(follow_resizes(sizes, move |size| {
                    let master = master.clone();
                    async move {
                        if let Err(e) = master.resize(size.width, size.height) {
                            tracing::debug!(error = %e, "resizing an exec's terminal");
                        }
                    }
                })));
            }
        }
        None => {}
    }
    let outcome = tokio::select! {
        exited = session.wait() => match exited {
            Ok(0) => Outcome::Success,
            Ok(code) => Outcome::ExitCode { cmd, code },
            Err(e) => Outcome::Failed(e.to_string()),
        },
        () = &mut client.gone => {
            session.kill().await;
            abort_all(inputs.into_iter().chain(outputs));
            return;
        }
    };
    let _ = exited_tx.send(true);
    abort_all(inputs);
    finish(client, outcome, outputs).await;
}

/// Relays the container's stdio until it exits or the client goes.
pub async fn attach(
    containers: Arc<ContainerService>,
    container_id: String,
    choice: StreamChoice,
    close_stdin_on_end: bool,
    mut client: ClientStreams,
) {
    let (mut output, mut input) = match containers.attach(&container_id).await {
        Ok(ends) => ends,
        Err(e) => return finish(client, Outcome::Failed(e.to_string()), Vec::new()).await,
    };
    let mut inputs = Vec::new();
    // The client's stdin ends: the attach input comes back here, still open
    // (closing the connection would tell the monitor this client left).
    let (stdin_ended, mut stdin_end) = tokio::sync::oneshot::channel::<AttachInput>();
    let mut watching_only = None;
    match client.stdin.take().filter(|_| choice.stdin) {
        Some(mut from) => inputs.push(tokio::spawn(async move {
            // An empty frame marks this client as the one writing stdin, which
            // the monitor's stdin_once rule counts if the client vanishes.
            if input.stdin(&[]).await.is_err() {
                return;
            }
            let mut buffer = vec![0u8; COPY_BUFFER];
            loop {
                match from.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if input.stdin(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = stdin_ended.send(input);
        })),
        None => watching_only = Some(input),
    }
    if let Some(sizes) = client.resize.take().filter(|_| choice.tty) {
        let (containers, id) = (containers.clone(), container_id.clone());
        inputs.push(tokio::spawn(follow_resizes(sizes, move |size| {
            let (containers, id) = (containers.clone(), id.clone());
            async move {
                if let Err(e) = containers.resize_terminal(&id, size.width, size.height).await {
                    tracing::debug!(container = %id, error = %e, "resizing an attached terminal");
                }
            }
        })));
    }
    let (mut stdout, mut stderr) = (client.stdout.take(), client.stderr.take());
    let relay = async {
        loop {
            let (to, data) = match output.next().await {
                Ok(Some(Output::Stdout(data))) => (stdout.as_mut(), data),
                Ok(Some(Output::Stderr(data))) => (stderr.as_mut(), data),
                // The monitor is gone: the container ended.
                Ok(None) => return Outcome::Success,
                Err(e) => return Outcome::Failed(format!("reading the container's output: {e}")),
            };
            if let Some(to) = to {
                if to.write_all(&data).await.is_err() {
                    return Outcome::Failed("the client stopped reading".into());
                }
            }
        }
    };
    tokio::pin!(relay);
    let mut stdin_open = choice.stdin;
    let outcome = loop {
        tokio::select! {
            outcome = &mut relay => break outcome,
            ended = &mut stdin_end, if stdin_open => {
                stdin_open = false;
                let Ok(mut input) = ended else { continue };
                // As containerd: a stdin_once container without a tty loses its
                // stdin and the session follows its output to the end; otherwise
                // the end of the client's input detaches the client.
                if !close_stdin_on_end {
                    break Outcome::Success;
                }
                let _ = input.close_stdin().await;
                watching_only = Some(input);
            }
            () = &mut client.gone => {
                abort_all(inputs);
                return;
            }
        }
    };
    drop((relay, watching_only));
    abort_all(inputs);
    finish(client, outcome, Vec::new()).await;
}

/// Lets the output copies end, reports the outcome and closes every stream the
/// client still has open. A client gone meanwhile cuts it short.
async fn finish(mut client: ClientStreams, outcome: Outcome, outputs: Vec<JoinHandle<()>>) {
    let aborts: Vec<_> = outputs.iter().map(JoinHandle::abort_handle).collect();
    tokio::select! {
        _ = futures::future::join_all(outputs) => {}
        () = &mut client.gone => {
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
            return;
        }
    }
    if let Some(stop_input) = client.stop_input.take() {
        stop_input();
    }
    if let Some(mut error) = client.error.take() {
        if let Some(report) = outcome.encode(client.status) {
            let _ = error.write_all(&report).await;
        }
        let _ = error.shutdown().await;
    }
    for mut to in [client.stdout.take(), client.stderr.take()].into_iter().flatten() {
        let _ = to.shutdown().await;
    }
}

/// Copies until `from` ends or `to` fails, then closes `to`. Once `exited`
/// turns true (the process ended), a read that waits `DRAIN_AFTER_EXIT` ends the
/// copy: a background child may hold the pipe forever. Waiting on `to` (a slow
/// client) is never cut short.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut exited: Option<tokio::sync::watch::Receiver<bool>>,
) {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let read = match exited.as_mut() {
            None => from.read(&mut buffer).await,
            // A dropped sender counts as an exit: it never says so otherwise.
            Some(exited) if *exited.borrow() || exited.has_changed().is_err() => {
                match tokio::time::timeout(DRAIN_AFTER_EXIT, from.read(&mut buffer)).await {
                    Ok(read) => read,
                    Err(_) => break,
                }
            }
            Some(exited) => tokio::select! {
                read = from.read(&mut buffer) => read,
                // Read again, now with the deadline.
                _ = exited.changed() => continue,
            },
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

/// Applies each terminal size the client sends, in order.
async fn follow_resizes<F, Fut>(mut sizes: BoxRead, apply: F)
where
    F: Fn(TerminalSize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut pending = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        let n = match sizes.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buffer[..n]);
        let (parsed, used) = parse_sizes(&pending);
        pending.drain(..used);
        for size in parsed {
            apply(size).await;
        }
        if pending.len() > MAX_RESIZE_MESSAGE {
            return;
        }
    }
}

/// The complete sizes at the start of `bytes`, and how many bytes they took.
fn parse_sizes(bytes: &[u8]) -> (Vec<TerminalSize>, usize) {
    let mut sizes = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<TerminalSize>();
    let mut used = 0;
    while let Some(Ok(size)) = stream.next() {
        sizes.push(size);
        used = stream.byte_offset();
    }
    (sizes, used)
}

fn abort_all(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for task in tasks {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_they_complete() {
        let (sizes, used) = parse_sizes(br#"{"Width":80,"Height":24}{"Width":100,"Height":3"#);
        assert_eq!(sizes, vec![TerminalSize { width: 80, height: 24 }]);
        assert_eq!(used, 24);
        let (sizes, used) = parse_sizes(br#"{"Width":100,"Height":30}"#);
        assert_eq!((sizes.len(), used), (1, 25));
        assert_eq!(parse_sizes(b"").0, vec![]);
    }
}
