//! A pseudo-terminal for a streaming exec with a tty. berth holds the master;
//! the runtime gets the slave as its stdio and controlling terminal
//! (`ExecIo::controlling_terminal`), puts it in raw mode and relays it to the
//! pty it makes inside the container. A resize here makes the kernel send the
//! runtime SIGWINCH, and the runtime resizes the container's pty to match.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use nix::libc;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::monitor::sys::{set_nonblocking, set_window_size};

pub struct Pty {
    pub master: PtyMaster,
    pub slave: OwnedFd,
}

/// The master side, readable and writable without blocking a worker. Clones
/// share the descriptor: one reads, one writes, one resizes.
#[derive(Clone)]
pub struct PtyMaster {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// Opens a pty pair of `width` x `height` (0 x 0: the kernel's default).
pub fn open(width: u16, height: u16) -> io::Result<Pty> {
    let size = nix::pty::Winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    let pair = nix::pty::openpty(Some(&size), None).map_err(io::Error::from)?;
    set_nonblocking(pair.master.as_fd())?;
    crate::monitor::sys::set_cloexec(pair.master.as_raw_fd())?;
    crate::monitor::sys::set_cloexec(pair.slave.as_raw_fd())?;
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until
    // the AsyncFd is dropped.
    let master = unsafe { AsyncFd::register(pair.master) }.map_err(|e| e.into_parts().1)?;
    Ok(Pty { master: PtyMaster { fd: Arc::new(master) }, slave: pair.slave })
}

impl PtyMaster {
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        set_window_size(self.fd.get_ref().as_fd(), height, width)
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.as_raw_fd(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Linux answers EIO once every slave descriptor is closed: the end.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
