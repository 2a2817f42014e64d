//! Session state shared by the reader task, the writer task and the user's
//! handles, behind one mutex.
//!
//! One lock for the session and all its streams keeps the bookkeeping free of
//! lock-ordering hazards; every critical section is short and never awaits.
//! Waiting is done with wakers registered under the lock, so a check and its
//! registration can never miss a wake-up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::error::{Error, RstStatus};
use super::frame::{Frame, GOAWAY_INTERNAL_ERROR, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, MAX_STREAM_ID};
use super::headers::Headers;

mod inbound;
mod outbound;
mod session_ops;
mod stream_ops;

/// The SPDY/3 default window. We never advertise another one.
pub(crate) const INITIAL_WINDOW: u32 = 64 * 1024;

/// Consumed bytes are returned to the peer in WINDOW_UPDATEs of at least
/// this size, so updates cost one small frame per half window.
const WINDOW_UPDATE_THRESHOLD: u32 = INITIAL_WINDOW / 2;

/// Received bytes buffered per stream before the reader task stops reading
/// the connection. Larger than the window so that a peer honouring flow
/// control never hits it.
pub(crate) const RECV_BUFFER_LIMIT: usize = 256 * 1024;

/// Bytes a stream may queue for sending before its writer has to wait for the
/// connection to drain.
pub(crate) const SEND_BUFFER_LIMIT: usize = 256 * 1024;

/// Largest DATA frame we send: big writes are cut into frames of this size so
/// that streams interleave and the peer never needs to buffer a huge frame.
pub(crate) const DATA_CHUNK: usize = 32 * 1024;

/// Bytes the writer task gathers into one write to the connection.
pub(crate) const WRITE_BATCH: usize = 256 * 1024;

/// Peer-opened streams waiting for `accept()`; past this they are refused.
const MAX_PENDING_ACCEPT: usize = 128;

/// Live streams per session; past this, peer-opened streams are refused.
const MAX_STREAMS: usize = 1024;

/// Frames the reader task may queue in response to the peer (PING echoes,
/// refusals). A peer that keeps sending them without reading ours is
/// flooding; its extra frames are dropped rather than buffered.
const MAX_PEER_CONTROL: usize = 1024;

pub(crate) struct Shared {
    state: Mutex<State>,
    handles: AtomicUsize,
    pub(crate) done: watch::Sender<Option<Result<(), Error>>>,
}

