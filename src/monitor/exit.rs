//! The exit record: how the container's init ended, written once by the monitor
//! (temp file + rename, so berth never reads half of it) and read by berth.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::wait::WaitStatus;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal that killed it (the shell convention
    /// kubelet and containerd use).
    pub exit_code: i32,
    /// Unix nanoseconds.
    pub exited_at: i64,
    /// The container's cgroup counted an OOM kill.
    pub oom_killed: bool,
}

/// The exit record at `path`, or `None` while the container has not exited.
pub fn read_exit_file(path: &Path) -> io::Result<Option<ExitRecord>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The exit code a wait status stands for; `None` for a status that is no exit.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

pub fn write_exit_file(path: &Path, record: &ExitRecord) -> io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, serde_json::to_vec(record).map_err(io::Error::other)?)?;
    std::fs::rename(&temp, path)
}

/// Where the container's memory cgroup keeps its OOM kill count, from the bundle's
/// `linux.cgroupsPath`: a cgroupfs path, or systemd's `slice:prefix:name` laid
/// out as systemd lays it out. `None` when the path is missing.
pub fn oom_counter(bundle: &Path) -> Option<PathBuf> {
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
    let cgroups_path = config.pointer("/linux/cgroupsPath")?.as_str()?;
    let cgroup = crate::stats::cgroup::hierarchy_path(cgroups_path);
    let cgroup = cgroup.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if crate::stats::cgroup::is_unified_host() {
        Some(root.join(cgroup).join("memory.events"))
    } else {
        Some(root.join("memory").join(cgroup).join("memory.oom_control"))
    }
}

/// Whether the counter file (v1 `memory.oom_control`, v2 `memory.events`) counts
/// an OOM kill. Both name it `oom_kill <n>`.
pub fn oom_killed(counter: Option<&Path>) -> bool {
    let Some(text) = counter.and_then(|path| std::fs::read_to_string(path).ok()) else { return false };
    text.lines()
        .filter_map(|line| line.strip_prefix("oom_kill "))
        .any(|count| count.trim().parse::<u64>().is_ok_and(|n| n > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oom_counter_of_a_systemd_container_is_found() {
        // Under the systemd driver the counter used to be None: an OOM-killed
        // container was reported as an ordinary exit.
        let bundle = tempfile::tempdir().unwrap();
        let config = r#"{"linux":{"cgroupsPath":"kubepods-pod1.slice:berth:c1"}}"#;
        std::fs::write(bundle.path().join("config.json"), config).unwrap();
        let scope = "kubepods.slice/kubepods-pod1.slice/berth-c1.scope";
        let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Path::new("/sys/fs/cgroup").join(scope).join("memory.events")
        } else {
            Path::new("/sys/fs/cgroup/memory").join(scope).join("memory.oom_control")
        };
        assert_eq!(oom_counter(bundle.path()), Some(expected));
    }
}
