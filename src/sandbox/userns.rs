//! A pod's user namespace (kubelet's `hostUsers: false`), made together with
//! the network, IPC and UTS namespaces it owns, and pinned like them.
//!
//! The pod's namespaces must be owned by its user namespace: only then may
//! the pod's root mount sysfs, bind ports below 1024 or set its sysctls. So
//! they are made inside it, by one process: `unshare(CLONE_NEWUSER)` refuses a
//! multi-threaded caller, so berth forks a child that unshares the user
//! namespace, waits for berth to write its ID maps, unshares the others and
//! sets the hostname, then waits again while berth pins all four from
//! `/proc/<child>/ns/`. The child makes only system calls (no allocation, no
//! locks), as a child of a threaded process must.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, pipe2};

use super::error::SandboxError;
use crate::idmap::UserNamespaceMappings;

/// How long each step of the child may take: a few system calls.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the user namespace and `kinds` inside it, and bind-mounts each onto
/// `dir/<name>` (`dir/user` for the user namespace).
pub fn pin_in_user_namespace(
    kinds: &[(&str, CloneFlags)],
    dir: &Path,
    hostname: Option<&str>,
    mappings: &UserNamespaceMappings,
) -> Result<(), SandboxError> {
    let flags = kinds.iter().fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
    // Everything the child touches is made before the fork.
    let hostname: Option<Vec<u8>> = hostname.map(|h| h.as_bytes().to_vec());
    let pipe = |what| pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::host(what, e));
    let (from_child, child_out) = pipe("pipe from the namespace child")?;
    let (child_in, to_child) = pipe("pipe to the namespace child")?;
    // SAFETY: the child runs `child_steps`, which makes only async-signal-safe
    // system calls on memory made before the fork, then `_exit`s.
    match unsafe { fork() }.map_err(|e| SandboxError::host("fork the namespace child", e))? {
        ForkResult::Child => {
            // Its copies of berth's ends would keep its own pipe open: the end
            // of file it waits for would never come.
            // SAFETY: close(2) of descriptors this process owns and never uses again.
            unsafe {
                libc::close(from_child.as_raw_fd());
                libc::close(to_child.as_raw_fd());
            }
            let code = child_steps(flags, hostname.as_deref(), child_out.as_raw_fd(), child_in.as_raw_fd());
            // SAFETY: _exit ends the child without running the parent's atexit
            // handlers or destructors, which a forked child must not run.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((child_out, child_in));
            let result = parent_steps(child, &from_child, &to_child, kinds, dir, mappings);
            if result.is_err() {
                let _ = kill(child, Signal::SIGKILL);
            }
            // End of file on its pipe lets the child exit.
            drop(to_child);
            let _ = waitpid(child, None);
            result
        }
    }
}

/// In the child: each step answers 0, or the errno it failed with.
fn child_steps(flags: CloneFlags, hostname: Option<&[u8]>, out: RawFd, input: RawFd) -> i32 {
    let answer = |result: libc::c_int| -> bool {
        let errno = if result == 0 { 0 } else { nix::errno::Errno::last_raw() };
        let bytes = errno.to_ne_bytes();
        // SAFETY: write(2) from a live stack buffer of the length given.
        let written = unsafe { libc::write(out, bytes.as_ptr().cast(), bytes.len()) };
        result == 0 && written == bytes.len() as isize
    };
    let wait = || -> bool {
        let mut byte = 0u8;
        // SAFETY: read(2) into a live one-byte stack buffer.
        unsafe { libc::read(input, (&raw mut byte).cast(), 1) == 1 }
    };
    // SAFETY: unshare(2) takes flags only.
    if !answer(unsafe { libc::unshare(libc::CLONE_NEWUSER) }) || !wait() {
        return 1;
    }
    // SAFETY: as above; the ID maps are written, so the child is root here.
    let mut result = unsafe { libc::unshare(flags.bits()) };
    if result == 0
        && let Some(name) = hostname
    {
        // SAFETY: sethostname(2) reads `name`, which outlives the call.
        result = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    }
    if !answer(result) {
        return 2;
    }
    // Holds the namespaces until berth has pinned them and closes the pipe.
    let _ = wait();
    0
}

fn parent_steps(
    child: Pid,
    from_child: &OwnedFd,
    to_child: &OwnedFd,
    kinds: &[(&str, CloneFlags)],
    dir: &Path,
    mappings: &UserNamespaceMappings,
) -> Result<(), SandboxError> {
    step_answer(from_child, "unshare the pod's user namespace")?;
    let proc_dir = PathBuf::from(format!("/proc/{child}"));
    for (file, line) in [("uid_map", mappings.uids.proc_line()), ("gid_map", mappings.gids.proc_line())] {
        let path = proc_dir.join(file);
        std::fs::write(&path, &line).map_err(|e| SandboxError::host(format!("write {line:?} to {}", path.display()), e))?;
    }
    nix::unistd::write(to_child, &[1]).map_err(|e| SandboxError::host("signal the namespace child", e))?;
    step_answer(from_child, "unshare the pod's namespaces inside its user namespace")?;
    for name in std::iter::once("user").chain(kinds.iter().map(|(name, _)| *name)) {
        let target = dir.join(name);
        super::namespaces::pin(&proc_dir.join("ns").join(name), &target, name)?;
    }
    Ok(())
}

/// Waits, bounded, for the child's answer to one step.
fn step_answer(from_child: &OwnedFd, step: &str) -> Result<(), SandboxError> {
    let mut fds = [PollFd::new(from_child.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(STEP_TIMEOUT).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) => return Err(SandboxError::host(step, format!("no answer within {STEP_TIMEOUT:?}"))),
        Err(e) => return Err(SandboxError::host(step, e)),
        Ok(_) => {}
    }
    let mut bytes = [0u8; 4];
    match nix::unistd::read(from_child.as_raw_fd(), &mut bytes) {
        Ok(4) => {}
        Ok(_) => return Err(SandboxError::host(step, "the namespace child exited")),
        Err(e) => return Err(SandboxError::host(step, e)),
    }
    match i32::from_ne_bytes(bytes) {
        0 => Ok(()),
        errno => Err(SandboxError::host(step, nix::errno::Errno::from_raw(errno))),
    }
}