impl Shared {
    pub(crate) fn new(client: bool) -> Self {
        Shared { state: Mutex::new(State::new(client)), handles: AtomicUsize::new(0), done: watch::Sender::new(None) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoning would only mean a panic elsewhere while holding the lock;
        // the state is still consistent enough to shut down with.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by each background task as it ends (also on panic, through a
    /// guard). The last one publishes the session outcome.
    pub(crate) fn task_exited(&self) {
        let outcome = {
            let mut st = self.lock();
            // A task ending while the session still runs would leave the other
            // one waiting forever.
            st.terminate(End::Failed(Error::SessionClosed));
            st.tasks = st.tasks.saturating_sub(1);
            if st.tasks > 0 {
                return;
            }
            st.end.as_ref().map(End::outcome).unwrap_or(Ok(()))
        };
        self.done.send_replace(Some(outcome));
    }
}

/// A user-facing reference to the session. While one exists the session runs;
/// when the last one is dropped the session closes gracefully.
pub(crate) struct Handle(Arc<Shared>);

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        shared.handles.fetch_add(1, Ordering::Relaxed);
        Handle(shared)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.0
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock()
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        Handle::new(self.0.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.lock().begin_close();
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum End {
    /// Closed locally, with GOAWAY.
    Closed,
    /// The connection reached end of input.
    PeerClosed,
    Failed(Error),
}

impl End {
    pub(crate) fn error(&self) -> Error {
        match self {
            End::Closed => Error::SessionClosed,
            End::PeerClosed => Error::PeerClosed,
            End::Failed(e) => e.clone(),
        }
    }

    fn outcome(&self) -> Result<(), Error> {
        match self {
            End::Closed | End::PeerClosed => Ok(()),
            End::Failed(e) => Err(e.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Reset {
    ByPeer(RstStatus),
    Local,
}

impl Reset {
    fn error(self, id: u32) -> Error {
        match self {
            Reset::ByPeer(status) => Error::Reset { id, status },
            Reset::Local => Error::LocallyReset { id },
        }
    }
}

/// A control frame that must precede the stream's data.
enum OutSyn {
    Stream { headers: Headers, fin: bool },
    Reply,
}

enum Reply {
    /// The peer opened the stream; we are the side that replies.
    NotExpected,
    Waiting(Option<Waker>),
    Got(Headers),
}

pub(crate) struct StreamState {
    syn_headers: Option<Headers>,
    associated_to: u32,

    recv: VecDeque<Bytes>,
    recv_len: usize,
    recv_fin: bool,
    recv_unacked: u32,
    window_queued: bool,
    reader_gone: bool,
    recv_waker: Option<Waker>,

    send: BytesMut,
    fin_queued: bool,
    fin_sent: bool,
    writer_gone: bool,
    send_waker: Option<Waker>,
    /// The session ended with data of this stream still unsent.
    send_lost: bool,
    out_syn: Option<OutSyn>,
    scheduled: bool,

    reply: Reply,
    reset: Option<Reset>,
}

impl StreamState {
    fn new(reply: Reply) -> Self {
        StreamState {
            syn_headers: None,
            associated_to: 0,
            recv: VecDeque::new(),
            recv_len: 0,
            recv_fin: false,
            recv_unacked: 0,
            window_queued: false,
            reader_gone: false,
            recv_waker: None,
            send: BytesMut::new(),
            fin_queued: false,
            fin_sent: false,
            writer_gone: false,
            send_waker: None,
            send_lost: false,
            out_syn: None,
            scheduled: false,
            reply,
            reset: None,
        }
    }

    fn wake_all(&mut self) {
        wake(&mut self.recv_waker);
        wake(&mut self.send_waker);
        if let Reply::Waiting(w) = &mut self.reply {
            wake(w);
        }
    }

    fn has_send_work(&self) -> bool {
        self.out_syn.is_some() || !self.send.is_empty() || (self.fin_queued && !self.fin_sent)
    }
}

fn wake(slot: &mut Option<Waker>) {
    if let Some(w) = slot.take() {
        w.wake();
    }
}

struct PingState {
    done: bool,
    waker: Option<Waker>,
}

/// A peer-opened stream handed to the application.
pub(crate) struct Accepted {
    pub id: u32,
    pub headers: Headers,
    pub associated_to: u32,
}

/// What the writer task should put on the wire next.
#[derive(Default)]
pub(crate) struct Work {
    pub frames: Vec<Frame>,
    /// The batch is the session's last; the writer stops after it.
    pub last: bool,
    /// The batch ends with our graceful GOAWAY: once written, the session is
    /// closed.
    pub closes: bool,
}

pub(crate) struct State {
    client: bool,
    next_stream_id: u32,
    /// Highest stream id the peer used, for the monotonicity check.
    last_peer_stream_id: u32,
    /// Highest peer stream we took on, reported in our GOAWAY.
    last_accepted: u32,
    next_ping_id: u32,
    pings: HashMap<u32, PingState>,
    streams: HashMap<u32, StreamState>,

    incoming: VecDeque<u32>,
    incoming_open: bool,
    accept_waker: Option<Waker>,

    ready: VecDeque<u32>,
    control: VecDeque<Frame>,
    window_dirty: VecDeque<u32>,
    session_unacked: u32,

    writer_waker: Option<Waker>,
    reader_waker: Option<Waker>,

    closing: bool,
    goaway_sent: bool,
    goaway_received: bool,
    end: Option<End>,
    tasks: u8,
}

impl State {
    fn new(client: bool) -> Self {
        State {
            client,
            next_stream_id: if client { 1 } else { 2 },
            last_peer_stream_id: 0,
            last_accepted: 0,
            next_ping_id: if client { 1 } else { 2 },
            pings: HashMap::new(),
            streams: HashMap::new(),
            incoming: VecDeque::new(),
            incoming_open: true,
            accept_waker: None,
            ready: VecDeque::new(),
            control: VecDeque::new(),
            window_dirty: VecDeque::new(),
            session_unacked: 0,
            writer_waker: None,
            reader_waker: None,
            closing: false,
            goaway_sent: false,
            goaway_received: false,
            end: None,
            tasks: 2,
        }
    }

    /// Stream and ping ids we allocate: odd for the client, even for the server.
    fn ours(&self, id: u32) -> bool {
        (id % 2 == 1) == self.client
    }

    pub(crate) fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    fn end_error(&self) -> Option<Error> {
        self.end.as_ref().map(End::error)
    }

    fn wake_writer(&mut self) {
        wake(&mut self.writer_waker);
    }

    fn schedule(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id)
            && !s.scheduled
        {
            s.scheduled = true;
            self.ready.push_back(id);
            wake(&mut self.writer_waker);
        }
    }

    fn push_peer_control(&mut self, frame: Frame) {
        if self.control.len() >= MAX_PEER_CONTROL {
            tracing::debug!(?frame, "SPDY peer is not reading; dropping control frame");
            return;
        }
        self.control.push_back(frame);
        self.wake_writer();
    }

    /// Forgets a stream once nothing can refer to it any more: both handles
    /// are gone and both directions are finished (or it was reset).
    fn maybe_remove(&mut self, id: u32) {
        if let Some(s) = self.streams.get(&id)
            && s.reader_gone
            && s.writer_gone
            && (s.reset.is_some() || (s.recv_fin && s.fin_sent))
        {
            self.streams.remove(&id);
        }
    }

    /// Accounts bytes the application consumed (or that were discarded) so
    /// that they are returned to the peer's window.
    fn consumed(&mut self, id: u32, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.session_unacked = self.session_unacked.saturating_add(n);
        let mut wake_writer = self.session_unacked >= WINDOW_UPDATE_THRESHOLD;
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_unacked = s.recv_unacked.saturating_add(n);
            if s.recv_unacked >= WINDOW_UPDATE_THRESHOLD && !s.window_queued && !s.recv_fin {
                s.window_queued = true;
                self.window_dirty.push_back(id);
                wake_writer = true;
            }
        }
        if wake_writer {
            self.wake_writer();
        }
    }

    /// Requests a graceful close: no new streams or writes; queued data is
    /// flushed, then GOAWAY is sent and the session ends.
    pub(crate) fn begin_close(&mut self) {
        if self.end.is_some() || self.closing {
            return;
        }
        self.closing = true;
        self.wake_writer();
        wake(&mut self.accept_waker);
    }

    /// Ends the session now. Unsent data is dropped; data already received
    /// stays readable.
    pub(crate) fn terminate(&mut self, end: End) {
        if self.end.is_some() {
            return;
        }
        match &end {
            End::Failed(e) => tracing::debug!(error = %e, "SPDY session failed"),
            End::Closed | End::PeerClosed => tracing::trace!(?end, "SPDY session ended"),
        }
        self.end = Some(end);
        self.ready.clear();
        self.window_dirty.clear();
        for s in self.streams.values_mut() {
            s.send_lost = s.has_send_work();
            s.send = BytesMut::new();
            s.scheduled = false;
            s.wake_all();
        }
        for p in self.pings.values_mut() {
            wake(&mut p.waker);
        }
        wake(&mut self.accept_waker);
        wake(&mut self.writer_waker);
        wake(&mut self.reader_waker);
    }

    /// The connection reached end of input.
    pub(crate) fn peer_eof(&mut self) {
        // After our GOAWAY this is the peer completing the close we asked for.
        self.terminate(if self.closing { End::Closed } else { End::PeerClosed });
    }

    /// Ends the session because of `err`, telling the peer with GOAWAY.
    pub(crate) fn fail(&mut self, err: Error) {
        if self.end.is_some() {
            return;
        }
        let status = match err {
            Error::Protocol(_) | Error::Compression(_) => GOAWAY_PROTOCOL_ERROR,
            _ => GOAWAY_INTERNAL_ERROR,
        };
        if !self.goaway_sent {
            self.goaway_sent = true;
            self.control.push_back(Frame::GoAway { last_good: self.last_accepted, status });
        }
        self.terminate(End::Failed(err));
    }

    fn reset_stream(&mut self, id: u32, reset: Reset, send: Option<RstStatus>) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        if s.reset.is_some() {
            return;
        }
        let finished = s.recv_fin && s.fin_sent;
        s.reset = Some(reset);
        // Data the peer sent before its RST stays readable, as in spdystream,
        // which hands a stream's frames over in order: kubectl resets its
        // streams when it is done, right after its last stdin bytes. Our own
        // reset abandons the stream, so what it buffered goes.
        let discarded = if matches!(reset, Reset::Local) { s.recv_len } else { 0 };
        if discarded > 0 {
            s.recv.clear();
            s.recv_len = 0;
        }
        s.send = BytesMut::new();
        s.out_syn = None;
        s.wake_all();
        if discarded > 0 {
            wake(&mut self.reader_waker);
        }
        if let Some(status) = send
            && !finished
            && self.end.is_none()
        {
            self.control.push_back(Frame::RstStream { id, status });
            self.wake_writer();
        }
        self.maybe_remove(id);
    }

    #[cfg(test)]
    fn stream_count(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
mod testutil {
    use super::*;
    use std::task::{Context, Poll};

    pub(super) fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    pub(super) fn syn(id: u32, fin: bool) -> Frame {
        Frame::SynStream {
            id,
            associated_to: 0,
            priority: 0,
            fin,
            unidirectional: false,
            headers: Headers::from([("streamtype", "stdin")]),
        }
    }

    pub(super) fn accept(st: &mut State) -> Accepted {
        match st.poll_accept(&mut cx()) {
            Poll::Ready(Some(a)) => a,
            _ => panic!("nothing to accept"),
        }
    }

    pub(super) fn work(st: &mut State) -> Vec<Frame> {
        match st.poll_work(&mut cx()) {
            Poll::Ready(w) => w.frames,
            Poll::Pending => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use std::task::Poll;
    use tokio::io::ReadBuf;

    #[test]
    fn termination_fails_pending_io_but_keeps_received_data() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        st.on_frame(Frame::Data { id: 1, fin: false, data: Bytes::from_static(b"abc") }).unwrap();
        st.terminate(End::PeerClosed);
        let mut mem = [0u8; 8];
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(1, &mut cx(), &mut buf), Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"abc");
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(1, &mut cx(), &mut buf), Poll::Ready(Err(Error::PeerClosed))));
        assert!(matches!(st.poll_write(1, &mut cx(), b"x"), Poll::Ready(Err(Error::PeerClosed))));
        assert!(matches!(st.poll_accept(&mut cx()), Poll::Ready(None)));
    }

    #[test]
    fn protocol_failure_queues_goaway() {
        let mut st = State::new(false);
        st.fail(Error::protocol("bad"));
        let Poll::Ready(w) = st.poll_work(&mut cx()) else { panic!() };
        assert_eq!(w.frames, vec![Frame::GoAway { last_good: 0, status: GOAWAY_PROTOCOL_ERROR }]);
        assert!(w.last);
    }
}
