//! The `RemoveImage` RPC.

use super::catalog::{self, Named};
use super::error::ImageError;
use super::service::ImageService;

impl ImageService {
    /// Removing one of several tags only untags. Otherwise the image goes, and
    /// with it every snapshot and blob nothing else uses; snapshots a container
    /// stands on stay until that container is removed. Removing what is not
    /// there succeeds, as the CRI requires.
    pub async fn remove_image(&self, spec: &str) -> Result<(), ImageError> {
        let catalog = self.catalog_lock.lock().await;
        let Some((image, named)) = catalog::resolve(&self.store, spec)? else { return Ok(()) };
        if let Named::Tag(tag) = &named
            && image.repo_tags.len() > 1
        {
            catalog::untag(&self.store, &image, tag)?;
            tracing::info!(image = %image.id, tag = %tag, "untagged");
            return Ok(());
        }
        catalog::delete(&self.store, &image)?;
        tracing::info!(image = %image.id, "removed");
        self.collect_garbage_unlocked(catalog).await
    }
}
