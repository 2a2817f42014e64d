//! The session handle and the two background tasks that drive a connection.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::error::Error;
use super::frame::{self, Frame, FrameReader};
use super::header_block::{HeaderDecoder, HeaderEncoder};
use super::headers::Headers;
use super::state::{End, Handle, Shared, WRITE_BATCH};
use super::stream::Stream;

/// How long the final GOAWAY and the transport shutdown may take once the
/// session is over; a peer that stopped reading must not keep us around.
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a graceful close waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(2);

/// Read buffer of the reader task: many small frames per read syscall.
const READ_BUFFER: usize = 64 * 1024;

/// A SPDY/3.1 session over one connection.
///
/// Cloning gives another handle to the same session. The session ends when
/// the connection does, on [`Session::close`] / [`Session::abort`], or once
/// every handle (sessions, the [`Incoming`] and all streams) is dropped.
#[derive(Clone)]
pub struct Session {
    handle: Handle,
}

/// Streams the peer opens, in order.
pub struct Incoming {
    handle: Handle,
}

impl Session {
    /// Starts the server side (even stream ids) of a session over `io`, the
    /// upgraded HTTP connection. Must be called within a Tokio runtime.
    pub fn server<T>(io: T) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, false)
    }

    /// Starts the client side (odd stream ids). Must be called within a Tokio
    /// runtime.
    pub fn client<T>(io: T) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::start(io, true)
    }

    fn start<T>(io: T, client: bool) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared::new(client));
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(reader_task(shared.clone(), rd));
        tokio::spawn(writer_task(shared.clone(), wr));
        (Session { handle: Handle::new(shared.clone()) }, Incoming { handle: Handle::new(shared) })
    }

    /// Opens a stream and waits for the peer's SYN_REPLY, as Kubernetes'
    /// client does: spdystream drops data on a stream it has not replied to.
    /// With `fin` the stream is half-closed from the start (nothing to send).
    ///
    /// A peer that never replies keeps this pending until the session ends;
    /// wrap it in a timeout where that matters. Dropping the future cancels
    /// the stream with RST_STREAM.
    pub async fn open(&self, headers: Headers, fin: bool) -> Result<Stream, Error> {
        headers.validate()?;
        let id = self.handle.lock().begin_open(headers.clone(), fin)?;
        let mut guard = OpenGuard { handle: &self.handle, id: Some(id) };
        let reply = poll_fn(|cx| self.handle.lock().poll_reply(id, cx)).await;
        match reply {
            Ok(reply) => {
                guard.id = None;
                Ok(Stream::new(self.handle.shared().clone(), id, headers, 0, Some(reply)))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends a PING and waits for its echo.
    pub async fn ping(&self) -> Result<Duration, Error> {
        let start = Instant::now();
        let id = self.handle.lock().begin_ping()?;
        let _guard = PingGuard { handle: &self.handle, id };
        poll_fn(|cx| self.handle.lock().poll_ping(id, cx)).await?;
        Ok(start.elapsed())
    }

    /// Closes gracefully: refuses new streams and writes, sends what streams
    /// already queued, then GOAWAY, and waits for the session to end. After
    /// GOAWAY the connection is kept (reading) until the peer closes it, for at
    /// most 2 s, so that it cannot be reset under the peer's last reads.
    pub async fn close(&self) -> Result<(), Error> {
        self.handle.lock().begin_close();
        self.closed().await
    }

    /// Ends the session now, dropping unsent data.
    pub fn abort(&self) {
        self.handle.lock().terminate(End::Closed);
    }

    /// Waits until the session has ended and its connection is released.
    /// `Ok` for a local close or the peer closing the connection; the error
    /// otherwise.
    pub async fn closed(&self) -> Result<(), Error> {
        let mut rx = self.handle.shared().done.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            // The sender lives in `Shared`, which we hold: cannot happen.
            Err(_) => Ok(()),
        }
    }

    /// True once the session can no longer carry data.
    pub fn is_closed(&self) -> bool {
        self.handle.lock().end().is_some()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("closed", &self.is_closed()).finish()
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl Incoming {
    /// The next stream the peer opened. Accepting it queues its SYN_REPLY
    /// (empty headers, as Kubernetes' server sends), which always goes out
    /// before any data written to the stream. `None` once the session has
    /// ended, is closing, or the peer sent GOAWAY.
    pub async fn accept(&mut self) -> Option<Stream> {
        let accepted = poll_fn(|cx| self.handle.lock().poll_accept(cx)).await?;
        let assoc = accepted.associated_to;
        Some(Stream::new(self.handle.shared().clone(), accepted.id, accepted.headers, assoc, None))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.handle.lock().close_incoming();
    }
}

/// Cancels the stream of an `open()` that did not complete.
struct OpenGuard<'a> {
    handle: &'a Handle,
    id: Option<u32>,
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.handle.lock().abandon_open(id);
        }
    }
}

