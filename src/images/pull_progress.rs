//! How a pull goes, for whoever watches it (`berth pull`'s bars, through
//! `berth.v1.Images/PullWithProgress`).
//!
//! Each pull flight reports into one [`PullTracker`]; every caller of that
//! flight, the one that started it or one that joined it, watches the same
//! tracker. Downloads only add to per-layer counters (one atomic add per
//! chunk); a sampler publishes them at most every [`SAMPLE_EVERY`], so a fast
//! pull costs its watchers a few messages, not one per chunk. Phase changes
//! are published at once: there are a handful per layer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

/// At most ten updates a second: smooth enough for a bar and its rate.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerPhase {
    /// Waiting for a download slot.
    Waiting,
    Downloading,
    /// Every byte arrived; the unpack and the snapshot's commit finish.
    Unpacking,
    Unpacked,
    /// Its snapshot was there before the pull: nothing to fetch.
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerView {
    pub digest: String,
    /// Compressed, as the manifest gives it.
    pub size: u64,
    /// Compressed bytes received so far.
    pub downloaded: u64,
    pub phase: LayerPhase,
}

/// A pull as last published: no layers until the manifest is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullView {
    pub layers: Option<Vec<LayerView>>,
}

/// One flight's progress: the published view and the counters the downloads
/// add to.
#[derive(Debug)]
pub struct PullTracker {
    view: watch::Sender<PullView>,
    counters: Mutex<Vec<Arc<AtomicU64>>>,
}

impl Default for PullTracker {
    fn default() -> Self {
        PullTracker { view: watch::Sender::new(PullView::default()), counters: Mutex::new(Vec::new()) }
    }
}

impl PullTracker {
    pub fn subscribe(&self) -> watch::Receiver<PullView> {
        self.view.subscribe()
    }

    /// The manifest is known: `layers` are (digest, size, already present).
    /// Starts afresh, as a mirror that failed is followed by another endpoint.
    pub fn resolved(self: &Arc<Self>, layers: &[(String, u64, bool)]) -> Vec<LayerReport> {
        let counters: Vec<Arc<AtomicU64>> = layers.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
        *lock(&self.counters) = counters.clone();
        let views = layers
            .iter()
            .map(|(digest, size, present)| LayerView {
                digest: digest.clone(),
                size: *size,
                downloaded: 0,
                phase: if *present { LayerPhase::Present } else { LayerPhase::Waiting },
            })
            .collect();
        self.view.send_replace(PullView { layers: Some(views) });
        counters
            .into_iter()
            .enumerate()
            .map(|(index, bytes)| LayerReport { tracker: self.clone(), index, bytes })
            .collect()
    }

    /// Publishes the counters if they moved; nothing when nobody watches.
    fn sample(&self) {
        if self.view.receiver_count() == 0 {
            return;
        }
        let counters = lock(&self.counters).clone();
        self.view.send_if_modified(|view| copy_counters(view, &counters));
    }

    fn set_phase(&self, index: usize, phase: LayerPhase) {
        let counters = lock(&self.counters).clone();
        self.view.send_if_modified(|view| {
            let mut modified = copy_counters(view, &counters);
            if let Some(layer) = view.layers.as_mut().and_then(|layers| layers.get_mut(index)) {
                modified |= layer.phase != phase;
                layer.phase = phase;
            }
            modified
        });
    }

    /// Publishes the counters every [`SAMPLE_EVERY`] until the guard is dropped.
    pub fn start_sampling(self: &Arc<Self>) -> Sampling {
        let tracker = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                match tracker.upgrade() {
                    Some(tracker) => tracker.sample(),
                    None => return,
                }
            }
        });
        Sampling { task }
    }
}

