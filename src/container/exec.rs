//! The process side of the streaming `Exec`: a command run in a running
//! container with its stdio handed to a client session, with or without a tty.

use std::os::fd::OwnedFd;
use std::process::Stdio;


use super::attach::StreamChoice;
use super::pty::{self, PtyMaster};
use super::record::ContainerRecord;
use super::{ContainerError, ContainerService};
use crate::runtime::{ExecInput, ExecIo, ExecOutput, ExecProcess};

/// The exec'd process's ends, as the session reads and writes them.
pub enum ExecStreams {
    /// stdout and stderr apart; stdin closed by dropping it.
    Pipes { stdin: Option<ExecInput>, stdout: Option<ExecOutput>, stderr: Option<ExecOutput> },
    /// One terminal: input, and output with stderr merged in.
    Terminal(PtyMaster),
}

pub struct ExecSession {
    handle: Box<dyn ExecProcess>,
    streams: Option<ExecStreams>,
}

impl ContainerService {
    /// Checks an Exec request before its URL is handed out.
    pub fn check_exec(
        &self,
        wanted: &str,
        cmd: &[String],
        choice: StreamChoice,
    ) -> Result<ContainerRecord, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::invalid("cmd", "must not be empty"));
        }
        choice.validate()?;
        self.running(wanted, "commands run only in a running container")
    }

    /// Starts `cmd` in container `id`. Dropping the session kills the process.
    pub async fn exec_streaming(
        &self,
        id: &str,
        cmd: Vec<String>,
        choice: StreamChoice,
    ) -> Result<ExecSession, ContainerError> {
        let container = self.running(id, "commands run only in a running container")?;
        let process = self.exec_process(&container, cmd, choice.tty)?;
        let runtime = self.runtime_for(&container)?;
        let host = |e| ContainerError::host(format!("exec in container {}", container.id), e);
        if choice.tty {
            let pty = pty::open(0, 0).map_err(host)?;
            let stdio = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(host);
            let io = ExecIo {
                stdin: stdio(&pty.slave)?,
                stdout: stdio(&pty.slave)?,
                stderr: stdio(&pty.slave)?,
                console_socket: None,
                controlling_terminal: true,
            };
            let handle = runtime.exec(&container.id, &process, io).await?;
            // Only the runtime may hold the slave now: the master reads EOF when it goes.
            drop(pty.slave);
            return Ok(ExecSession { handle, streams: Some(ExecStreams::Terminal(pty.master)) });
        }
        let piped = |wanted: bool| if wanted { Stdio::piped() } else { Stdio::null() };
        let io = ExecIo {
            stdin: piped(choice.stdin),
            stdout: piped(choice.stdout),
            stderr: piped(choice.stderr),
            ..ExecIo::null()
        };
        let mut handle = runtime.exec(&container.id, &process, io).await?;
        let streams = ExecStreams::Pipes { stdin: handle.stdin(), stdout: handle.stdout(), stderr: handle.stderr() };
        Ok(ExecSession { handle, streams: Some(streams) })
    }
}

impl ExecSession {
    /// The process's ends, once.
    pub fn take_streams(&mut self) -> Option<ExecStreams> {
        self.streams.take()
    }

    /// Waits for the process; its exit code (128 + N for signal N).
    pub async fn wait(&mut self) -> Result<i32, ContainerError> {
        Ok(self.handle.wait().await?)
    }

    /// Kills the process (a client that went away), and reaps the runtime.
    pub async fn kill(&mut self) {
        self.handle.kill().await;
    }
}