/// Forgets the ping of a `ping()` that was dropped before its echo came.
struct PingGuard<'a> {
    handle: &'a Handle,
    id: u32,
}

impl Drop for PingGuard<'_> {
    fn drop(&mut self) {
        self.handle.lock().cancel_ping(self.id);
    }
}

/// Reports a task's end even if it panics, so `closed()` never hangs.
struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.task_exited();
    }
}

async fn reader_task<R: AsyncRead + Unpin>(shared: Arc<Shared>, io: R) {
    let _guard = TaskGuard(shared.clone());
    let mut io = BufReader::with_capacity(READ_BUFFER, io);
    let mut headers = HeaderDecoder::new();
    let mut frames = FrameReader::default();
    loop {
        let raw = tokio::select! {
            biased;
            () = poll_fn(|cx| shared.lock().poll_reader_end(cx)) => break,
            raw = frames.next(&mut io) => raw,
        };
        let raw = match raw {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                shared.lock().peer_eof();
                break;
            }
            Err(e @ Error::Io(_)) => {
                shared.lock().terminate(End::Failed(e));
                break;
            }
            Err(e) => {
                shared.lock().fail(e);
                break;
            }
        };
        let frame = match frame::decode(raw, &mut headers) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                shared.lock().fail(e);
                break;
            }
        };
        if let Frame::Data { id, .. } = &frame {
            // Backpressure: a stream whose reader is behind stops us reading
            // the connection, and TCP then stops the peer.
            let id = *id;
            poll_fn(|cx| shared.lock().poll_room(id, cx)).await;
        }
        let mut st = shared.lock();
        if let Err(e) = st.on_frame(frame) {
            st.fail(e);
            break;
        }
    }
}

async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut io: W) {
    let _guard = TaskGuard(shared.clone());
    let mut headers = match HeaderEncoder::new() {
        Ok(enc) => enc,
        Err(e) => {
            shared.lock().terminate(End::Failed(e));
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(WRITE_BATCH + 64 * 1024);
    loop {
        let work = poll_fn(|cx| shared.lock().poll_work(cx)).await;
        buf.clear();
        let mut encoded = Ok(());
        for f in &work.frames {
            encoded = frame::encode(f, &mut headers, &mut buf);
            if encoded.is_err() {
                break;
            }
        }
        if let Err(e) = encoded {
            // The compression context is now unusable for any later frame.
            shared.lock().terminate(End::Failed(e));
            break;
        }
        if work.last {
            // The session is over (or ends with this GOAWAY): one bounded
            // attempt, since nobody may be reading any more.
            let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, write_flush(&mut io, &buf)).await;
            if work.closes {
                // Lingering close: send our FIN but keep reading until the
                // peer closes too. Closing a socket with unread input makes
                // the kernel send RST, and an RST can destroy the peer's copy
                // of our last frames (an exec's exit status) before it reads
                // them. spdystream closes as soon as it sees GOAWAY.
                let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, io.shutdown()).await;
                let _ = tokio::time::timeout(LINGER, poll_fn(|cx| shared.lock().poll_writer_end(cx))).await;
                shared.lock().terminate(End::Closed);
            }
            break;
        }
        let written = tokio::select! {
            biased;
            r = write_flush(&mut io, &buf) => r,
            () = poll_fn(|cx| shared.lock().poll_writer_end(cx)) => break,
        };
        if let Err(e) = written {
            shared.lock().terminate(End::Failed(e.into()));
            break;
        }
    }
    let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, io.shutdown()).await;
}

