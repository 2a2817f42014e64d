//! `berth internal-exec`: one process exec'd into a container of the internal
//! runtime. libcontainer's tenant builder clones, so it cannot run on the
//! daemon's threads; this single-threaded helper runs it instead, and keeps the
//! contract berth has with `runc exec` (attached): its stdio is the process's,
//! it writes the process's host PID to `--pid-file`, a failure goes to `--log`
//! as a JSON line with level `error`, and it exits with the process's code
//! (128 + N for signal N), or 255 when the process could not be started.

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::get_executor;
use nix::sys::wait::{WaitStatus, waitpid};

use libcontainer::oci_spec::runtime::{LinuxNamespaceType, LinuxSeccomp, Process, Spec};

use super::exec_finish::Finish;
use super::signals::ResetSignals;

/// The flags of `berth internal-exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecHelperArgs {
    /// The internal runtime's state directory.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Where a failure is written, one JSON line.
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// The OCI process to run, as JSON.
    #[arg(long, value_name = "FILE")]
    pub process: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub pid_file: PathBuf,
    pub id: String,
}

/// Runs the helper; the exit code to leave with.
pub fn run(args: &ExecHelperArgs) -> u8 {
    match exec(args) {
        Ok(code) => code,
        Err(message) => {
            let line = serde_json::json!({"level": "error", "msg": message}).to_string();
            let _ = std::fs::write(&args.log, format!("{line}\n"));
            255
        }
    }
}

fn exec(args: &ExecHelperArgs) -> Result<u8, String> {
    let container = libcontainer::container::Container::load(args.root.join(&args.id)).map_err(|e| e.to_string())?;
    // As runc does: the process gets the container's oom_score_adj, not berth's.
    copy_oom_score_adj(&container);
    let (seccomp, user_namespace) = container_spec_parts(&container)?;
    let mut process = read_process(&args.process)?;
    let given = process.clone();
    let executor =
        Finish::around(ResetSignals::around(get_executor()).boxed(), &mut process, seccomp, user_namespace.as_deref())
            .map_err(|e| format!("opening the container's user namespace: {e}"))?;
    // Rewritten only when capabilities were lent (see exec_finish.rs).
    if process != given {
        let json = serde_json::to_vec(&process).map_err(|e| format!("writing the process: {e}"))?;
        std::fs::write(&args.process, json).map_err(|e| format!("writing the process: {e}"))?;
    }
    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map_err(|e| e.to_string())?
        .with_executor(executor)
        .as_tenant()
        .with_process(Some(&args.process))
        .with_detach(true)
        .build()
        .map_err(|e| crate::error::with_causes(&e))?;
    let _ = nix::sys::prctl::set_dumpable(true);
    std::fs::write(&args.pid_file, pid.as_raw().to_string()).map_err(|e| format!("writing the pid file: {e}"))?;
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(u8::try_from(code).unwrap_or(255)),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128u8.saturating_add(signal as u8)),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for the process: {e}")),
        }
    }
}

fn copy_oom_score_adj(container: &libcontainer::container::Container) {
    let Some(init) = container.pid() else { return };
    if let Ok(score) = std::fs::read_to_string(format!("/proc/{init}/oom_score_adj")) {
        let _ = std::fs::write("/proc/self/oom_score_adj", score.trim());
    }
}

/// The filter the container runs under and the user namespace it joined (see
/// exec_finish.rs for why the helper applies them).
fn container_spec_parts(
    container: &libcontainer::container::Container,
) -> Result<(Option<LinuxSeccomp>, Option<PathBuf>), String> {
    let path = container.bundle().join("config.json");
    let spec = Spec::load(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let linux = spec.linux().as_ref();
    let seccomp = linux.and_then(|linux| linux.seccomp().clone());
    let user_namespace = linux
        .and_then(|linux| linux.namespaces().as_ref())
        .and_then(|namespaces| namespaces.iter().find(|ns| ns.typ() == LinuxNamespaceType::User))
        .and_then(|ns| ns.path().clone());
    Ok((seccomp, user_namespace))
}

fn read_process(path: &Path) -> Result<Process, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading the process: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("reading the process: {e}"))
}
