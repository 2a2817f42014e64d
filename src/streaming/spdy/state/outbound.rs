//! Choosing what the writer task sends next.

use std::task::{Context, Poll};

use bytes::Bytes;

use super::*;

/// The delta field has 31 bits.
const MAX_WINDOW_DELTA: u32 = 0x7fff_ffff;

impl State {
    /// Hands the writer its next batch, or registers it to wait for one.
    pub(crate) fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<Work> {
        let work = self.take_work();
        if work.frames.is_empty() && !work.last {
            self.writer_waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(work)
    }

    /// Resolves once the session has ended, so an in-flight write can stop.
    pub(crate) fn poll_writer_end(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.end.is_some() {
            return Poll::Ready(());
        }
        self.writer_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn take_work(&mut self) -> Work {
        let mut work = Work { frames: self.control.drain(..).collect(), ..Work::default() };
        if self.end.is_some() {
            work.last = true;
            return work;
        }
        while let Some(id) = self.window_dirty.pop_front() {
            if let Some(s) = self.streams.get_mut(&id) {
                s.window_queued = false;
                if s.recv_unacked > 0 && s.reset.is_none() && !s.recv_fin {
                    work.frames.push(Frame::WindowUpdate { id, delta: s.recv_unacked.min(MAX_WINDOW_DELTA) });
                    s.recv_unacked = 0;
                }
            }
        }
        if self.session_unacked >= WINDOW_UPDATE_THRESHOLD {
            work.frames.push(Frame::WindowUpdate { id: 0, delta: self.session_unacked.min(MAX_WINDOW_DELTA) });
            self.session_unacked = 0;
        }

        // Round-robin over streams with something to send, one chunk per
        // turn, so one busy stream cannot starve the others.
        let mut budget = WRITE_BATCH;
        while budget > 0 {
            let Some(id) = self.ready.pop_front() else { break };
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.scheduled = false;
            if s.reset.is_some() {
                continue;
            }
            match s.out_syn.take() {
                Some(OutSyn::Stream { headers, fin }) => {
                    work.frames.push(Frame::SynStream {
                        id,
                        associated_to: 0,
                        priority: 0,
                        fin,
                        unidirectional: false,
                        headers,
                    });
                    if fin {
                        s.fin_sent = true;
                    }
                }
                Some(OutSyn::Reply) => {
                    work.frames.push(Frame::SynReply { id, fin: false, headers: Headers::new() });
                }
                None => {}
            }
            let mut progressed = false;
            if !s.send.is_empty() {
                let n = s.send.len().min(DATA_CHUNK);
                let data = s.send.split_to(n).freeze();
                let fin = s.fin_queued && !s.fin_sent && s.send.is_empty();
                s.fin_sent |= fin;
                work.frames.push(Frame::Data { id, fin, data });
                budget = budget.saturating_sub(n + 8);
                progressed = true;
            } else if s.fin_queued && !s.fin_sent {
                work.frames.push(Frame::Data { id, fin: true, data: Bytes::new() });
                s.fin_sent = true;
                progressed = true;
            }
            if progressed {
                wake(&mut s.send_waker);
            }
            if s.has_send_work() {
                s.scheduled = true;
                self.ready.push_back(id);
            }
            self.maybe_remove(id);
        }

        if work.frames.is_empty() && self.closing && self.ready.is_empty() && !self.goaway_sent {
            self.goaway_sent = true;
            work.frames.push(Frame::GoAway { last_good: self.last_accepted, status: GOAWAY_OK });
            work.last = true;
            work.closes = true;
        }
        work
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use tokio::io::ReadBuf;

    #[test]
    fn reply_precedes_data() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let a = accept(&mut st);
        assert_eq!(a.headers.get("streamtype"), Some("stdin"));
        assert!(matches!(st.poll_write(1, &mut cx(), b"hi"), Poll::Ready(Ok(2))));
        let frames = work(&mut st);
        assert!(matches!(&frames[0], Frame::SynReply { id: 1, .. }));
        assert!(matches!(&frames[1], Frame::Data { id: 1, fin: false, data } if &data[..] == b"hi"));
    }

    #[test]
    fn large_writes_are_chunked_and_bounded() {
        let mut st = State::new(true);
        let id = st.begin_open(Headers::new(), false).unwrap();
        let big = vec![7u8; SEND_BUFFER_LIMIT * 2];
        let Poll::Ready(Ok(n)) = st.poll_write(id, &mut cx(), &big) else { panic!() };
        assert_eq!(n, SEND_BUFFER_LIMIT);
        assert!(st.poll_write(id, &mut cx(), &big).is_pending());
        let frames = work(&mut st);
        assert!(matches!(frames[0], Frame::SynStream { .. }));
        for f in &frames[1..] {
            let Frame::Data { data, .. } = f else { panic!("{f:?}") };
            assert!(data.len() <= DATA_CHUNK);
        }
        assert!(matches!(st.poll_write(id, &mut cx(), &big), Poll::Ready(Ok(_))));
    }

    #[test]
    fn streams_interleave() {
        let mut st = State::new(true);
        let a = st.begin_open(Headers::new(), false).unwrap();
        let b = st.begin_open(Headers::new(), false).unwrap();
        let _ = work(&mut st);
        let chunk = vec![0u8; DATA_CHUNK * 3];
        let _ = st.poll_write(a, &mut cx(), &chunk);
        let _ = st.poll_write(b, &mut cx(), &chunk);
        let ids: Vec<u32> = work(&mut st)
            .iter()
            .filter_map(|f| match f {
                Frame::Data { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [a, b, a, b, a, b]);
    }

    #[test]
    fn consumption_is_returned_in_window_updates() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        let _ = work(&mut st);
        st.on_frame(Frame::Data { id: 1, fin: false, data: Bytes::from(vec![1u8; 40_000]) }).unwrap();
        assert!(work(&mut st).is_empty(), "nothing consumed yet");
        let mut mem = vec![0u8; 40_000];
        let mut buf = ReadBuf::new(&mut mem);
        let _ = st.poll_read(1, &mut cx(), &mut buf);
        let frames = work(&mut st);
        assert!(frames.contains(&Frame::WindowUpdate { id: 1, delta: 40_000 }), "{frames:?}");
        assert!(frames.contains(&Frame::WindowUpdate { id: 0, delta: 40_000 }), "{frames:?}");
    }

    #[test]
    fn graceful_close_flushes_then_goes_away() {
        let mut st = State::new(false);
        st.on_frame(syn(1, false)).unwrap();
        let _ = accept(&mut st);
        let _ = st.poll_write(1, &mut cx(), b"last words");
        st.begin_close();
        assert!(matches!(st.poll_write(1, &mut cx(), b"more"), Poll::Ready(Err(Error::SessionClosed))));
        let first = work(&mut st);
        assert!(first.iter().any(|f| matches!(f, Frame::Data { .. })));
        assert!(!first.iter().any(|f| matches!(f, Frame::GoAway { .. })));
        let Poll::Ready(w) = st.poll_work(&mut cx()) else { panic!() };
        assert_eq!(w.frames, vec![Frame::GoAway { last_good: 1, status: GOAWAY_OK }]);
        assert!(w.last && w.closes);
    }

    #[test]
    fn finished_streams_are_forgotten() {
        let mut st = State::new(false);
        st.on_frame(syn(1, true)).unwrap();
        let _ = accept(&mut st);
        st.drop_reader(1);
        st.drop_writer(1);
        assert_eq!(st.stream_count(), 1, "FIN not sent yet");
        let frames = work(&mut st);
        assert!(frames.contains(&Frame::Data { id: 1, fin: true, data: Bytes::new() }));
        assert_eq!(st.stream_count(), 0);
    }
}
