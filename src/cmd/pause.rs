//! `berth pause`: the infra process of a pod that shares one PID namespace
//! among its containers. berth starts it inside the pod's network, IPC and UTS
//! namespaces; it makes a new PID namespace, forks the process that becomes
//! its PID 1, writes that process's host PID to `--pid-file`, and exits.
//! PID 1 then only reaps orphans until it is told to stop.
//!
//! No tokio here: this runs in a fresh process before anything else.

use std::path::Path;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

pub fn run(pid_file: &Path, pid_namespace_made: bool) -> Result<(), String> {
    if !pid_namespace_made {
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare PID namespace: {e}"))?;
    }
    // SAFETY: this process is single-threaded (no runtime was started), so
    // the child may run any code after fork.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { child } => {
            let temp = pid_file.with_extension("tmp");
            std::fs::write(&temp, child.to_string()).map_err(|e| format!("{}: {e}", temp.display()))?;
            std::fs::rename(&temp, pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
            Ok(())
        }
        ForkResult::Child => {
            pid_one();
            Ok(())
        }
    }
}

/// Waits for signals: reaps children on SIGCHLD, exits on SIGTERM or SIGINT.
fn pid_one() {
    // The parent's stdio is berth's pipe; holding it open would keep berth
    // waiting for an end of output that never comes.
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(signal);
    }
    if signals.thread_block().is_err() {
        std::process::exit(1);
    }
    // Stray output would go to whoever started us; there is nothing to say.
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => std::process::exit(0),
            Err(_) => std::process::exit(1),
        }
    }
}

fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, WaitStatus::StillAlive) {
            break;
        }
    }
}
