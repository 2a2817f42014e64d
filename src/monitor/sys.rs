//! The monitor's small system-call helpers over nix: pipes, flags, poll(2),
//! TIOCSWINSZ (which nix has no safe call for), and receiving an fd over SCM_RIGHTS.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::libc;
use nix::poll::{PollFd, PollTimeout};

/// A pipe whose both ends are close-on-exec; the end given to a child is made
/// inheritable by `Command` (it dup2s it onto 0, 1 or 2).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Whether `fd` is an open descriptor of this process.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(())
}

/// The sync pipe, which berth hands the monitor as its stdout: moved to an fd
/// of its own, close-on-exec (the runtime and the container must not hold it:
/// berth waits for its end), with /dev/null put on stdout in its place.
pub fn take_sync_pipe() -> Result<std::fs::File, String> {
    let stdout = std::io::stdout();
    let is_pipe = nix::sys::stat::fstat(stdout.as_raw_fd()).is_ok_and(|stat| {
        nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode & nix::libc::S_IFMT) == nix::sys::stat::SFlag::S_IFIFO
    });
    if !is_pipe {
        return Err("stdout is not berth's sync pipe: the monitor is started by berth".into());
    }
    let sync = stdout.as_fd().try_clone_to_owned().map_err(|e| format!("sync pipe: {e}"))?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    nix::unistd::dup2(null.as_raw_fd(), stdout.as_raw_fd()).map_err(|e| format!("stdout: {e}"))?;
    Ok(std::fs::File::from(sync))
}

/// Waits up to `timeout` for the events asked in `fds`. An interrupted wait
/// reports no event rather than an error: the caller loops.
pub fn poll(fds: &mut [PollFd<'_>], timeout: impl Into<PollTimeout>) -> io::Result<usize> {
    match nix::poll::poll(fds, timeout) {
        Ok(ready) => Ok(usize::try_from(ready).unwrap_or(0)),
        Err(nix::errno::Errno::EINTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// A poll timeout of `duration`, at most what poll(2) can wait.
pub fn poll_timeout(duration: std::time::Duration) -> PollTimeout {
    PollTimeout::try_from(duration).unwrap_or(PollTimeout::MAX)
}

/// Sets a terminal's window size (the container sees SIGWINCH).
pub fn set_window_size(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points at a
    // live local for the duration of the call; `fd` is open (borrowed).
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size as *const libc::winsize) };
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Receives one message on a unix socket and the first fd passed with it
/// (SCM_RIGHTS): how runc hands over a container's pty master.
pub fn receive_fd(socket: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut data = [0u8; 256];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    // Room for one control message carrying a few fds.
    let mut control = nix::cmsg_space!([RawFd; 8]);
    let message = recvmsg::<()>(socket.as_raw_fd(), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut passed = Vec::new();
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            // SAFETY: the kernel just installed these fds in this process for this
            // message; nothing else owns them.
            passed.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    // Dropping the rest closes them: a runtime passes one.
    passed.into_iter().next().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no fd was passed"))
}

/// Lets go of the file pages this process has mapped but no longer needs: the
/// start-up code of the (large) berth binary and of libc, faulted in with the
/// kernel's fault-around. They stay in the page cache, shared with berth; only
/// this process's resident set shrinks, and the poll loop faults back the little
/// it runs. Only mappings that hold nothing of their own are dropped: read-only,
/// file-backed, and without anonymous (copy-on-write) pages, such as relocated
/// data, which would be lost.
pub fn release_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(range) = mapping_range(line) {
            candidate = range;
        } else if let Some(kib) = line.strip_prefix("Anonymous:") {
            let own_pages = kib.trim().trim_end_matches("kB").trim() != "0";
            if let (Some((start, end)), false) = (candidate.take(), own_pages) {
                // SAFETY: [start, end) is one whole mapping of this process that is
                // read-only, backed by a file, and has no private pages: dropping
                // its pages loses nothing, later accesses refault them from the file.
                unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
            }
        }
    }
}

/// For a mapping's header line of smaps (`start-end perms offset dev inode path`):
/// `Some(Some(range))` if it may be released, `Some(None)` if not, `None` for
/// the other lines.
fn mapping_range(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let inode = fields.nth(2)?;
    let releasable = perms.starts_with('r') && perms.as_bytes().get(1) == Some(&b'-') && inode != "0";
    Some(releasable.then_some((start, end)))
}

/// Appends whatever a non-blocking socket has to `into`; false once the peer
/// has closed or the socket failed (the caller then drops the client).
pub fn read_available(stream: &mut impl io::Read, into: &mut Vec<u8>) -> bool {
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return false,
            Ok(n) => into.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
