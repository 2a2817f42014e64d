//! `--console-socket`: runc creates the container's pty and sends the master over a
//! unix socket the monitor listens on.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::sys;

pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        Ok(ConsoleSocket { path: path.to_path_buf(), listener: UnixListener::bind(path)? })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master runc sent. Called after `create` returned: runc connected and sent
    /// it before exiting, and the connection and message wait queued in the socket.
    pub fn receive_master(&self) -> io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let (connection, _) = self.listener.accept()?;
        connection.set_nonblocking(false)?;
        sys::receive_fd(connection.as_fd())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
