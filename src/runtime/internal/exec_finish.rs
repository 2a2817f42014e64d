//! The last steps of a process exec'd into a container, which libcontainer
//! 0.7's tenant builder (its exec) leaves out, done by the exec helper's
//! executor just before execve:
//!
//! - **The container's user namespace.** The tenant builder joins every
//!   namespace of the container's init but the user namespace: left to it, a
//!   process exec'd into a pod of its own user namespace would run as the
//!   node's root. The executor joins it and takes the process's IDs there.
//! - **The container's seccomp filter.** The tenant builder rebuilds the spec's
//!   `linux` section without `seccomp`: the process would run unfiltered.
//!   Without no_new_privs the kernel takes a filter only from a process holding
//!   CAP_SYS_ADMIN.
//!
//! Both need capabilities the process's own rarely include: the helper lets
//! libcontainer leave it CAP_SYS_ADMIN and CAP_SETPCAP as well, and the
//! executor drops them, with every capability joining a user namespace grants,
//! back to the process's own, as runc does.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use libcontainer::oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp, Process, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError};
use nix::unistd::{Gid, Uid};

/// The container's user namespace, and who the process is inside it.
#[derive(Clone)]
struct UserJoin {
    /// Opened in the helper, on the host: the executor runs in the container's
    /// mount namespace, where the pin's path is not. libcontainer marks
    /// inherited descriptors close-on-exec, so it stays open until the execve.
    namespace: Arc<File>,
    uid: u32,
    gid: u32,
    additional_gids: Vec<u32>,
}

/// An executor that finishes the process (see the module), then runs `inner`.
#[derive(Clone)]
pub(super) struct Finish {
    inner: Box<dyn Executor>,
    user: Option<UserJoin>,
    seccomp: Option<LinuxSeccomp>,
    /// The process's own capabilities, when more were lent or will be granted.
    own_capabilities: Option<LinuxCapabilities>,
}

impl Finish {
    /// Lends `process` what the steps need; the executor to run it with.
    /// `user_namespace` is the container's, when it has one of its pod's.
    pub(super) fn around(
        inner: Box<dyn Executor>,
        process: &mut Process,
        seccomp: Option<LinuxSeccomp>,
        user_namespace: Option<&Path>,
    ) -> std::io::Result<Self> {
        let namespace = user_namespace.map(File::open).transpose()?;
        let user = namespace.map(|namespace| {
            let user = process.user();
            UserJoin {
                namespace: Arc::new(namespace),
                uid: user.uid(),
                gid: user.gid(),
                additional_gids: user.additional_gids().clone().unwrap_or_default(),
            }
        });
        let lend = user.is_some() || (seccomp.is_some() && process.no_new_privileges() != Some(true));
        let own_capabilities = if lend {
            // No capabilities given is none at all (oci-spec's default has some).
            let own = process.capabilities().clone().unwrap_or_else(|| {
                let mut none = LinuxCapabilities::default();
                none.set_bounding(None).set_permitted(None).set_effective(None);
                none.set_inheritable(None).set_ambient(None);
                none
            });
            process.set_capabilities(Some(lent(&own)));
            // A set the process left unset is one libcontainer would leave as
            // it finds it: dropped back to empty, the lent capabilities go.
            let mut restore = own;
            restore.set_bounding(Some(restore.bounding().clone().unwrap_or_default()));
            restore.set_permitted(Some(restore.permitted().clone().unwrap_or_default()));
            restore.set_effective(Some(restore.effective().clone().unwrap_or_default()));
            restore.set_inheritable(Some(restore.inheritable().clone().unwrap_or_default()));
            restore.set_ambient(Some(restore.ambient().clone().unwrap_or_default()));
            Some(restore)
        } else {
            // With no_new_privs the kernel asks for no capability; with no
            // capabilities given, libcontainer drops none.
            None
        };
        Ok(Finish { inner, user, seccomp, own_capabilities })
    }
}

