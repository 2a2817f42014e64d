//! `berth logs [-f]`: the container's CRI log file, read where
//! ContainerStatus says it is, its parts joined into lines.

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cri::v1::{ContainerState, ContainerStatusRequest};

use super::connect::{Connection, Cri};
use super::cri_log::{Entry, Joiner, Stream};
use super::error::ClientError;
use super::resolve;

/// How often `-f` looks for more, and whether the container is still running.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container by ID or unique prefix
    pub container: String,
    /// Go on printing what the container writes, until it exits
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Start each line with its timestamp
    #[arg(short = 't', long)]
    pub timestamps: bool,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn logs(args: LogsArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let id = resolve::container(&cri, &args.container).await?;
    let (path, _) = status(&cri, &id).await?;
    if path.as_os_str().is_empty() {
        return Err(ClientError::Usage(format!("container {id} has no log file (it was created without one)")));
    }
    let mut log = LogFile::open(path).await?;
    let mut printer = Printer { timestamps: args.timestamps, stdout: tokio::io::stdout(), stderr: tokio::io::stderr() };
    let mut entries = log.read_entries().await?;
    if let Some(tail) = args.tail {
        let skip = entries.len().saturating_sub(tail);
        entries.drain(..skip);
    }
    printer.print(entries).await?;
    if !args.follow {
        return Ok(());
    }
    loop {
        let entries = log.read_entries().await?;
        if !entries.is_empty() {
            printer.print(entries).await?;
            continue;
        }
        let (_, state) = status(&cri, &id).await?;
        if !matches!(state, ContainerState::ContainerRunning | ContainerState::ContainerCreated) {
            // What it wrote before it exited may have come after our last read.
            return printer.print(log.read_entries().await?).await;
        }
        log.reopen_if_rotated().await?;
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

async fn status(cri: &Cri, id: &str) -> Result<(PathBuf, ContainerState), ClientError> {
    let request = ContainerStatusRequest { container_id: id.to_string(), verbose: false };
    let status = cri.call("ContainerStatus", cri.runtime().container_status(request)).await?.status.unwrap_or_default();
    let state = status.state();
    Ok((PathBuf::from(status.log_path), state))
}

/// The log file as far as it was read, with the part of a record not yet
/// ended by its newline.
struct LogFile {
    path: PathBuf,
    file: tokio::fs::File,
    inode: u64,
    unended: Vec<u8>,
    joiner: Joiner,
}

impl LogFile {
    async fn open(path: PathBuf) -> Result<LogFile, ClientError> {
        let file = tokio::fs::File::open(&path).await.map_err(|e| ClientError::io(path.display().to_string(), e))?;
        let inode = file.metadata().await.map_err(|e| ClientError::io(path.display().to_string(), e))?.ino();
        Ok(LogFile { path, file, inode, unended: Vec::new(), joiner: Joiner::default() })
    }

    /// The whole lines written since the last read.
    async fn read_entries(&mut self) -> Result<VecDeque<Entry>, ClientError> {
        let mut entries = VecDeque::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let n =
                self.file.read(&mut chunk).await.map_err(|e| ClientError::io(self.path.display().to_string(), e))?;
            if n == 0 {
                return Ok(entries);
            }
            self.unended.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(end) = self.unended[start..].iter().position(|&b| b == b'\n') {
                entries.extend(self.joiner.push(&self.unended[start..start + end]));
                start += end + 1;
            }
            self.unended.drain(..start);
        }
    }

    /// kubelet rotates a log by renaming it and having the runtime reopen the
    /// path: once this file is read to its end, the new one is read from its start.
    async fn reopen_if_rotated(&mut self) -> Result<(), ClientError> {
        match tokio::fs::metadata(&self.path).await {
            Ok(metadata) if metadata.ino() != self.inode => {
                let reopened = LogFile::open(self.path.clone()).await?;
                self.file = reopened.file;
                self.inode = reopened.inode;
                Ok(())
            }
            // Between the rename and the reopen there is no file at the path.
            _ => Ok(()),
        }
    }
}

struct Printer {
    timestamps: bool,
    stdout: tokio::io::Stdout,
    stderr: tokio::io::Stderr,
}

impl Printer {
    async fn print(&mut self, entries: VecDeque<Entry>) -> Result<(), ClientError> {
        let timestamps = self.timestamps;
        for entry in entries {
            let target: &mut (dyn tokio::io::AsyncWrite + Unpin + Send) = match entry.stream {
                Stream::Stdout => &mut self.stdout,
                Stream::Stderr => &mut self.stderr,
            };
            let written = async {
                if timestamps && !entry.timestamp.is_empty() {
                    target.write_all(format!("{} ", entry.timestamp).as_bytes()).await?;
                }
                target.write_all(&entry.content).await?;
                target.flush().await
            };
            match written.await {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other.map_err(|e| ClientError::io("writing the log", e))?,
            }
        }
        Ok(())
    }
}
