//! glibc malloc, tuned for a long-lived daemon on a small node. Its defaults
//! suit short programs: up to eight arenas per core, each keeping what its
//! threads freed, and a threshold for returning big blocks to the kernel that
//! rises after each one freed, so buffers as large as a pull's come from, and
//! stay in, the heap. Measured by `hack/bench.sh versus`, berth grew from 37 to
//! 59 MiB over 200 pod cycles with the defaults, and from 33 to 43 MiB with
//! these settings. An operator's own `MALLOC_*` variable wins over its setting.

/// Sets malloc's parameters; call first thing in `main`, before any thread.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Two arenas: the workers and the blocking pool share them, rather
        // than each thread keeping an arena of freed memory of its own.
        set("MALLOC_ARENA_MAX", nix::libc::M_ARENA_MAX, 2);
        // Fixed, so they stop adapting upwards: blocks from 128 KiB up are
        // mapped and unmapped on their own, and a heap top of more than
        // 128 KiB free goes back to the kernel.
        set("MALLOC_MMAP_THRESHOLD_", nix::libc::M_MMAP_THRESHOLD, 128 << 10);
        set("MALLOC_TRIM_THRESHOLD_", nix::libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(variable: &str, parameter: nix::libc::c_int, value: nix::libc::c_int) {
    if std::env::var_os(variable).is_some() {
        return;
    }
    // SAFETY: mallopt(3) only changes malloc's tunables; it takes the arena
    // lock itself, and is called before berth starts any thread.
    unsafe {
        nix::libc::mallopt(parameter, value);
    }
}

/// How long after the last call that freed a lot the free memory is handed
/// back: once per burst (kubelet removes pods and images in bursts), not per call.
const QUIET: std::time::Duration = std::time::Duration::from_secs(1);

static TRIM: Trim = Trim { scheduled: std::sync::atomic::AtomicBool::new(false), last: std::sync::Mutex::new(None) };

struct Trim {
    scheduled: std::sync::atomic::AtomicBool,
    last: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// After a call that freed much (a pod or image removed, a pull done): once
/// calls have been quiet for [`QUIET`], returns the free pages inside malloc's
/// heaps to the kernel (`malloc_trim`), which no threshold does for memory
/// below a heap's top. Needs a tokio runtime; does nothing outside one.
pub fn trim_soon() {
    use std::sync::atomic::Ordering;
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    *TRIM.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now());
    if TRIM.scheduled.swap(true, Ordering::AcqRel) {
        return;
    }
    runtime.spawn(async {
        loop {
            let last = *TRIM.last.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.map_or_else(tokio::time::Instant::now, |last| last + QUIET);
            if due <= tokio::time::Instant::now() {
                break;
            }
            tokio::time::sleep_until(due).await;
        }
        // Cleared first: a call that frees more while this trims schedules another.
        TRIM.scheduled.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    });
}

/// `malloc_trim(0)`: a walk of the heaps, a few milliseconds; blocking.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim(3) takes each arena's lock itself and only returns
    // free pages to the kernel; no memory in use is touched.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_calls_trims_once_after_it_is_quiet() {
        for _ in 0..5 {
            trim_soon();
            tokio::time::advance(QUIET / 2).await;
            assert!(TRIM.scheduled.load(std::sync::atomic::Ordering::Acquire), "trimmed during the burst");
        }
        tokio::time::advance(QUIET).await;
        // Let the task see its deadline and hand the trim off.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!TRIM.scheduled.load(std::sync::atomic::Ordering::Acquire), "no trim after the burst");
    }
}
