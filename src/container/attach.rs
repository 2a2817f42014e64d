//! The process side of `Attach`: a session on the container's monitor, whose
//! `attach.sock` carries the container's output to every attached client and
//! their input to its stdin (framing in `monitor`). Several sessions at once
//! are several connections; `stdin_once` is the monitor's business.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::record::{ContainerRecord, ContainerState};
use super::{ContainerError, ContainerService};
use crate::monitor::{ATTACH_SOCKET, STREAM_CLOSE_STDIN, STREAM_STDERR, STREAM_STDIN, STREAM_STDOUT, connect};

/// The largest output frame accepted from a monitor (it sends at most a pipe read).
const MAX_FRAME: usize = 1024 * 1024;

/// The streams a client asked for, as the CRI's Exec and Attach requests carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamChoice {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamChoice {
    /// The CRI's rules: one stream at least, and a tty merges stderr into stdout.
    pub fn validate(&self) -> Result<(), ContainerError> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err(ContainerError::invalid("stdin, stdout, stderr", "one of them must be true"));
        }
        if self.tty && self.stderr {
            return Err(ContainerError::invalid("tty, stderr", "a tty has no separate stderr: both cannot be true"));
        }
        Ok(())
    }
}

/// Output from an attached container.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

pub struct AttachOutput(OwnedReadHalf);

pub struct AttachInput(OwnedWriteHalf);

impl ContainerService {
    /// Checks an Attach request. Returns the container and whether the end of
    /// the client's stdin closes the container's: with `stdin_once` and no tty,
    /// as containerd does (the streams themselves are the request's, which is
    /// what the client opens).
    pub fn check_attach(&self, wanted: &str, choice: StreamChoice) -> Result<(ContainerRecord, bool), ContainerError> {
        choice.validate()?;
        let container = self.running(wanted, "only a running container can be attached to")?;
        let config = container.config();
        if choice.stdin && !config.stdin {
            return Err(ContainerError::invalid("stdin", "the container was created without stdin (config.stdin)"));
        }
        Ok((container, config.stdin_once && !config.tty))
    }

    /// Connects to the container's monitor; the session ends when the container does.
    pub async fn attach(&self, id: &str) -> Result<(AttachOutput, AttachInput), ContainerError> {
        let container = self.running(id, "only a running container can be attached to")?;
        let socket_dir = self.run_dir(&container.id);
        let stream = tokio::task::spawn_blocking(move || {
            let stream = connect(&socket_dir, ATTACH_SOCKET)?;
            stream.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(stream)
        })
        .await
        .map_err(|e| ContainerError::host("attach task", e))?
        .and_then(UnixStream::from_std)
        .map_err(|e| ContainerError::host(format!("attaching to container {}", container.id), e))?;
        let (read, write) = stream.into_split();
        Ok((AttachOutput(read), AttachInput(write)))
    }

    /// Resizes the terminal of a container created with `tty`.
    pub async fn resize_terminal(&self, id: &str, width: u16, height: u16) -> Result<(), ContainerError> {
        let container = self.running(id, "only a running container's terminal can be resized")?;
        self.tell_monitor(&container, &format!("resize {height} {width}")).await
    }

    /// The container `wanted` names, which must be running.
    pub(super) fn running(&self, wanted: &str, reason: &'static str) -> Result<ContainerRecord, ContainerError> {
        let container = self.current(self.find(wanted)?);
        if container.state != ContainerState::Running {
            return Err(ContainerError::WrongState { id: container.id, state: container.state.as_str(), reason });
        }
        Ok(container)
    }
}

impl AttachOutput {
    /// The next output frame; none once the monitor is gone (the container ended).
    pub async fn next(&mut self) -> std::io::Result<Option<Output>> {
        let mut header = [0u8; 5];
        match self.0.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if length > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "oversized attach frame"));
        }
        let mut payload = vec![0u8; length];
        self.0.read_exact(&mut payload).await?;
        match header[0] {
            STREAM_STDOUT => Ok(Some(Output::Stdout(payload))),
            STREAM_STDERR => Ok(Some(Output::Stderr(payload))),
            other => Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("attach stream {other}"))),
        }
    }
}

impl AttachInput {
    pub async fn stdin(&mut self, data: &[u8]) -> std::io::Result<()> {
        for chunk in data.chunks(MAX_FRAME) {
            self.frame(STREAM_STDIN, chunk).await?;
        }
        Ok(())
    }

    pub async fn close_stdin(&mut self) -> std::io::Result<()> {
        self.frame(STREAM_CLOSE_STDIN, &[]).await
    }

    async fn frame(&mut self, stream: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(5 + payload.len());
        frame.push(stream);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_choices_follow_the_cri() {
        let choice = |stdin, stdout, stderr, tty| StreamChoice { stdin, stdout, stderr, tty };
        assert!(choice(false, false, false, false).validate().is_err(), "no stream at all");
        assert!(choice(false, true, true, true).validate().is_err(), "tty with stderr");
        assert!(choice(true, true, false, true).validate().is_ok());
        assert!(choice(false, false, true, false).validate().is_ok());
    }
}
