//! berth's own runtime (`type = "internal"`): youki's `libcontainer` and
//! `libcgroups`, called in process. Nothing is exec'd to create, start, signal,
//! update or delete a container.
//!
//! `create` runs in the per-container monitor, which is single-threaded when it
//! calls it: libcontainer clones (`clone3`, past glibc's fork handlers) and
//! changes the working directory of the whole process, so it must never run on
//! the daemon's threads. The container's init is then the monitor's own child.
//! The other operations fork nothing and run on the daemon's blocking threads.
//!
//! What libcontainer does to its caller, undone here: it writes the spec's
//! oomScoreAdj to the *caller's* `/proc/self/oom_score_adj` (stripped from the
//! spec and written to the init's instead), leaves the caller non-dumpable
//! (restored), and hands the caller's blocked and ignored signals to the
//! container (reset by [`ResetSignals`] just before the container's execve).
//!
//! Exec runs libcontainer's tenant builder, which clones too, in a helper
//! process of its own (`berth internal-exec`, exec_helper.rs).

mod adapt;
mod capture;
mod cgroup_v1;
mod errors;
mod exec_helper;
mod exec_finish;
mod propagation;
mod signals;

pub use exec_helper::{ExecHelperArgs, run as run_exec_helper};
pub use propagation::{PropagationHookArgs, run_hook as run_propagation_hook};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::get_executor;
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use oci_spec::runtime::{LinuxResources, Process, Spec};

use super::RuntimeHandler;
use super::error::{Call, Refusal, RuntimeError};
use super::oci::{ContainerState, ContainerStatus, CreateIo, ExecIo, ExecProcess, OciRuntime, RuntimeFeatures};
use adapt::Prepared;
use capture::Capture;
use errors::from_libcontainer;
use signals::ResetSignals;

/// What the handler says of itself in Status.
const VERSION: &str = "berth internal runtime (youki libcontainer 0.7)";

#[derive(Debug, Clone)]
pub struct Internal {
    name: String,
    /// libcontainer's state directory: `<root>/<id>/state.json` per container.
    root: PathBuf,
    systemd_cgroup: bool,
    timeout: Duration,
}

impl Internal {
    pub fn new(handler: &RuntimeHandler) -> Self {
        Internal {
            name: handler.name.clone(),
            root: handler.root.clone(),
            systemd_cgroup: handler.systemd_cgroup,
            timeout: handler.timeout,
        }
    }

    fn call(&self, command: &'static str, id: &str) -> Call {
        Call::new(&self.name, command, id)
    }

    fn ensure_root(&self, call: &Call) -> Result<(), RuntimeError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| RuntimeError::io(call, "creating its state directory", e))
    }

    fn load(&self, call: &Call, id: &str) -> Result<Container, RuntimeError> {
        let dir = self.root.join(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::Failed {
                call: call.clone(),
                refusal: Refusal::NotFound,
                message: format!("container {id} does not exist"),
            });
        }
        Container::load(dir).map_err(|e| from_libcontainer(call.clone(), e))
    }

    /// Runs `work` on a blocking thread, bounded by the handler's timeout (the
    /// thread is left to finish on its own past it).
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        call: Call,
        work: impl FnOnce(&Internal, &Call) -> Result<T, RuntimeError> + Send + 'static,
    ) -> Result<T, RuntimeError> {
        let (this, timeout, inner) = (self.clone(), self.timeout, call.clone());
        let task = tokio::task::spawn_blocking(move || work(&this, &inner));
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(RuntimeError::io(&call, "running it", std::io::Error::other(join))),
            Err(_elapsed) => Err(RuntimeError::TimedOut { call, timeout }),
        }
    }
}

/// The handler as the daemon holds it: cheap to clone into blocking tasks.
pub fn runtime(handler: &RuntimeHandler) -> Arc<dyn OciRuntime> {
    Arc::new(Shared(Arc::new(Internal::new(handler))))
}

struct Shared(Arc<Internal>);

impl Shared {
    /// Loads container `id` and runs one libcontainer operation on it, off the
    /// async workers.
    async fn on_container(
        &self,
        command: &'static str,
        id: &str,
        operation: impl FnOnce(&mut Container) -> Result<(), libcontainer::error::LibcontainerError> + Send + 'static,
    ) -> Result<(), RuntimeError> {
        let id = id.to_string();
        self.0
            .blocking(self.0.call(command, &id), move |internal, call| {
                operation(&mut internal.load(call, &id)?).map_err(|e| from_libcontainer(call.clone(), e))
            })
            .await
    }
}

