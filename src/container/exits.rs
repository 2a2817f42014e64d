//! Noticing that a container exited: its monitor writes the exit record and
//! exits, so berth waits for the monitor's end (a pidfd: the monitor is no child
//! of berth) and folds the record into the container's.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use nix::libc;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::Instrument;

use super::events::EventKind;
use super::record::{self, ContainerRecord, ContainerState};
use super::{ContainerError, ContainerService, is_monitor_of};
use crate::monitor::{ExitRecord, read_exit_file};

/// The exit code recorded when the monitor vanished without recording one
/// (killed, or the node rebooted): the container's fate is unknown.
const LOST_EXIT_CODE: i32 = 255;

/// A descriptor that becomes readable when process `pid` ends.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the monitor `pid` of container `id` has ended (at once if it has).
async fn monitor_gone(pid: i32, id: &str) {
    let Ok(fd) = pidfd_open(pid) else { return };
    // Checked after the pidfd is open: it names the process that has the PID now.
    if !is_monitor_of(pid, id) {
        return;
    }
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until
    // the AsyncFd is dropped.
    match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) } {
        Ok(fd) => {
            let _ = fd.readable().await;
        }
        // Cannot register the fd: fall back to looking now and then.
        Err(_) => {
            while is_monitor_of(pid, id) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl ContainerService {
    /// Watches a created or running container's monitor; when it ends, the exit is
    /// recorded and the runtime's state of the container deleted.
    pub(super) fn watch(self: &Arc<Self>, container: &ContainerRecord) {
        let (done, exited) = watch::channel(false);
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).insert(container.id.clone(), exited);
        let (service, id, pid) = (self.clone(), container.id.clone(), container.monitor_pid);
        tokio::spawn(async move {
            monitor_gone(pid, &id).await;
            let _ = done.send(true);
            let lock = service.lock_for(&id);
            let _guard = lock.lock().await;
            if let Err(e) = service.fold_exit(&id).await {
                tracing::warn!(container = %id, error = %e, "cannot record the container's exit");
            }
        });
    }

    /// The monitors berth watches that have not ended.
    pub fn live_monitors(&self) -> usize {
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|gone| !*gone.borrow()).count()
    }

    /// Waits up to `timeout` for the container's monitor to end; true if it has.
    pub(super) async fn wait_exit(&self, container: &ContainerRecord, timeout: Duration) -> bool {
        let exited = self.exits.lock().unwrap_or_else(|p| p.into_inner()).get(&container.id).cloned();
        match exited {
            Some(mut exited) => {
                matches!(tokio::time::timeout(timeout, exited.wait_for(|gone| *gone)).await, Ok(Ok(_)) | Ok(Err(_)))
            }
            None => tokio::time::timeout(timeout, monitor_gone(container.monitor_pid, &container.id)).await.is_ok(),
        }
    }

    /// Records the exit of a container whose monitor has ended, once; the caller
    /// holds the container's lock. Returns the record as it now is.
    pub(super) async fn fold_exit(&self, id: &str) -> Result<Option<ContainerRecord>, ContainerError> {
        let Some(mut container) = record::get(&self.store, id)? else { return Ok(None) };
        if container.state == ContainerState::Exited || is_monitor_of(container.monitor_pid, id) {
            return Ok(Some(container));
        }
        let recorded = read_exit_file(&self.exit_file(id)).ok().flatten();
        // The runtime keeps a stopped container's state (and cgroup) until deleted.
        // Forced: with the monitor lost, the container may still run, unwatched.
        // Before the save, so that the record says whether it is done.
        let deleted = match self.runtime_for(&container) {
            Ok(runtime) => {
                let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "runtime", what = "delete");
                runtime.delete(id, recorded.is_none()).instrument(step).await.map_err(ContainerError::from)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &deleted {
            tracing::warn!(container = %id, error = %e, "cannot delete the exited container from its runtime");
        }
        container.runtime_deleted = deleted.is_ok();
        let changed = match recorded {
            Some(exit) => container.record_exit(exit, "", ""),
            None => container.record_exit(
                ExitRecord { exit_code: LOST_EXIT_CODE, exited_at: crate::time::now_nanos(), oom_killed: false },
                "Unknown",
                "the container's monitor ended without recording its exit",
            ),
        };
        if changed {
            record::save(&self.store, &container)?;
            let exit_code = container.exit.map(|exit| exit.exit_code).unwrap_or_default();
            tracing::info!(container = %id, exit_code, reason = %container.exit_reason(), "container exited");
            self.events.publish(id, &container.sandbox_id, EventKind::Stopped);
            if let Some(sandbox) = self.sandbox_of(&container) {
                self.nri.stop_container(&sandbox, &container).await;
            }
        }
        Ok(Some(container))
    }
}
