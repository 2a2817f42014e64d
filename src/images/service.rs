//! The image service's state; the RPCs live in `pull.rs`, `status.rs`,
//! `list.rs`, `remove.rs` and `fs_info.rs`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::catalog::{self, ImageRecord};
use super::content::ContentStore;
use super::error::ImageError;
use super::figures::{PullCounters, PullFigures};
use super::pull_progress::PullTrackers;
use super::reference::ImageRef;
use super::single_flight::SingleFlight;
use super::snapshots::{Garbage, Snapshots};
use crate::config::{Config, RegistryConfig};
use crate::store::Store;

pub struct ImageService {
    pub(super) config: Arc<Config>,
    /// What pulls read their registries and mirrors from: `config` with the
    /// registries SIGHUP last loaded.
    registries: std::sync::RwLock<Arc<Config>>,
    pub(super) store: Arc<Store>,
    pub(super) content: ContentStore,
    pub(super) snapshots: Arc<Snapshots>,
    /// One download + unpack per chain ID, whoever asks.
    pub(super) layer_flights: SingleFlight<String, (), ImageError>,
    /// One pull per (reference, credentials), whoever asks.
    pub(super) pull_flights: SingleFlight<String, ImageRecord, ImageError>,
    /// The progress of each pull flight, for callers watching it.
    pub(super) pull_trackers: Arc<PullTrackers>,
    /// Serialises changes to image records and garbage collection, so a pull
    /// never records an image whose snapshots a concurrent removal is deleting.
    /// Held only for metadata transactions, never across downloads.
    pub(super) catalog_lock: tokio::sync::Mutex<()>,
    /// The normalised sandbox image tag, always reported pinned.
    pinned_tag: Option<String>,
    pub(super) pull_counters: PullCounters,
}

impl ImageService {
    pub fn open(config: Arc<Config>, store: Arc<Store>) -> Result<Self, ImageError> {
        let content = ContentStore::open(config.state_root.join("content"))?;
        content.clean_temp_files();
        let snapshots = Arc::new(Snapshots::open(config.state_root.join("snapshots"), &store)?);
        let pinned_tag = ImageRef::parse(&config.sandbox_image).ok().and_then(|r| r.tagged());
        let service = ImageService {
            registries: std::sync::RwLock::new(config.clone()),
            config,
            store,
            content,
            snapshots,
            layer_flights: SingleFlight::default(),
            pull_flights: SingleFlight::default(),
            pull_trackers: Arc::default(),
            catalog_lock: tokio::sync::Mutex::new(()),
            pinned_tag,
            pull_counters: PullCounters::default(),
        };
        // A crash may have left snapshots no image records (a pull that
        // never committed): reclaim them now, while no pull is running.
        service.collect_garbage()?.remove();
        Ok(service)
    }

    /// Pulls from now on use these registries and mirrors; pulls under way
    /// finish with the ones they started with.
    pub fn set_registries(&self, registries: BTreeMap<String, RegistryConfig>) {
        let mut current = self.registries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut config = Config::clone(&current);
        config.registries = registries;
        *current = Arc::new(config);
    }

    /// The configuration a pull starting now resolves its endpoints with.
    pub(super) fn registry_config(&self) -> Arc<Config> {
        self.registries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn is_pinned(&self, image: &ImageRecord) -> bool {
        self.pinned_tag.as_ref().is_some_and(|tag| image.repo_tags.contains(tag))
    }

    pub fn pull_figures(&self) -> PullFigures {
        self.pull_counters.read()
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Deletes blobs and forgets snapshots that no image, lease or running
    /// pull uses; the snapshots' directories are returned, for the caller to
    /// remove after it releases `catalog_lock`, which it holds here (or is
    /// alone, at start). Blocking I/O.
    pub(super) fn collect_garbage(&self) -> Result<Garbage, ImageError> {
        let images = catalog::list(&self.store)?;
        let tops: Vec<String> = images.iter().filter_map(|i| i.top_chain_id().map(str::to_string)).collect();
        let garbage = self.snapshots.collect_garbage(&self.store, &tops)?;
        let mut blobs: std::collections::HashSet<String> = std::collections::HashSet::new();
        for image in &images {
            blobs.insert(image.id.clone());
            blobs.insert(image.manifest_digest.clone());
            blobs.extend(image.index_digest.clone());
        }
        for digest in self.content.list() {
            if !blobs.contains(&digest) {
                self.content.remove(&digest);
            }
        }
        if !garbage.is_empty() {
            tracing::info!(snapshots = garbage.len(), "garbage collected");
        }
        Ok(garbage)
    }

    /// Collects the garbage under `catalog_lock`, then removes the snapshot
    /// directories after releasing it: CreateContainer and pull commits wait
    /// on that lock, and a large tree takes long to remove.
    pub(super) async fn collect_garbage_unlocked(
        &self,
        catalog: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), ImageError> {
        let garbage = tokio::task::block_in_place(|| self.collect_garbage())?;
        drop(catalog);
        if !garbage.is_empty() {
            let _ = tokio::task::spawn_blocking(move || garbage.remove()).await;
        }
        Ok(())
    }
}