fn create(internal: &Internal, id: &str, bundle: &Path, io: CreateIo) -> Result<i32, RuntimeError> {
    let call = internal.call("create", id);
    internal.ensure_root(&call)?;
    let prepared = Prepared::read(&call, bundle)?;
    let cgroups_path = prepared.cgroups_path();
    let created = cgroup_v1::prepare(cgroups_path)
        .map_err(|e| RuntimeError::io(&call, "making the container's cgroups", e))
        .and_then(|()| create_prepared(internal, &call, bundle, io, &prepared));
    if created.is_err() {
        // Whatever step failed: an init still in them keeps them (rmdir refuses),
        // and the delete that follows removes them.
        cgroup_v1::remove(cgroups_path);
    }
    created
}

fn create_prepared(
    internal: &Internal,
    call: &Call,
    bundle: &Path,
    io: CreateIo,
    prepared: &Prepared,
) -> Result<i32, RuntimeError> {
    let capture = Capture::new(&internal.root).map_err(|e| RuntimeError::io(call, "creating its log", e))?;
    let failed = |e| errors::with_account(from_libcontainer(call.clone(), e), &capture.text());
    let mut builder = ContainerBuilder::new(call.id.clone(), SyscallType::default())
        .with_root_path(&internal.root)
        .map_err(failed)?
        .with_executor(ResetSignals::around(get_executor()))
        .with_console_socket(io.console_socket.as_deref());
    if let Some(fd) = io.stdin {
        builder = builder.with_stdin(fd);
    }
    if let Some(fd) = io.stdout {
        builder = builder.with_stdout(fd);
    }
    if let Some(fd) = io.stderr {
        builder = builder.with_stderr(fd);
    }
    let init = builder.validate_id().map_err(failed)?.as_init(bundle);
    let built = capture.during(|| init.with_systemd(internal.systemd_cgroup).with_detach(true).build());
    // libcontainer leaves its caller non-dumpable (/proc/<pid> owned by root only).
    let _ = nix::sys::prctl::set_dumpable(true);
    let container = built.map_err(|e| {
        reap_leftovers();
        failed(e)
    })?;
    let pid = container.pid().ok_or_else(|| RuntimeError::Failed {
        call: call.clone(),
        refusal: Refusal::Other,
        message: "created without an init process".into(),
    })?;
    if let Some(score) = prepared.oom_score_adj() {
        std::fs::write(format!("/proc/{pid}/oom_score_adj"), score.to_string())
            .map_err(|e| RuntimeError::io(call, "setting the init's oom_score_adj", e))?;
    }
    cgroup_v1::join(prepared.cgroups_path(), pid.as_raw());
    Ok(pid.as_raw())
}

/// Deletes a container libcontainer knows, then the cgroup directories create
/// made beside its own.
fn delete_loaded(call: &Call, mut container: Container, force: bool) -> Result<(), RuntimeError> {
    let prepared = Prepared::read(call, container.bundle()).unwrap_or_default();
    container.delete(force).map_err(|e| from_libcontainer(call.clone(), e))?;
    cgroup_v1::remove(prepared.cgroups_path());
    Ok(())
}

