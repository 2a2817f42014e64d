//! Attach clients on `attach.sock`. Output goes to every client as frames
//! (`[stream id][u32 BE length][payload]`); a client sends stdin frames and a
//! close-stdin frame back.
//!
//! Writes never block: a client that does not keep up loses output frames (the
//! log file has everything) instead of stalling the monitor, and with it the
//! container, whose writes would block once its pipe filled.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

use super::{STREAM_CLOSE_STDIN, STREAM_STDIN};

const HEADER: usize = 5;
/// A client's frame may not claim more; one that does is broken and dropped.
const MAX_FRAME: usize = 1024 * 1024;

/// What a client asked of the container's stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Stdin(Vec<u8>),
    CloseStdin,
}

pub struct AttachClient {
    pub stream: UnixStream,
    /// The unsent rest of a frame a partial write cut: it must go out before any
    /// other frame, or the client would lose its place in the framing.
    unsent: Vec<u8>,
    received: Vec<u8>,
    pub closed: bool,
    /// Sent a stdin frame: its leaving counts for stdin_once.
    pub sent_stdin: bool,
}

impl AttachClient {
    pub fn new(stream: UnixStream) -> io::Result<AttachClient> {
        stream.set_nonblocking(true)?;
        Ok(AttachClient { stream, unsent: Vec::new(), received: Vec::new(), closed: false, sent_stdin: false })
    }

    pub fn wants_to_write(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Sends one output frame, or drops it if the client is still behind.
    pub fn send(&mut self, stream_id: u8, payload: &[u8]) {
        self.flush();
        if self.closed || !self.unsent.is_empty() {
            return;
        }
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.push(stream_id);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        self.unsent = frame;
        self.flush();
    }

    /// Writes what it can of the unsent frame without blocking.
    pub fn flush(&mut self) {
        while !self.unsent.is_empty() && !self.closed {
            // std ignores SIGPIPE in every Rust program: a gone client is an EPIPE here.
            match self.stream.write(&self.unsent) {
                Ok(0) => self.closed = true,
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
    }

    /// Reads what the client sent and returns its complete requests; marks the
    /// client closed at end of stream or on a malformed frame.
    pub fn receive(&mut self) -> Vec<Request> {
        if !super::sys::read_available(&mut self.stream, &mut self.received) {
            self.closed = true;
        }
        self.parse()
    }

    fn parse(&mut self) -> Vec<Request> {
        let mut requests = Vec::new();
        while let Some((stream_id, length)) = header(&self.received) {
            if length > MAX_FRAME || !matches!(stream_id, STREAM_STDIN | STREAM_CLOSE_STDIN) {
                self.closed = true;
                break;
            }
            if self.received.len() < HEADER + length {
                break;
            }
            let payload: Vec<u8> = self.received.drain(..HEADER + length).skip(HEADER).collect();
            requests.push(if stream_id == STREAM_STDIN { Request::Stdin(payload) } else { Request::CloseStdin });
        }
        requests
    }
}

fn header(bytes: &[u8]) -> Option<(u8, usize)> {
    let header: [u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    Some((header[0], u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize))
}
