//! Applying what the reader task receives from the peer.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::*;

impl State {
    /// Resolves once the session has ended, so the reader can stop.
    pub(crate) fn poll_reader_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.end.is_some() {
            return Poll::Ready(());
        }
        self.reader_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Resolves once stream `id` can take more data, or no longer needs it.
    /// This is where a slow reader pushes back on the connection.
    pub(crate) fn poll_room(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<()> {
        if self.end.is_some() {
            return Poll::Ready(());
        }
        match self.streams.get(&id) {
            Some(s) if s.recv_len >= RECV_BUFFER_LIMIT && !s.reader_gone && s.reset.is_none() => {
                self.reader_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }

    /// Applies one frame from the peer. An error is a protocol violation that
    /// ends the session.
    pub(crate) fn on_frame(&mut self, frame: Frame) -> Result<(), Error> {
        if self.end.is_some() {
            return Ok(());
        }
        match frame {
            Frame::SynStream { id, associated_to, fin, unidirectional, headers, .. } => {
                self.on_syn_stream(id, associated_to, fin, unidirectional, headers)?;
            }
            Frame::SynReply { id, fin, headers } => self.on_syn_reply(id, fin, headers),
            Frame::RstStream { id, status } => self.reset_stream(id, Reset::ByPeer(status), None),
            Frame::Headers { id, fin, .. } => {
                // Mid-stream headers carry nothing the Kubernetes protocols
                // use; only their FIN matters.
                if fin {
                    self.on_fin(id);
                }
            }
            Frame::Data { id, fin, data } => self.on_data(id, fin, data),
            Frame::Ping { id } => self.on_ping(id),
            Frame::GoAway { last_good, status } => self.on_goaway(last_good, status),
            Frame::Settings { entries, .. } => {
                // Nothing in SETTINGS changes what we do: see the module docs
                // on flow control for why the peer's window size is not used.
                tracing::trace!(?entries, "SPDY SETTINGS ignored");
            }
            Frame::WindowUpdate { id, delta } => {
                tracing::trace!(id, delta, "SPDY WINDOW_UPDATE ignored");
            }
        }
        Ok(())
    }

    fn on_syn_stream(
        &mut self,
        id: u32,
        associated_to: u32,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    ) -> Result<(), Error> {
        if self.ours(id) || id <= self.last_peer_stream_id {
            return Err(Error::protocol(format!(
                "peer opened stream {id} after {} (ids must grow and have the peer's parity)",
                self.last_peer_stream_id
            )));
        }
        self.last_peer_stream_id = id;
        let refuse = self.closing
            || self.goaway_sent
            || !self.incoming_open
            || self.incoming.len() >= MAX_PENDING_ACCEPT
            || self.streams.len() >= MAX_STREAMS;
        if refuse {
            tracing::debug!(id, "SPDY stream refused");
            self.push_peer_control(Frame::RstStream { id, status: RstStatus::REFUSED_STREAM });
            return Ok(());
        }
        self.last_accepted = id;
        let mut s = StreamState::new(Reply::NotExpected);
        s.syn_headers = Some(headers);
        s.associated_to = associated_to;
        s.recv_fin = fin;
        if unidirectional {
            // The peer will not read: our side starts out finished.
            s.fin_queued = true;
            s.fin_sent = true;
        }
        self.streams.insert(id, s);
        self.incoming.push_back(id);
        wake(&mut self.accept_waker);
        Ok(())
    }

    fn on_syn_reply(&mut self, id: u32, fin: bool, headers: Headers) {
        let Some(s) = self.streams.get_mut(&id) else {
            tracing::debug!(id, "SPDY SYN_REPLY for unknown stream ignored");
            return;
        };
        if let Reply::Waiting(w) = &mut s.reply {
            wake(w);
            s.reply = Reply::Got(headers);
        } else {
            tracing::debug!(id, "SPDY duplicate or unexpected SYN_REPLY ignored");
        }
        if fin {
            self.on_fin(id);
        }
    }

    fn on_fin(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_fin = true;
            wake(&mut s.recv_waker);
            self.maybe_remove(id);
        }
    }

    fn on_data(&mut self, id: u32, fin: bool, data: Bytes) {
        let Some(s) = self.streams.get_mut(&id) else {
            // Frames in flight for a stream we reset or forgot: dropping them
            // is what both the draft and spdystream do.
            tracing::trace!(id, len = data.len(), "SPDY DATA for unknown stream dropped");
            return;
        };
        if s.reset.is_some() || s.recv_fin {
            tracing::debug!(id, "SPDY DATA after reset or FIN dropped");
            return;
        }
        let len = data.len();
        if s.reader_gone {
            self.consumed(id, len);
        } else if len > 0 {
            s.recv_len += len;
            s.recv.push_back(data);
            wake(&mut s.recv_waker);
        }
        if fin {
            self.on_fin(id);
        }
    }

    fn on_ping(&mut self, id: u32) {
        if self.ours(id) {
            if let Some(p) = self.pings.get_mut(&id) {
                p.done = true;
                wake(&mut p.waker);
            }
        } else {
            self.push_peer_control(Frame::Ping { id });
        }
    }

    fn on_goaway(&mut self, last_good: u32, status: u32) {
        tracing::debug!(last_good, status, "SPDY GOAWAY received");
        self.goaway_received = true;
        // Our streams above `last_good` were never seen by the peer.
        let unseen: Vec<u32> = self.streams.keys().copied().filter(|&id| self.ours(id) && id > last_good).collect();
        for id in unseen {
            self.reset_stream(id, Reset::ByPeer(RstStatus::REFUSED_STREAM), None);
        }
        wake(&mut self.accept_waker);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use tokio::io::ReadBuf;

    #[test]
    fn peer_stream_ids_must_grow() {
        let mut st = State::new(false);
        st.on_frame(syn(3, false)).unwrap();
        assert!(st.on_frame(syn(1, false)).is_err());
        // Server-parity id from a client.
        let mut st = State::new(false);
        assert!(st.on_frame(syn(2, false)).is_err());
    }

    #[test]
    fn full_receive_buffer_pauses_the_reader() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        st.on_frame(Frame::Data { id: 1, fin: false, data: Bytes::from(vec![1u8; RECV_BUFFER_LIMIT]) }).unwrap();
        assert!(st.poll_room(1, &mut cx()).is_pending());
        let mut mem = vec![0u8; 1000];
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(1, &mut cx(), &mut buf), Poll::Ready(Ok(()))));
        assert_eq!(buf.filled().len(), 1000);
        assert!(st.poll_room(1, &mut cx()).is_ready());
    }