/// A failed create leaves its intermediate and init processes as zombies of the
/// caller whose PIDs it never returns; only the caller can reap them.
fn reap_leftovers() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(status) = waitpid(nix::unistd::Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn state_of(id: &str, container: &Container) -> ContainerState {
    use libcontainer::container::ContainerStatus as Lc;
    let status = match container.status() {
        Lc::Creating => ContainerStatus::Creating,
        Lc::Created => ContainerStatus::Created,
        Lc::Running => ContainerStatus::Running,
        Lc::Paused => ContainerStatus::Paused,
        Lc::Stopped => ContainerStatus::Stopped,
    };
    ContainerState {
        id: id.to_string(),
        status,
        pid: container.pid().map_or(0, |pid| pid.as_raw()),
        bundle: container.bundle().clone(),
        rootfs: None,
        created: container.created().map(|at| at.to_rfc3339()),
    }
}

#[async_trait::async_trait]
impl OciRuntime for Shared {
    fn prepare_spec(&self, spec: &mut Spec, bundle: &Path) -> Result<(), RuntimeError> {
        adapt::prepare(&self.0.call("create", ""), spec, bundle)
    }

    fn create_blocking(
        &self,
        id: &str,
        bundle: &Path,
        io: CreateIo,
        _sigchld: Option<&SignalFd>,
        _runtime_stderr: &dyn Fn() -> Vec<u8>,
    ) -> Result<i32, RuntimeError> {
        create(&self.0, id, bundle, io)
    }

    fn force_delete_blocking(&self, id: &str, _sigchld: Option<&SignalFd>) {
        let call = self.0.call("delete", id);
        if let Ok(container) = self.0.load(&call, id) {
            let _ = delete_loaded(&call, container, true);
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.on_container("start", id, move |container| container.start()).await
    }

    async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let id = id.to_string();
        self.0
            .blocking(self.0.call("state", &id), move |internal, call| Ok(state_of(&id, &internal.load(call, &id)?)))
            .await
    }

    async fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        self.on_container("kill", id, move |container| container.kill(signal, all)).await
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let id = id.to_string();
        self.0
            .blocking(self.0.call("delete", &id), move |internal, call| match internal.load(call, &id) {
                // Already gone is what delete wants: a retry after a lost answer succeeds.
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
                Ok(container) => delete_loaded(call, container, force),
            })
            .await
    }

    /// Through `berth internal-exec` (see exec_helper.rs), under the contract the
    /// runc CLI's exec keeps, so the same handle waits for it and kills it.
    async fn exec(&self, id: &str, process: &Process, io: ExecIo) -> Result<Box<dyn ExecProcess>, RuntimeError> {
        let call = self.0.call("exec", id);
        self.0.ensure_root(&call)?;
        // With a terminal, berth's pty slave is already the helper's stdio and
        // controlling terminal, which the process inherits: libcontainer must not
        // make a pty of its own (it would want a console socket to send it to).
        let mut process = process.clone();
        if io.controlling_terminal {
            process.set_terminal(Some(false));
        }
        let spec = serde_json::to_vec(&process).map_err(|e| RuntimeError::json(&call, "encoding the process", e))?;
        let scratch = |prefix: &str, contents: &[u8]| {
            crate::runtime::cli::scratch_file_in(&self.0.root, prefix, contents)
                .map_err(|e| RuntimeError::io(&call, "creating its files", e))
        };
        let process_file = scratch(".berth-process-", &spec)?;
        let pid_file = scratch(".berth-pid-", b"")?;
        let log = scratch(".berth-log-", b"")?;
        let mut command = tokio::process::Command::new("/proc/self/exe");
        command.arg("internal-exec").arg("--root").arg(&self.0.root).arg("--log").arg(&log);
        command.arg("--process").arg(&process_file).arg("--pid-file").arg(&pid_file).arg(id);
        command.stdin(io.stdin).stdout(io.stdout).stderr(io.stderr).kill_on_drop(true);
        if io.controlling_terminal {
            // SAFETY: between fork and exec the closure calls only setsid(2) and
            // ioctl(2), both async-signal-safe, and allocates nothing.
            unsafe { command.pre_exec(crate::runtime::cli::take_stdin_as_controlling_terminal) };
        }
        let child = command.spawn().map_err(|source| RuntimeError::Spawn {
            call: call.clone(),
            binary: PathBuf::from("/proc/self/exe"),
            source,
        })?;
        Ok(crate::runtime::cli::exec_handle(call, child, log, pid_file, process_file))
    }

    async fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
        let (id, resources) = (id.to_string(), resources.clone());
        self.0
            .blocking(self.0.call("update", &id), move |internal, call| {
                let container = internal.load(call, &id)?;
                let spec = container.spec().map_err(|e| from_libcontainer(call.clone(), e))?;
                let cgroups = libcgroups::common::create_cgroup_manager(libcgroups::common::CgroupConfig {
                    cgroup_path: spec.cgroup_path,
                    systemd_cgroup: internal.systemd_cgroup,
                    container_name: id.clone(),
                })
                .map_err(|e| errors::cgroups(call, e))?;
                let options = libcgroups::common::ControllerOpt {
                    resources: &resources,
                    disable_oom_killer: false,
                    oom_score_adj: None,
                    freezer_state: None,
                };
                libcgroups::common::CgroupManager::apply(&cgroups, &options).map_err(|e| errors::cgroups(call, e))
            })
            .await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.on_container("pause", id, move |container| container.pause()).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.on_container("resume", id, move |container| container.resume()).await
    }

    async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.0
            .blocking(self.0.call("list", ""), move |internal, call| {
                let mut states = Vec::new();
                for entry in std::fs::read_dir(&internal.root).into_iter().flatten().flatten() {
                    let id = entry.file_name().to_string_lossy().into_owned();
                    if let Ok(container) = internal.load(call, &id) {
                        states.push(state_of(&id, &container));
                    }
                }
                Ok(states)
            })
            .await
    }

    /// In process: healthy whenever its state directory can be made.
    async fn health(&self) -> Result<String, RuntimeError> {
        self.0.ensure_root(&self.0.call("health", ""))?;
        Ok(VERSION.to_string())
    }

    /// As the CLI backend's: berth stages recursive read-only binds and makes the
    /// pod's user namespace with its ID-mapped mounts; libcontainer binds and joins.
    fn features(&self) -> RuntimeFeatures {
        RuntimeFeatures {
            recursive_read_only_mounts: crate::idmap::kernel_has_mount_setattr(),
            user_namespaces: crate::idmap::supported(),
        }
    }
}
