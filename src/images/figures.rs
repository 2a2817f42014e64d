//! Counters of the pulls this berth has served, for its metrics endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::layer_fetch::Progress;

#[derive(Debug, Default)]
pub struct PullCounters {
    succeeded: AtomicU64,
    failed: AtomicU64,
    /// Compressed layer bytes received from registries, by every pull.
    bytes: AtomicU64,
}

/// The counters as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullFigures {
    pub succeeded: u64,
    pub failed: u64,
    pub bytes: u64,
}

impl PullCounters {
    pub fn count(&self, succeeded: bool) {
        let counter = if succeeded { &self.succeeded } else { &self.failed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what a pull's layers received once it ends, however it ends
    /// (failed, or cancelled by its caller going away).
    pub fn count_bytes_of(&self, progress: Arc<Progress>) -> impl Drop + '_ {
        BytesOnDrop { counters: self, progress }
    }

    pub fn read(&self) -> PullFigures {
        PullFigures {
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

struct BytesOnDrop<'a> {
    counters: &'a PullCounters,
    progress: Arc<Progress>,
}

impl Drop for BytesOnDrop<'_> {
    fn drop(&mut self) {
        self.counters.bytes.fetch_add(self.progress.done.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_when_the_pull_ends() {
        let counters = PullCounters::default();
        let progress = Arc::new(Progress::default());
        {
            let _counting = counters.count_bytes_of(progress.clone());
            progress.done.fetch_add(300, Ordering::Relaxed);
            assert_eq!(counters.read().bytes, 0);
        }
        counters.count(true);
        counters.count(false);
        assert_eq!(counters.read(), PullFigures { succeeded: 1, failed: 1, bytes: 300 });
    }
}
