//! The container's end of the monitor: its output streams (pipes, or the pty
//! master) and its stdin.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;

use super::log::{CriLog, LineSplitter, Stream};

/// One output stream of the container.
pub struct Output {
    pub file: File,
    pub stream: Stream,
    splitter: LineSplitter,
    pub open: bool,
}

/// The result of one read.
pub enum Read1 {
    Data(usize),
    /// Nothing now (EAGAIN).
    Idle,
    /// End of stream: the writers are gone (EOF; EIO on a pty whose slave closed).
    End,
}

impl Output {
    pub fn new(fd: OwnedFd, stream: Stream) -> Output {
        Output { file: File::from(fd), stream, splitter: LineSplitter::default(), open: true }
    }

    pub fn read(&mut self, buffer: &mut [u8]) -> Read1 {
        loop {
            match self.file.read(buffer) {
                Ok(0) => return Read1::End,
                Ok(n) => return Read1::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Read1::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Read1::End,
            }
        }
    }

    /// Logs `data` as it completes lines.
    pub fn log(&mut self, log: &mut CriLog, data: &[u8]) {
        let stream = self.stream;
        self.splitter.feed(data, |partial, content| log.write_entry(stream, partial, content));
    }

    /// End of stream: logs the unterminated rest, and stops polling this stream.
    pub fn finish(&mut self, log: &mut CriLog) {
        let stream = self.stream;
        self.splitter.finish(|partial, content| log.write_entry(stream, partial, content));
        self.open = false;
    }
}

/// Stdin bytes attach clients sent, written as the container reads them.
pub struct Stdin {
    file: Option<File>,
    pending: Vec<u8>,
    /// Close once `pending` is written.
    closing: bool,
}

/// Past this backlog, attach clients are not read from until the container reads.
pub const STDIN_BACKLOG: usize = 256 * 1024;

impl Stdin {
    pub fn new(fd: OwnedFd) -> Stdin {
        Stdin { file: Some(File::from(fd)), pending: Vec::new(), closing: false }
    }

    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    pub fn wants_to_write(&self) -> bool {
        self.file.is_some() && !self.pending.is_empty()
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.file.is_some() && !self.closing {
            self.pending.extend_from_slice(data);
            self.flush();
        }
    }

    /// Closes stdin after what was already sent. On a pty, stdin is the terminal:
    /// closing the master would end the output too, so end-of-file is the EOT
    /// character, as a user typing ^D.
    pub fn close(&mut self, pty: bool) {
        if pty && !self.closing {
            self.pending.push(0x04);
        }
        self.closing = true;
        self.flush();
    }

    /// Writes what the container takes without blocking; drops the stdin fd once
    /// closing and all is written, or when the container's end is gone.
    pub fn flush(&mut self) {
        let Some(file) = self.file.as_mut() else { return };
        while !self.pending.is_empty() {
            match file.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.pending.clear();
                    self.file = None;
                    return;
                }
            }
        }
        if self.closing {
            self.file = None;
        }
    }
}
