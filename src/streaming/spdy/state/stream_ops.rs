//! Per-stream operations of the user handles: read, write, finish, reset.

use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::ReadBuf;

use super::*;

impl State {
    fn missing(&self) -> Error {
        self.end_error().unwrap_or(Error::SessionClosed)
    }

    pub(crate) fn poll_read(
        &mut self,
        id: u32,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<Result<(), Error>> {
        let end = self.end_error();
        let Some(s) = self.streams.get_mut(&id) else { return Poll::Ready(Err(self.missing())) };
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut copied = 0;
        while buf.remaining() > 0 {
            let Some(front) = s.recv.front_mut() else { break };
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                s.recv.pop_front();
            }
            copied += n;
        }
        if copied > 0 {
            s.recv_len -= copied;
            if s.recv_len < RECV_BUFFER_LIMIT {
                wake(&mut self.reader_waker);
            }
            self.consumed(id, copied);
            return Poll::Ready(Ok(()));
        }
        if let Some(reset) = s.reset {
            return Poll::Ready(Err(reset.error(id)));
        }
        if s.recv_fin {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = end {
            return Poll::Ready(Err(e));
        }
        s.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(crate) fn poll_write(&mut self, id: u32, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, Error>> {
        let end = self.end_error();
        let closing = self.closing;
        let Some(s) = self.streams.get_mut(&id) else { return Poll::Ready(Err(self.missing())) };
        if let Some(reset) = s.reset {
            return Poll::Ready(Err(reset.error(id)));
        }
        if s.fin_queued {
            return Poll::Ready(Err(Error::StreamClosed { id }));
        }
        if let Some(e) = end {
            return Poll::Ready(Err(e));
        }
        if closing {
            return Poll::Ready(Err(Error::SessionClosed));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if s.send.len() >= SEND_BUFFER_LIMIT {
            s.send_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(SEND_BUFFER_LIMIT - s.send.len());
        s.send.extend_from_slice(&buf[..n]);
        self.schedule(id);
        Poll::Ready(Ok(n))
    }

    /// Ready once everything written so far has been handed to the writer
    /// task, which writes in order; there is no acknowledgement to wait for.
    pub(crate) fn poll_flush(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let end = self.end_error();
        let Some(s) = self.streams.get_mut(&id) else { return Poll::Ready(Err(self.missing())) };
        if let Some(reset) = s.reset {
            return Poll::Ready(Err(reset.error(id)));
        }
        match end {
            Some(e) if s.send_lost => Poll::Ready(Err(e)),
            _ if s.send.is_empty() => Poll::Ready(Ok(())),
            Some(e) => Poll::Ready(Err(e)),
            None => {
                s.send_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    pub(crate) fn poll_shutdown(&mut self, id: u32, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let end = self.end_error();
        let Some(s) = self.streams.get_mut(&id) else { return Poll::Ready(Err(self.missing())) };
        if let Some(reset) = s.reset {
            return Poll::Ready(Err(reset.error(id)));
        }
        if s.fin_sent {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = end {
            return Poll::Ready(Err(e));
        }
        s.send_waker = Some(cx.waker().clone());
        if !s.fin_queued {
            s.fin_queued = true;
            self.schedule(id);
        }
        Poll::Pending
    }

    /// The application resets the stream.
    pub(crate) fn reset_local(&mut self, id: u32, status: RstStatus) {
        self.reset_stream(id, Reset::Local, Some(status));
    }

    /// The read half is gone: later data is discarded (still returned to the
    /// peer's window so that a flow-controlled peer is not stalled by it).
    pub(crate) fn drop_reader(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.reader_gone = true;
        s.recv_waker = None;
        let discarded = s.recv_len;
        s.recv.clear();
        s.recv_len = 0;
        if discarded > 0 {
            wake(&mut self.reader_waker);
            self.consumed(id, discarded);
        }
        self.maybe_remove(id);
    }

    /// The write half is gone: finish the stream as `shutdown()` would. The
    /// data already queued is sent first; `reset()` is the way to abort.
    pub(crate) fn drop_writer(&mut self, id: u32) {
        let live = self.end.is_none();
        let Some(s) = self.streams.get_mut(&id) else { return };
        s.writer_gone = true;
        s.send_waker = None;
        if !s.fin_queued && s.reset.is_none() && live {
            s.fin_queued = true;
            self.schedule(id);
        }
        self.maybe_remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn flush_reports_data_lost_to_the_end_of_the_session() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        let _ = st.poll_write(1, &mut cx(), b"never sent");
        st.terminate(End::PeerClosed);
        assert!(matches!(st.poll_flush(1, &mut cx()), Poll::Ready(Err(Error::PeerClosed))));
        assert!(matches!(st.poll_shutdown(1, &mut cx()), Poll::Ready(Err(Error::PeerClosed))));
    }

    #[test]
    fn fin_gives_eof_after_data() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        st.on_frame(Frame::Data { id: 1, fin: true, data: Bytes::from_static(b"end") }).unwrap();
        let mut mem = [0u8; 16];
        let mut buf = ReadBuf::new(&mut mem);
        let _ = st.poll_read(1, &mut cx(), &mut buf);
        assert_eq!(buf.filled(), b"end");
        let mut buf = ReadBuf::new(&mut mem);
        assert!(matches!(st.poll_read(1, &mut cx(), &mut buf), Poll::Ready(Ok(()))));
        assert!(buf.filled().is_empty());
    }
}
