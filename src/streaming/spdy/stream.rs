//! Per-stream handles: a [`Stream`] and its read and write halves.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::RstStatus;
use super::headers::Headers;
use super::state::{Handle, Shared};

/// One SPDY stream: read with [`AsyncRead`] (EOF when the peer sends FIN),
/// write with [`AsyncWrite`] (`shutdown` sends FIN). Use [`Stream::split`] to
/// read and write from different tasks.
///
/// Dropping the stream (or its write half) finishes the sending direction
/// like `shutdown` would, after the data already written; use
/// [`Stream::reset`] to abort instead. Data arriving after the read half is
/// dropped is discarded, so a stream you do not read never stalls the others.
pub struct Stream {
    recv: RecvStream,
    send: SendStream,
    headers: Headers,
    associated_to: u32,
    reply_headers: Option<Headers>,
}

impl Stream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: u32,
        headers: Headers,
        associated_to: u32,
        reply_headers: Option<Headers>,
    ) -> Self {
        Stream {
            recv: RecvStream { id, handle: Handle::new(shared.clone()) },
            send: SendStream { id, handle: Handle::new(shared) },
            headers,
            associated_to,
            reply_headers,
        }
    }

    pub fn id(&self) -> u32 {
        self.recv.id
    }

    /// The headers of the SYN_STREAM that opened the stream: the peer's for an
    /// accepted stream, ours for an opened one.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The stream this one was opened in association with, if any.
    pub fn associated_to(&self) -> Option<u32> {
        (self.associated_to != 0).then_some(self.associated_to)
    }

    /// The peer's SYN_REPLY headers, for a stream we opened.
    pub fn reply_headers(&self) -> Option<&Headers> {
        self.reply_headers.as_ref()
    }

    /// Aborts the stream in both directions with RST_STREAM.
    pub fn reset(&self, status: RstStatus) {
        self.send.reset(status);
    }

    pub fn split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id()).field("headers", &self.headers).finish()
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

/// The receiving half of a [`Stream`].
pub struct RecvStream {
    id: u32,
    handle: Handle,
}

impl RecvStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the whole stream with RST_STREAM.
    pub fn reset(&self, status: RstStatus) {
        self.handle.lock().reset_local(self.id, status);
    }
}

impl std::fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvStream").field("id", &self.id).finish()
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.handle.lock().poll_read(self.id, cx, buf).map_err(io::Error::from)
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        self.handle.lock().drop_reader(self.id);
    }
}

/// The sending half of a [`Stream`].
pub struct SendStream {
    id: u32,
    handle: Handle,
}

impl SendStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Aborts the whole stream with RST_STREAM; queued data is dropped.
    pub fn reset(&self, status: RstStatus) {
        self.handle.lock().reset_local(self.id, status);
    }
}

impl std::fmt::Debug for SendStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendStream").field("id", &self.id).finish()
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.handle.lock().poll_write(self.id, cx, buf).map_err(io::Error::from)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.lock().poll_flush(self.id, cx).map_err(io::Error::from)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.handle.lock().poll_shutdown(self.id, cx).map_err(io::Error::from)
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        self.handle.lock().drop_writer(self.id);
    }
}
