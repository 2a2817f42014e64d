//! Clients of `control.sock`: one command per line, one answer line per command.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;

/// A command line may not be longer; a client sending one is dropped.
const MAX_LINE: usize = 1024;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Reopen the log file at its path (kubelet rotated it).
    Reopen,
    Resize {
        rows: u16,
        cols: u16,
    },
}

pub fn parse(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["reopen"] => Ok(Command::Reopen),
        ["resize", rows, cols] => match (rows.parse(), cols.parse()) {
            (Ok(rows), Ok(cols)) => Ok(Command::Resize { rows, cols }),
            _ => Err(format!("bad size {rows} {cols}")),
        },
        _ => Err(format!("unknown command {line:?}")),
    }
}

pub struct ControlClient {
    stream: UnixStream,
    received: Vec<u8>,
    pub closed: bool,
}

impl ControlClient {
    pub fn new(stream: UnixStream) -> io::Result<ControlClient> {
        stream.set_nonblocking(true)?;
        Ok(ControlClient { stream, received: Vec::new(), closed: false })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// The complete lines the client sent since the last call.
    pub fn receive(&mut self) -> Vec<String> {
        if !super::sys::read_available(&mut self.stream, &mut self.received) {
            self.closed = true;
        }
        let mut lines = Vec::new();
        while let Some(end) = self.received.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.received.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line[..end]).trim().to_string());
        }
        if self.received.len() > MAX_LINE {
            self.closed = true;
        }
        lines
    }

    /// Answers; an answer that does not fit the socket buffer at once is lost with the
    /// client (a client that sends commands and never reads its answers).
    pub fn reply(&mut self, answer: &str) {
        if self.stream.write_all(format!("{answer}\n").as_bytes()).is_err() {
            self.closed = true;
        }
    }
}
