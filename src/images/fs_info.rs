//! The `ImageFsInfo` RPC: what image content really occupies on disk.

use std::path::PathBuf;

use super::error::ImageError;
use super::service::ImageService;
use super::snapshots::{Snapshots, Usage, disk_usage};
use crate::time::now_nanos;

#[derive(Debug, Clone)]
pub struct FsUsage {
    pub timestamp: i64,
    pub mountpoint: PathBuf,
    pub usage: Usage,
}

impl ImageService {
    /// Snapshot usage is measured once, when a layer is committed, so this
    /// costs a table scan and a walk of the (small) manifest/config store,
    /// not a walk of every unpacked file each time kubelet asks.
    pub fn image_fs_info(&self) -> Result<FsUsage, ImageError> {
        let mut usage = disk_usage(self.content.root());
        for record in Snapshots::all(&self.store)?.values() {
            usage += record.usage;
        }
        Ok(FsUsage { timestamp: now_nanos(), mountpoint: self.config.state_root.clone(), usage })
    }
}