    #[test]
    fn peer_reset_fails_both_halves_and_streams_are_forgotten() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        st.on_frame(Frame::RstStream { id: 1, status: RstStatus::CANCEL }).unwrap();
        let mut mem = [0u8; 4];
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(1, &mut cx(), &mut buf), Poll::Ready(Err(Error::Reset { id: 1, .. }))));
        assert!(matches!(st.poll_write(1, &mut cx(), b"x"), Poll::Ready(Err(Error::Reset { .. }))));
        st.drop_reader(1);
        st.drop_writer(1);
        assert_eq!(st.stream_count(), 0);
    }

    #[test]
    fn data_before_a_peer_reset_stays_readable() {
        let mut st = State::new(true);
        let id = st.begin_open(Headers::new(), false).unwrap();
        st.on_frame(Frame::SynReply { id, fin: false, headers: Headers::new() }).unwrap();
        st.on_frame(Frame::Data { id, fin: false, data: Bytes::from_static(b"bye") }).unwrap();
        st.on_frame(Frame::RstStream { id, status: RstStatus::CANCEL }).unwrap();
        assert!(matches!(st.poll_reply(id, &mut cx()), Poll::Ready(Ok(_))));
        let mut mem = [0u8; 8];
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(id, &mut cx(), &mut buf), Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"bye");
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(id, &mut cx(), &mut buf), Poll::Ready(Err(Error::Reset { .. }))));
    }

    #[test]
    fn peer_pings_are_echoed_ours_complete() {
        let mut st = State::new(false);
        st.on_frame(Frame::Ping { id: 1 }).unwrap();
        let id = st.begin_ping().unwrap();
        assert_eq!(id % 2, 0);
        let frames = work(&mut st);
        assert_eq!(frames, vec![Frame::Ping { id: 1 }, Frame::Ping { id }]);
        assert!(st.poll_ping(id, &mut cx()).is_pending());
        st.on_frame(Frame::Ping { id }).unwrap();
        assert!(matches!(st.poll_ping(id, &mut cx()), Poll::Ready(Ok(()))));
    }

    #[test]
    fn refuses_when_nobody_accepts() {
        let mut st = State::new(false);
        st.close_incoming();
        st.on_frame(syn(1, false)).unwrap();
        assert_eq!(work(&mut st), vec![Frame::RstStream { id: 1, status: RstStatus::REFUSED_STREAM }]);
        assert_eq!(st.stream_count(), 0);
    }

    #[test]
    fn goaway_refuses_unseen_streams() {
        let mut st = State::new(true);
        let a = st.begin_open(Headers::new(), false).unwrap();
        let b = st.begin_open(Headers::new(), false).unwrap();
        st.on_frame(Frame::GoAway { last_good: a, status: 0 }).unwrap();
        assert!(st.poll_reply(a, &mut cx()).is_pending());
        assert!(matches!(st.poll_reply(b, &mut cx()), Poll::Ready(Err(Error::Reset { .. }))));
        assert!(matches!(st.begin_open(Headers::new(), false), Err(Error::GoneAway)));
        assert!(matches!(st.poll_accept(&mut cx()), Poll::Ready(None)));
    }
}
