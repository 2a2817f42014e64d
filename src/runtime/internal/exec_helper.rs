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
    // As runc does: the process gets the container's oom_score_adj, not berth's.
    copy_oom_score_adj(&args.root, &args.id);
    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_root_path(&args.root)
        .map_err(|e| e.to_string())?
        .with_executor(ResetSignals::around(get_executor()))
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

fn copy_oom_score_adj(root: &Path, id: &str) {
    let Ok(container) = libcontainer::container::Container::load(root.join(id)) else { return };
    let Some(init) = container.pid() else { return };
    if let Ok(score) = std::fs::read_to_string(format!("/proc/{init}/oom_score_adj")) {
        let _ = std::fs::write("/proc/self/oom_score_adj", score.trim());
    }
}