/// `own` with CAP_SYS_ADMIN (to join a user namespace and load a filter) and
/// CAP_SETPCAP (to drop from the bounding set afterwards) in the bounding,
/// permitted and effective sets.
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

fn failed(what: &str, e: &dyn std::error::Error) -> ExecutorError {
    ExecutorError::Other(format!("{what}: {e}"))
}

/// Joins the user namespace and becomes the process's user there. Joining
/// grants every capability in it; they are dropped afterwards.
fn join(user: &UserJoin) -> Result<(), ExecutorError> {
    nix::sched::setns(user.namespace.as_ref(), nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(|e| failed("joining the container's user namespace", &e))?;
    let groups: Vec<Gid> = user.additional_gids.iter().copied().map(Gid::from_raw).collect();
    nix::unistd::setgroups(&groups).map_err(|e| failed("setting the process's groups", &e))?;
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| failed("setting the process's gid", &e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| failed("setting the process's uid", &e))?;
    Ok(())
}

impl Executor for Finish {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(user) = &self.user {
            join(user)?;
        }
        if let Some(seccomp) = &self.seccomp {
            let notify = libcontainer::seccomp::initialize_seccomp(seccomp)
                .map_err(|e| failed("loading the container's seccomp filter", &e))?;
            if let Some(fd) = notify {
                // A notifying filter needs a listener berth does not run.
                let _ = nix::unistd::close(fd);
                return Err(ExecutorError::Other("seccomp notify profiles are not supported for exec".into()));
            }
        }
        if let Some(own) = &self.own_capabilities {
            let syscall = SyscallType::default().create_syscall();
            libcontainer::capabilities::drop_privileges(own, syscall.as_ref())
                .map_err(|e| failed("dropping the capabilities lent for the last steps", &e))?;
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
        let executor = Finish::around(get_executor(), &mut given, Some(LinuxSeccomp::default()), None).unwrap();
        let lent = given.capabilities().clone().unwrap();
        for set in [lent.bounding(), lent.permitted(), lent.effective()] {
            let set = set.clone().unwrap();
            assert!(set.contains(&Capability::SysAdmin) && set.contains(&Capability::Chown), "{set:?}");
        }
        let kept = executor.own_capabilities.unwrap();
        assert_eq!(kept.bounding(), own.unwrap().bounding(), "and its own are kept to drop back to");
    }

    #[test]
    fn with_no_new_privs_or_no_filter_nothing_is_lent() {
        for (no_new_privileges, seccomp) in [(Some(true), Some(LinuxSeccomp::default())), (None, None)] {
            let mut given = process(no_new_privileges);
            let before = given.clone();
            let executor = Finish::around(get_executor(), &mut given, seccomp, None).unwrap();
            assert_eq!(given, before);
            assert!(executor.own_capabilities.is_none());
        }
    }

    #[test]
    fn a_process_joining_a_user_namespace_is_lent_what_it_needs_and_drops_everything_else() {
        let mut given = ProcessBuilder::default().build().unwrap();
        given.set_capabilities(None);
        let namespace = Path::new("/proc/self/ns/user");
        let executor = Finish::around(get_executor(), &mut given, None, Some(namespace)).unwrap();
        let lent = given.capabilities().clone().unwrap();
        assert!(lent.effective().clone().unwrap().contains(&Capability::SysAdmin));
        let own = executor.own_capabilities.unwrap();
        for set in [own.bounding(), own.permitted(), own.effective(), own.inheritable(), own.ambient()] {
            assert_eq!(set.as_ref().map(|s| s.len()), Some(0), "all it is granted there goes: {own:?}");
        }
        assert!(executor.user.is_some(), "the namespace was opened");
        let missing = Finish::around(get_executor(), &mut given, None, Some(Path::new("/nonexistent/user")));
        assert!(missing.is_err(), "a namespace that cannot be opened fails the exec before it starts");
    }
}
