//! The container's seccomp filter for a process exec'd into it.
//!
//! libcontainer 0.7's tenant builder (its exec) rebuilds the spec's `linux`
//! section without `seccomp`: left to it, an exec'd process would run with no
//! filter at all, escaping the profile the container runs under. So the exec
//! helper loads the filter itself, in its last step before execve (the
//! executor). Without no_new_privs the kernel takes a filter only from a
//! process holding CAP_SYS_ADMIN, which the process's own capabilities rarely
//! include: the helper lets libcontainer leave it CAP_SYS_ADMIN and CAP_SETPCAP
//! as well, and the executor loads the filter, then drops the capabilities to
//! the process's own, as runc does for a process without no_new_privs.

use std::collections::HashMap;

use libcontainer::oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp, Process, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};

/// An executor that loads the container's filter, drops the capabilities lent
/// for it, then runs `inner`.
#[derive(Clone)]
pub(super) struct WithSeccomp {
    inner: Box<dyn Executor>,
    seccomp: Option<LinuxSeccomp>,
    /// The process's own capabilities, when some were lent on top of them.
    own_capabilities: Option<LinuxCapabilities>,
}

impl WithSeccomp {
    /// Lends `process` what loading `seccomp` needs; the executor to run it with.
    pub(super) fn around(inner: Box<dyn Executor>, process: &mut Process, seccomp: Option<LinuxSeccomp>) -> Self {
        let own_capabilities = process.capabilities().clone();
        let lend = seccomp.is_some() && process.no_new_privileges() != Some(true);
        let own_capabilities = match (lend, own_capabilities) {
            (true, Some(own)) => {
                process.set_capabilities(Some(lent(&own)));
                // A set the process left unset is one libcontainer would leave as
                // it finds it: dropped back to empty, the lent capabilities go.
                let mut restore = own;
                restore.set_bounding(Some(restore.bounding().clone().unwrap_or_default()));
                restore.set_permitted(Some(restore.permitted().clone().unwrap_or_default()));
                restore.set_effective(Some(restore.effective().clone().unwrap_or_default()));
                Some(restore)
            }
            // With no_new_privs the kernel asks for no capability; with no
            // capabilities given, libcontainer drops none.
            _ => None,
        };
        WithSeccomp { inner, seccomp, own_capabilities }
    }
}

/// `own` with CAP_SYS_ADMIN (to load the filter) and CAP_SETPCAP (to drop
/// from the bounding set afterwards) in the bounding, permitted and effective sets.
fn lent(own: &LinuxCapabilities) -> LinuxCapabilities {
    let mut lent = own.clone();
    let with = |set: &Option<std::collections::HashSet<Capability>>| {
        let mut set = set.clone().unwrap_or_default();
        set.extend([Capability::SysAdmin, Capability::Setpcap]);
        Some(set)
    };
    lent.set_bounding(with(own.bounding()));
    lent.set_permitted(with(own.permitted()));
    lent.set_effective(with(own.effective()));
    lent
}

impl Executor for WithSeccomp {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        let Some(seccomp) = &self.seccomp else { return self.inner.exec(spec) };
        let failed = |what: &str, e: &dyn std::error::Error| ExecutorError::Other(format!("{what}: {e}"));
        let notify = libcontainer::seccomp::initialize_seccomp(seccomp)
            .map_err(|e| failed("loading the container's seccomp filter", &e))?;
        if let Some(fd) = notify {
            // A notifying filter needs a listener berth does not run.
            let _ = nix::unistd::close(fd);
            return Err(ExecutorError::Other("seccomp notify profiles are not supported for exec".into()));
        }
        if let Some(own) = &self.own_capabilities {
            let syscall = SyscallType::default().create_syscall();
            libcontainer::capabilities::drop_privileges(own, syscall.as_ref())
                .map_err(|e| failed("dropping the capabilities lent for seccomp", &e))?;
        }
        self.inner.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        self.inner.validate(spec)
    }

    fn setup_envs(&self, envs: HashMap<String, String>) -> Result<(), ExecutorSetEnvsError> {
        self.inner.setup_envs(envs)
    }
}

#[cfg(test)]
mod tests {
    use libcontainer::oci_spec::runtime::{LinuxCapabilitiesBuilder, ProcessBuilder};
    use libcontainer::workload::default::get_executor;

    use super::*;

    fn process(no_new_privileges: Option<bool>) -> Process {
        let own = LinuxCapabilitiesBuilder::default()
            .bounding([Capability::Chown])
            .permitted([Capability::Chown])
            .effective([Capability::Chown])
            .build()
            .unwrap();
        let mut process = ProcessBuilder::default().capabilities(own).build().unwrap();
        process.set_no_new_privileges(no_new_privileges);
        process
    }

    #[test]
    fn without_no_new_privs_the_process_is_lent_what_loading_needs() {
        let mut given = process(None);
        let own = given.capabilities().clone();
        let executor = WithSeccomp::around(get_executor(), &mut given, Some(LinuxSeccomp::default()));
        let lent = given.capabilities().clone().unwrap();
        for set in [lent.bounding(), lent.permitted(), lent.effective()] {
            let set = set.clone().unwrap();
            assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::Chown), "{set:?}");
        }
        assert_eq!(executor.own_capabilities, own, "and its own are kept to drop back to");
    }

    #[test]
    fn with_no_new_privs_or_no_filter_nothing_is_lent() {
        for (no_new_privileges, seccomp) in [(Some(true), Some(LinuxSeccomp::default())), (None, None)] {
            let mut given = process(no_new_privileges);
            let before = given.clone();
            let executor = WithSeccomp::around(get_executor(), &mut given, seccomp);
            assert_eq!(given, before);
            assert!(executor.own_capabilities.is_none());
        }
    }
}
