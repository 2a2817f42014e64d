//! The runtime commands the monitor runs itself, each bounded: a `create` that hangs
//! must not hold the monitor (and berth's CreateContainer) forever, and what it
//! left behind must go before the monitor answers.

use std::os::fd::AsFd;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::signalfd::SignalFd;

use super::sys;
use crate::runtime::OciCli;

/// Waits for `child` at most `timeout`, woken by the SIGCHLDs `signals` collects.
/// Past the bound the child is killed and reaped, and `None` returned.
///
/// Only `child` is reaped: the container's init, once orphaned to the monitor,
/// stays a zombie for the session's first reap, which the drained signal would
/// otherwise have announced.
pub(super) fn wait_bounded(child: &mut Child, signals: &SignalFd, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        sys::poll(&mut fds, sys::poll_timeout(left.max(Duration::from_millis(1))))?;
        while let Ok(Some(_)) = signals.read_signal() {}
    }
}

/// `delete --force`: kills the container's processes and removes the runtime's
/// state of it, whatever state a failed or killed `create` left. Best effort and
/// bounded: berth's undo deletes it again, and a container the runtime never
/// recorded is already gone.
pub(super) fn force_delete(cli: &OciCli, id: &str, signals: &SignalFd) {
    let Ok(log) = cli.scratch_file(".berth-log-", b"") else { return };
    let mut command = std::process::Command::new(cli.program());
    command.args(cli.delete_args(&log, id, true)).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    if let Ok(mut child) = command.spawn() {
        let _ = wait_bounded(&mut child, signals, cli.timeout());
    }
}
