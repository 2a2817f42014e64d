//! Containers' claims on image snapshots: a container stands on its image's top
//! snapshot (and so on the whole chain) from create to remove, whatever happens
//! to the image meanwhile.

use std::path::PathBuf;

use oci_spec::image::ImageConfiguration;

use super::catalog::{self, ImageRecord};
use super::error::ImageError;
use super::service::ImageService;

/// An image a container now holds: what its rootfs and spec are built from.
pub struct LeasedImage {
    pub record: ImageRecord,
    pub config: ImageConfiguration,
    /// A repo digest when the image has one, else its ID (kubelet's `imageRef`).
    pub reference: String,
    /// The snapshot chain's `fs` directories, top first (overlay's lowerdir order).
    pub lower_dirs: Vec<PathBuf>,
}

impl ImageService {
    /// Resolves `spec` and leases its snapshot chain to `holder`, under the catalog
    /// lock so a concurrent RemoveImage cannot collect the chain in between.
    /// `None` when no such image is here.
    pub async fn lease(&self, holder: &str, spec: &str) -> Result<Option<LeasedImage>, ImageError> {
        let _catalog = self.catalog_lock.lock().await;
        let Some((record, _)) = catalog::resolve(&self.store, spec)? else { return Ok(None) };
        let top = record
            .top_chain_id()
            .ok_or_else(|| ImageError::Unsupported {
                reference: spec.to_string(),
                message: "the image has no layers to make a root filesystem of".into(),
            })?
            .to_string();
        let bytes = self.content.get(&record.id)?;
        let config: ImageConfiguration = serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::Internal(format!("stored config {} does not parse: {e}", record.id)))?;
        let lower_dirs = self.snapshots.lower_dirs(&self.store, &top)?;
        self.snapshots.lease(&self.store, holder, &top)?;
        let reference = record.repo_digests.iter().next().cloned().unwrap_or_else(|| record.id.clone());
        Ok(Some(LeasedImage { record, config, reference, lower_dirs }))
    }

    /// Ends `holder`'s lease and its parts' (`<holder>/...`), and collects the
    /// snapshots nothing stands on any more (those of an image removed while the
    /// container used it). Chains some image still has are left alone without a
    /// collection: the usual case, on every RemoveContainer.
    pub async fn release_lease(&self, holder: &str) -> Result<(), ImageError> {
        let catalog = self.catalog_lock.lock().await;
        let released = self.snapshots.release(&self.store, holder)?;
        if released.is_empty() {
            return Ok(());
        }
        let images = catalog::list(&self.store)?;
        if released.iter().all(|chain| images.iter().any(|image| image.chain_ids.contains(chain))) {
            return Ok(());
        }
        self.collect_garbage_unlocked(catalog).await
    }
}
