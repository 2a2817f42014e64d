//! Session-wide operations of the user handles: accept, open, ping.

use std::task::{Context, Poll};

use super::*;

impl State {
    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        while let Some(id) = self.incoming.pop_front() {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            if s.reset.is_some() {
                s.reader_gone = true;
                s.writer_gone = true;
                self.maybe_remove(id);
                continue;
            }
            // Reply before handing the stream out: spdystream drops DATA on
            // a stream it opened until it has seen our SYN_REPLY, and the
            // writer always sends a stream's SYN_REPLY before its data.
            s.out_syn = Some(OutSyn::Reply);
            let accepted =
                Accepted { id, headers: s.syn_headers.take().unwrap_or_default(), associated_to: s.associated_to };
            self.schedule(id);
            return Poll::Ready(Some(accepted));
        }
        if self.closing || self.goaway_sent || self.goaway_received {
            return Poll::Ready(None);
        }
        self.accept_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The `Incoming` handle is gone: nobody will accept queued streams.
    pub(crate) fn close_incoming(&mut self) {
        self.incoming_open = false;
        let pending: Vec<u32> = self.incoming.drain(..).collect();
        for id in pending {
            self.reset_stream(id, Reset::Local, Some(RstStatus::REFUSED_STREAM));
            if let Some(s) = self.streams.get_mut(&id) {
                s.reader_gone = true;
                s.writer_gone = true;
            }
            self.maybe_remove(id);
        }
    }

    pub(crate) fn begin_open(&mut self, headers: Headers, fin: bool) -> Result<u32, Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        if self.closing || self.goaway_sent {
            return Err(Error::SessionClosed);
        }
        if self.goaway_received {
            return Err(Error::GoneAway);
        }
        let id = self.next_stream_id;
        if id > MAX_STREAM_ID {
            return Err(Error::StreamIdsExhausted);
        }
        self.next_stream_id = id + 2;
        let mut s = StreamState::new(Reply::Waiting(None));
        s.out_syn = Some(OutSyn::Stream { headers, fin });
        s.fin_queued = fin;
        self.streams.insert(id, s);
        self.schedule(id);
        Ok(id)
    }

    pub(crate) fn poll_reply(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<Headers, Error>> {
        let end = self.end_error();
        let Some(s) = self.streams.get_mut(&id) else {
            return Poll::Ready(Err(end.unwrap_or(Error::SessionClosed)));
        };
        // A reply that arrived counts even if a reset followed it: the stream
        // was accepted, and its handle reports the reset after any data.
        match &mut s.reply {
            Reply::Got(h) => Poll::Ready(Ok(h.clone())),
            Reply::NotExpected => Poll::Ready(Ok(Headers::new())),
            Reply::Waiting(_) if s.reset.is_some() => {
                Poll::Ready(Err(s.reset.map_or(Error::SessionClosed, |r| r.error(id))))
            }
            Reply::Waiting(w) => match end {
                Some(e) => Poll::Ready(Err(e)),
                None => {
                    *w = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }

    /// An `open()` that did not complete: cancel the stream.
    pub(crate) fn abandon_open(&mut self, id: u32) {
        self.reset_stream(id, Reset::Local, Some(RstStatus::CANCEL));
        if let Some(s) = self.streams.get_mut(&id) {
            s.reader_gone = true;
            s.writer_gone = true;
        }
        self.maybe_remove(id);
    }

    pub(crate) fn begin_ping(&mut self) -> Result<u32, Error> {
        if let Some(e) = self.end_error() {
            return Err(e);
        }
        let id = self.next_ping_id;
        self.next_ping_id = match id.wrapping_add(2) {
            next if next > MAX_STREAM_ID => {
                if self.client {
                    1
                } else {
                    2
                }
            }
            next => next,
        };
        self.pings.insert(id, PingState { done: false, waker: None });
        self.control.push_back(Frame::Ping { id });
        self.wake_writer();
        Ok(id)
    }

    pub(crate) fn poll_ping(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let end = self.end_error();
        let Some(p) = self.pings.get_mut(&id) else {
            return Poll::Ready(Err(end.unwrap_or(Error::SessionClosed)));
        };
        if p.done {
            self.pings.remove(&id);
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = end {
            self.pings.remove(&id);
            return Poll::Ready(Err(e));
        }
        p.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn cancel_ping(&mut self, id: u32) {
        self.pings.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn refused_open_fails() {
        let mut st = State::new(true);
        let id = st.begin_open(Headers::new(), false).unwrap();
        st.on_frame(Frame::RstStream { id, status: RstStatus::REFUSED_STREAM }).unwrap();
        assert!(matches!(
            st.poll_reply(id, &mut cx()),
            Poll::Ready(Err(Error::Reset { status: RstStatus::REFUSED_STREAM, .. }))
        ));
        st.abandon_open(id);
        assert_eq!(st.stream_count(), 0);
    }
}
