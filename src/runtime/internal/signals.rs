//! The container's process must start with a clean signal state. libcontainer's
//! init inherits its caller's: the monitor blocks SIGCHLD (for its signalfd) and,
//! as every Rust program, ignores SIGPIPE, and both would reach the container's
//! process (runc's init starts with neither). Reset just before the execve.

use std::collections::HashMap;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use nix::sys::signal::SigSet;

/// An executor that resets the signal mask and dispositions, then runs `inner`.
#[derive(Clone)]
pub(super) struct ResetSignals(Box<dyn Executor>);

impl ResetSignals {
    pub(super) fn around(inner: Box<dyn Executor>) -> Self {
        ResetSignals(inner)
    }

    pub(super) fn boxed(self) -> Box<dyn Executor> {
        Box::new(self)
    }
}

impl Executor for ResetSignals {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let _ = SigSet::all().thread_unblock();
        // Every signal, the real-time ones too, through the system call: glibc's
        // sigaction refuses the two it keeps for itself (32 and 33), which berth's
        // parent may have left ignored. An all-zero kernel sigaction is SIG_DFL,
        // no flags, no mask, whatever the architecture's field order.
        let default = [0u64; 4];
        for signum in 1..=nix::libc::SIGRTMAX() {
            if signum == nix::libc::SIGKILL || signum == nix::libc::SIGSTOP {
                continue;
            }
            // SAFETY: rt_sigaction reads one kernel sigaction (at most 32 bytes,
            // which `default` holds) and writes nothing (no old action asked for).
            // SIG_DFL runs no code in a signal context; this process is
            // single-threaded and about to execve.
            unsafe {
                nix::libc::syscall(
                    nix::libc::SYS_rt_sigaction,
                    signum,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
        self.0.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.0.validate(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.0.setup_envs(envs)
    }
}