fn copy_counters(view: &mut PullView, counters: &[Arc<AtomicU64>]) -> bool {
    let Some(layers) = view.layers.as_mut() else { return false };
    let mut modified = false;
    for (layer, counter) in layers.iter_mut().zip(counters) {
        let downloaded = counter.load(Ordering::Relaxed);
        if downloaded != layer.downloaded {
            layer.downloaded = downloaded;
            modified = true;
        }
    }
    modified
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops the sampler when dropped.
pub struct Sampling {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sampling {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One layer's part of a pull's progress, handed to its download.
#[derive(Debug, Clone)]
pub struct LayerReport {
    tracker: Arc<PullTracker>,
    index: usize,
    bytes: Arc<AtomicU64>,
}

impl LayerReport {
    pub fn received(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn phase(&self, phase: LayerPhase) {
        self.tracker.set_phase(self.index, phase);
    }
}

/// The trackers of the pulls under way, by flight key. Weak: a tracker lives
/// as long as its flight or a caller holds it, never because of this map.
#[derive(Debug, Default)]
pub struct PullTrackers {
    trackers: Mutex<HashMap<String, Weak<PullTracker>>>,
}

impl PullTrackers {
    /// The tracker of the flight for `key`, or a new one for the flight the
    /// caller is about to start.
    pub fn get_or_create(&self, key: &str) -> Arc<PullTracker> {
        let mut trackers = lock(&self.trackers);
        if let Some(tracker) = trackers.get(key).and_then(Weak::upgrade) {
            return tracker;
        }
        trackers.retain(|_, tracker| tracker.strong_count() > 0);
        let tracker = Arc::new(PullTracker::default());
        trackers.insert(key.to_string(), Arc::downgrade(&tracker));
        tracker
    }

    /// Names `tracker` as the one of `key`'s flight until the guard is dropped
    /// (the flight ended, or was aborted): a caller arriving later starts a new
    /// flight with a new tracker, never watching a finished one.
    pub fn register(self: &Arc<Self>, key: String, tracker: &Arc<PullTracker>) -> Registration {
        lock(&self.trackers).insert(key.clone(), Arc::downgrade(tracker));
        Registration { trackers: self.clone(), key, tracker: Arc::downgrade(tracker) }
    }
}

pub struct Registration {
    trackers: Arc<PullTrackers>,
    key: String,
    tracker: Weak<PullTracker>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut trackers = lock(&self.trackers.trackers);
        if trackers.get(&self.key).is_some_and(|t| t.ptr_eq(&self.tracker)) {
            trackers.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(view: &PullView) -> Vec<(u64, LayerPhase)> {
        view.layers.iter().flatten().map(|l| (l.downloaded, l.phase)).collect()
    }

    #[tokio::test]
    async fn counters_are_published_with_phases_and_samples() {
        let tracker = Arc::new(PullTracker::default());
        let mut watcher = tracker.subscribe();
        let reports = tracker.resolved(&[("sha256:a".into(), 10, false), ("sha256:b".into(), 5, true)]);
        assert_eq!(layers(&watcher.borrow_and_update()), [(0, LayerPhase::Waiting), (0, LayerPhase::Present)]);

        reports[0].phase(LayerPhase::Downloading);
        assert_eq!(layers(&watcher.borrow_and_update())[0], (0, LayerPhase::Downloading));
        reports[0].received(4);
        assert!(!watcher.has_changed().unwrap_or(true), "bytes alone wait for the sampler");
        reports[0].received(6);
        reports[0].phase(LayerPhase::Unpacking);
        assert_eq!(layers(&watcher.borrow_and_update())[0], (10, LayerPhase::Unpacking), "a phase carries the bytes");

        tracker.sample();
        assert!(!watcher.has_changed().unwrap_or(true), "nothing moved: nothing published");
    }

    #[tokio::test]
    async fn a_finished_flights_tracker_is_not_handed_out_again() {
        let trackers = Arc::new(PullTrackers::default());
        let first = trackers.get_or_create("k");
        assert!(Arc::ptr_eq(&first, &trackers.get_or_create("k")), "joiners share it");
        let registration = trackers.register("k".into(), &first);
        drop(registration);
        assert!(!Arc::ptr_eq(&first, &trackers.get_or_create("k")), "after its flight, a new one");
    }
}
