//! The few system calls nix does not give berth with its enabled features (`poll`,
//! `term`, `uio` are off): poll(2), TIOCSWINSZ, and receiving an fd over SCM_RIGHTS.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::libc;

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
pub fn is_open(fd: RawFd) -> bool {
    fcntl(fd, FcntlArg::F_GETFD).is_ok()
}

pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    Ok(())
}

/// Waits up to `timeout_ms` (-1: forever) for the events asked in `fds`. An
/// interrupted wait reports no event rather than an error: the caller loops.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole
    // call, and its length is passed alongside it.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return if error.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(error) };
    }
    Ok(ready as usize)
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
    let mut data = [0u8; 256];
    let mut iov = libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
    // Room for one control message carrying a few fds; u64 keeps it aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is a plain C struct for which all-zero is a valid value.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: every pointer in `message` points at a live local buffer of the length
    // it declares; the kernel writes within those lengths only.
    let received = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    first_passed_fd(&message).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no fd was passed"))
}

/// The first fd of the SCM_RIGHTS messages in `message`; any others are closed.
fn first_passed_fd(message: &libc::msghdr) -> Option<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `message` was filled by recvmsg; the CMSG_* macros walk its control
    // buffer within `msg_controllen` and return null at its end.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(message) };
    while !header.is_null() {
        // SAFETY: `header` is non-null and points inside the control buffer (above).
        let cmsg = unsafe { &*header };
        if cmsg.cmsg_level == libc::SOL_SOCKET && cmsg.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: CMSG_LEN(0) is a pure computation of the header's size.
            let payload = cmsg.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: an SCM_RIGHTS payload is `payload` bytes of c_int fds, starting
            // at CMSG_DATA; read unaligned as the buffer gives no alignment promise.
            let data = unsafe { libc::CMSG_DATA(header) }.cast::<libc::c_int>();
            for i in 0..payload / std::mem::size_of::<libc::c_int>() {
                // SAFETY: `i` stays within the payload (above); each fd was just
                // installed in this process by the kernel and nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR: bounded by the message's control length.
        header = unsafe { libc::CMSG_NXTHDR(message, header) };
    }
    // Dropping the rest closes them: a runtime passes one.
    fds.into_iter().next()
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
