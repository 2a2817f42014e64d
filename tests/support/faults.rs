//! Failure injection: wrappers around the real runc and the real CNI plugins that
//! fail, or hang, at one chosen step a chosen number of times and otherwise pass
//! every call through. Each wrapper lives in a temp dir of its own, counts its
//! faults there, and writes the PID of every process it hangs, so a test can
//! check that berth killed it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::berth::CNI_BIN_DIR;

/// What the wrapper does at its step.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Exits 1 without doing the step, saying so on stderr.
    Fail,
    /// Never answers, without doing the step.
    Hang,
    /// Does the step, then never answers: the result comes too late.
    HangAfter,
}

/// A wrapper script and the directory of its counter and PID files.
pub struct Wrapper {
    dir: TempDir,
    pub path: PathBuf,
}

impl Wrapper {
    /// `real` runs every call but the first `times` whose `step_test` (a shell
    /// condition) holds.
    fn new(name: &str, real: &Path, step_test: &str, step: &str, fault: Fault, times: u32) -> Wrapper {
        let dir = tempfile::Builder::new().prefix("berth-test-fault-").tempdir().expect("fault dir");
        let path = dir.path().join(name);
        let state = dir.path().display();
        let real = real.display();
        let act = match fault {
            Fault::Fail => format!("echo \"injected failure at {step}\" >&2; exit 1"),
            Fault::Hang => format!("echo $$ >> {state}/hung; exec sleep 3600"),
            Fault::HangAfter => format!("\"{real}\" \"$@\"; echo $$ >> {state}/hung; exec sleep 3600"),
        };
        let script = format!(
            "#!/bin/sh\n\
             if {step_test}; then\n\
             \x20 done=$(cat {state}/count 2>/dev/null || echo 0)\n\
             \x20 if [ \"$done\" -lt {times} ]; then\n\
             \x20   echo $((done + 1)) > {state}/count\n\
             \x20   {act}\n\
             \x20 fi\n\
             fi\n\
             exec \"{real}\" \"$@\"\n"
        );
        std::fs::write(&path, script).expect("write wrapper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        Wrapper { dir, path }
    }

    /// How many times the fault was injected.
    pub fn injected(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("count")).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
    }

    /// The PIDs of the processes it hung.
    pub fn hung_pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("hung")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Wrapper {
    fn drop(&mut self) {
        // A hung process berth failed to kill must not outlive the test.
        for pid in self.hung_pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A runc that faults at `subcommand` (create, start, kill, delete, exec, ...).
pub fn runtime(subcommand: &str, fault: Fault, times: u32) -> Wrapper {
    // berth's global flags come first (`--root <path> --log <path> --log-format
    // json`); the subcommand is the first word that is none of those.
    let test = format!(
        "step=; for arg in \"$@\"; do case \"$arg\" in -*|/*|json) ;; *) step=$arg; break ;; esac; done; \
         [ \"$step\" = {subcommand} ]"
    );
    Wrapper::new("runc", Path::new("/usr/sbin/runc"), &test, &format!("runc {subcommand}"), fault, times)
}

/// A berth config section making `wrapper` the runtime handler `name`, with
/// each of its commands bounded by `timeout`.
pub fn runtime_handler(name: &str, wrapper: &Wrapper, timeout: Duration) -> String {
    format!(
        "[runtime.handlers.{name}]\npath = {:?}\ntimeout = \"{}ms\"\n",
        wrapper.path.display().to_string(),
        timeout.as_millis()
    )
}

/// A CNI plugin `plugin` (from Debian's) that faults at `command` (ADD, DEL, CHECK).
/// Put the wrapper's dir before Debian's in `cni.bin_dirs`.
pub fn cni_plugin(plugin: &str, command: &str, fault: Fault, times: u32) -> Wrapper {
    let real = Path::new(CNI_BIN_DIR).join(plugin);
    let test = format!("[ \"$CNI_COMMAND\" = {command} ]");
    Wrapper::new(plugin, &real, &test, &format!("{plugin} {command}"), fault, times)
}