async fn write_flush<W: AsyncWrite + Unpin>(io: &mut W, buf: &[u8]) -> std::io::Result<()> {
    if !buf.is_empty() {
        io.write_all(buf).await?;
    }
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::error::RstStatus;
    use bytes::Bytes;
    use tokio::io::{AsyncReadExt, DuplexStream};

    /// A hand-driven peer: raw frames through our own codec.
    struct RawPeer {
        io: DuplexStream,
        enc: HeaderEncoder,
        dec: HeaderDecoder,
    }

    impl RawPeer {
        fn new(io: DuplexStream) -> Self {
            RawPeer { io, enc: HeaderEncoder::new().unwrap(), dec: HeaderDecoder::new() }
        }

        async fn send(&mut self, f: Frame) {
            let mut buf = BytesMut::new();
            frame::encode(&f, &mut self.enc, &mut buf).unwrap();
            self.io.write_all(&buf).await.unwrap();
        }

        async fn recv(&mut self) -> Option<Frame> {
            let raw = tokio::time::timeout(Duration::from_secs(5), frame::read_frame(&mut self.io))
                .await
                .expect("no frame")
                .unwrap()?;
            frame::decode(raw, &mut self.dec).unwrap()
        }
    }

    fn syn(id: u32) -> Frame {
        Frame::SynStream {
            id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::from([("streamtype", "stdin")]),
        }
    }

    #[test]
    fn handles_and_futures_can_move_between_tasks() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>(_: &T) {}
        send_sync::<Session>();
        send_sync::<Stream>();
        send_sync::<crate::streaming::spdy::RecvStream>();
        send_sync::<crate::streaming::spdy::SendStream>();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _enter = rt.enter();
        let (session, mut incoming) = Session::server(tokio::io::duplex(1024).0);
        send(&session.open(Headers::new(), false));
        send(&session.ping());
        send(&session.closed());
        send(&incoming.accept());
    }

    #[tokio::test]
    async fn self_to_self_echo_and_close() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (server, mut incoming) = Session::server(a);
        let (client, _client_incoming) = Session::client(b);
        let echo = tokio::spawn(async move {
            let stream = incoming.accept().await.unwrap();
            assert_eq!(stream.headers().get("streamtype"), Some("stdout"));
            let (mut rd, mut wr) = stream.split();
            tokio::io::copy(&mut rd, &mut wr).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let stream = client.open(Headers::from([("streamType", "stdout")]), false).await.unwrap();
        assert_eq!(stream.id(), 1);
        let (mut rd, mut wr) = stream.split();
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
        let sent = payload.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&sent).await.unwrap();
            wr.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        echo.await.unwrap();
        assert!(got == payload);
        client.ping().await.unwrap();
        client.close().await.unwrap();
        server.closed().await.unwrap();
    }

    #[tokio::test]
    async fn garbage_ends_the_session_with_goaway() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (session, _incoming) = Session::server(a);
        let mut peer = RawPeer::new(b);
        // A PING of the wrong length.
        peer.io.write_all(b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00").await.unwrap();
        assert_eq!(peer.recv().await, Some(Frame::GoAway { last_good: 0, status: frame::GOAWAY_PROTOCOL_ERROR }));
        assert_eq!(peer.recv().await, None);
        assert!(matches!(session.closed().await, Err(Error::Protocol(_))));
    }

    #[tokio::test]
    async fn slow_reader_pushes_back_on_the_peer() {
        let (a, b) = tokio::io::duplex(16 * 1024);
        let (_session, mut incoming) = Session::server(a);
        let mut peer = RawPeer::new(b);
        peer.send(syn(1)).await;
        let stream = incoming.accept().await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { id: 1, .. })));

        // The application does not read: the peer must soon be unable to
        // write, with only a bounded amount buffered on our side.
        let chunk = Bytes::from(vec![5u8; 32 * 1024]);
        let mut sent = 0usize;
        let flood = async {
            loop {
                peer.send(Frame::Data { id: 1, fin: false, data: chunk.clone() }).await;
                sent += chunk.len();
            }
        };
        assert!(tokio::time::timeout(Duration::from_millis(300), flood).await.is_err());
        assert!(sent < 1024 * 1024, "{sent} bytes taken while nobody read");

        // Reading lets the peer go on; consumed bytes come back as window.
        let (mut rd, _wr) = stream.split();
        let mut buf = vec![0u8; sent];
        rd.read_exact(&mut buf).await.unwrap();
        let mut updates = 0;
        while updates < 2 {
            match peer.recv().await {
                Some(Frame::WindowUpdate { .. }) => updates += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn dropping_every_handle_closes_with_goaway() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (session, mut incoming) = Session::server(a);
        let mut peer = RawPeer::new(b);
        peer.send(syn(1)).await;
        let stream = incoming.accept().await.unwrap();
        drop(session);
        drop(incoming);
        assert!(matches!(peer.recv().await, Some(Frame::SynReply { id: 1, .. })));
        // The stream still works while it is held.
        let (_rd, mut wr) = stream.split();
        wr.write_all(b"x").await.unwrap();
        assert!(matches!(peer.recv().await, Some(Frame::Data { id: 1, fin: false, .. })));
        drop(wr);
        drop(_rd);
        assert_eq!(peer.recv().await, Some(Frame::Data { id: 1, fin: true, data: Bytes::new() }));
        assert_eq!(peer.recv().await, Some(Frame::GoAway { last_good: 1, status: frame::GOAWAY_OK }));
        assert_eq!(peer.recv().await, None);
    }

    #[tokio::test]
    async fn cancelled_open_resets_the_stream() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (session, _incoming) = Session::client(a);
        let mut peer = RawPeer::new(b);
        let open = session.open(Headers::new(), false);
        assert!(tokio::time::timeout(Duration::from_millis(50), open).await.is_err());
        assert!(matches!(peer.recv().await, Some(Frame::SynStream { id: 1, .. })));
        assert_eq!(peer.recv().await, Some(Frame::RstStream { id: 1, status: RstStatus::CANCEL }));
    }

    #[tokio::test]
    async fn refused_open_is_an_error() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (session, _incoming) = Session::client(a);
        let mut peer = RawPeer::new(b);
        let responder = tokio::spawn(async move {
            assert!(matches!(peer.recv().await, Some(Frame::SynStream { id: 1, .. })));
            peer.send(Frame::RstStream { id: 1, status: RstStatus::REFUSED_STREAM }).await;
            peer
        });
        let err = session.open(Headers::new(), false).await.unwrap_err();
        assert!(matches!(err, Error::Reset { id: 1, status: RstStatus::REFUSED_STREAM }), "{err}");
        let _peer = responder.await.unwrap();
    }

    #[tokio::test]
    async fn bad_headers_fail_open_not_the_session() {
        let (a, _b) = tokio::io::duplex(64 * 1024);
        let (session, _incoming) = Session::client(a);
        assert!(session.open(Headers::from([("x", "a\0b")]), false).await.is_err());
        assert!(!session.is_closed());
    }
}
