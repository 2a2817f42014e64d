//! The `ListImages` RPC.

use super::catalog::{self, ImageRecord};
use super::error::ImageError;
use super::service::ImageService;

impl ImageService {
    /// Every image, or only the one `filter` names (by tag, digest or ID).
    pub fn list_images(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        match filter.map(str::trim).filter(|f| !f.is_empty()) {
            None => catalog::list(&self.store),
            Some(spec) => Ok(catalog::resolve(&self.store, spec)?.map(|(image, _)| image).into_iter().collect()),
        }
    }
}
