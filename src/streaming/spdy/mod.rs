//! SPDY/3.1, as spoken by the `spdystream` library that kubelet, kubectl and
//! crictl use for exec, attach and port-forward.
//!
//! [`Session::server`] / [`Session::client`] run a session over an upgraded
//! connection (two Tokio tasks: a reader and a writer). [`Incoming::accept`]
//! yields the streams the peer opens, answering each with SYN_REPLY;
//! [`Session::open`] opens one and waits for the reply. A [`Stream`] is
//! `AsyncRead` (EOF on the peer's FIN) + `AsyncWrite` (`shutdown` sends FIN)
//! and splits into halves for two tasks.
//!
//! ```ignore
//! let (session, mut incoming) = Session::server(upgraded);
//! while let Some(stream) = incoming.accept().await {
//!     match stream.headers().get("streamtype") {
//!         Some("stdout") => { /* copy container output into it */ }
//!         Some("stdin") => { /* copy it into the container */ }
//!         _ => stream.reset(RstStatus::REFUSED_STREAM),
//!     }
//! }
//! session.closed().await?;
//! ```
//!
//! Lifetimes: dropping a stream's write half finishes it (FIN after the data
//! already written), dropping its read half discards what arrives later, and
//! `reset` aborts it. The session ends when the connection does (every stream
//! then fails, apart from data already received), on `close`/`abort`, or when
//! every handle is gone. A protocol violation by the peer ends it with GOAWAY.
//!
//! # Flow control
//!
//! spdystream implements no flow control: it never sends WINDOW_UPDATE,
//! ignores the ones it receives (and SETTINGS), has no session window, and
//! writes every DATA frame as soon as its caller does. Its own backpressure is
//! blocking: a stream's frames are handed over synchronously to the stream's
//! reader, so a slow reader stops its connection's read loop, and TCP stops
//! the sender.
//!
//! So, on sending, this module does not use the peer's windows: waiting for a
//! WINDOW_UPDATE that spdystream never sends would stall every stream after
//! 64 KiB. The writer task writes as fast as the connection drains; each
//! stream may queue a bounded amount ahead of it, and a writer beyond that
//! waits. Memory is bounded per stream and a slow peer slows our writers.
//!
//! On receiving, each stream buffers a bounded amount; when a stream's buffer
//! is full the reader task stops reading the connection until the
//! application reads, and TCP pushes back on the peer — the same mechanism
//! spdystream relies on. (Like in spdystream, one stream left unread then
//! holds up the others on that connection; drop a stream's read half if you
//! will not read it.) We do also return consumed bytes with per-stream and
//! session (3.1, stream 0) WINDOW_UPDATEs against the default 64 KiB window,
//! which spdystream ignores and a peer that honours flow control needs to keep
//! going; we never enforce our window on the peer, since spdystream would
//! overrun it.

mod dictionary;
mod error;
mod frame;
mod header_block;
mod headers;
#[cfg(test)]
mod props;
mod session;
mod state;
mod stream;

pub use error::{Error, RstStatus};
pub use headers::Headers;
pub use session::{Incoming, Session};
pub use stream::{RecvStream, SendStream, Stream};
