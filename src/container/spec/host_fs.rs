//! Filesystem calls on the host paths a request names (hostPath mounts, devices),
//! each run on a thread of its own that is abandoned past a bound. An NFS or CIFS
//! server gone away, or a FUSE daemon that stopped answering, holds such a call in
//! the kernel for as long as it likes; it must hold neither CreateContainer nor
//! the node's other calls with it (containerd#10828). A path whose earlier call is
//! still stuck is refused at once, so kubelet's retries do not pile up threads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::SpecError;

/// How long one call on a host path may take. A healthy filesystem answers in
/// microseconds; a remote one that is slow but alive, in well under this.
pub const HOST_PATH_TIMEOUT: Duration = Duration::from_secs(10);

/// Abandoned calls still stuck, by path.
static STUCK: Mutex<BTreeMap<PathBuf, usize>> = Mutex::new(BTreeMap::new());

fn stuck() -> MutexGuard<'static, BTreeMap<PathBuf, usize>> {
    // A poisoned map is still a map: the counts stay meaningful.
    STUCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(PartialEq)]
enum CallState {
    Running,
    Abandoned,
    Finished,
}

/// Runs `work`, which touches `path`, for at most `timeout`.
pub fn bounded<T: Send + 'static>(
    path: &Path,
    timeout: Duration,
    work: impl FnOnce() -> Result<T, SpecError> + Send + 'static,
) -> Result<T, SpecError> {
    let hung = |earlier| SpecError::HostPathHung { path: path.display().to_string(), timeout, earlier };
    if stuck().get(path).is_some_and(|count| *count > 0) {
        return Err(hung(true));
    }
    let state = Arc::new(Mutex::new(CallState::Running));
    let (send, receive) = sync_channel(1);
    let thread_state = state.clone();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new().name("berth-host-path".into()).spawn(move || {
        let result = work();
        let mut state = thread_state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if *state == CallState::Abandoned {
            let mut map = stuck();
            if let Some(count) = map.get_mut(&owned) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    map.remove(&owned);
                }
            }
            tracing::info!(path = %owned.display(), "a host path call abandoned earlier has returned");
        }
        *state = CallState::Finished;
        let _ = send.send(result);
    });
    if let Err(e) = spawned {
        return Err(SpecError::io(format!("a thread for {}", path.display()), e));
    }
    match receive.recv_timeout(timeout) {
        Ok(result) => result,
        Err(RecvTimeoutError::Disconnected) => {
            Err(SpecError::io(path.display().to_string(), std::io::Error::other("its thread ended without an answer")))
        }
        Err(RecvTimeoutError::Timeout) => {
            let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if *state == CallState::Finished {
                // It answered as the bound passed: the answer is in the channel.
                drop(state);
                return receive.recv().unwrap_or_else(|_| Err(hung(false)));
            }
            *state = CallState::Abandoned;
            *stuck().entry(path.to_path_buf()).or_default() += 1;
            tracing::warn!(path = %path.display(), ?timeout, "a call on a host path hangs; abandoned on its thread");
            Err(hung(false))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_within_the_bound_is_returned() {
        let result = bounded(Path::new("/quick"), Duration::from_secs(60), || Ok(7));
        assert_eq!(result.expect("the answer"), 7);
    }

    /// A call that never returns (here: until the test lets it) fails the caller
    /// at the bound, and makes later calls on its path fail at once, until it
    /// returns.
    #[test]
    fn a_hung_call_is_abandoned_and_its_path_refused_until_it_returns() {
        let path = Path::new("/hung/for/this/test");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (returned, has_returned) = std::sync::mpsc::channel::<()>();
        let first = bounded(path, Duration::from_millis(50), move || {
            let _ = released.recv();
            let _ = returned.send(());
            Ok(())
        });
        assert!(matches!(first, Err(SpecError::HostPathHung { earlier: false, .. })), "{first:?}");
        let second = bounded(path, Duration::from_secs(60), || Ok(()));
        assert!(matches!(second, Err(SpecError::HostPathHung { earlier: true, .. })), "{second:?}");
        let _ = release.send(());
        has_returned.recv().expect("the hung call returned");
        // The count drops just after `returned` is sent; wait for it, bounded.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while stuck().contains_key(path) {
            assert!(std::time::Instant::now() < deadline, "the path stayed marked as hung");
            std::thread::yield_now();
        }
        assert!(bounded(path, Duration::from_secs(60), || Ok(())).is_ok());
    }
}
