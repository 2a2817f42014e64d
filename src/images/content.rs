//! Content-addressed blobs (manifests, indexes, configs) under
//! `<state_root>/content/sha256/<hex>`. A blob is verified against its digest
//! before it is written, and written to a temp file then renamed, so a file at
//! a digest's path always holds exactly that content.
//!
//! Layer blobs are not kept: they are unpacked while they download, and the
//! snapshot is what later pulls reuse (as cri-o does). That saves a full write
//! and the disk space of every compressed layer.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::ImageError;

pub struct ContentStore {
    root: PathBuf,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl ContentStore {
    pub fn open(root: PathBuf) -> Result<Self, ImageError> {
        std::fs::create_dir_all(root.join("sha256")).map_err(|e| ImageError::io(&root, e))?;
        Ok(ContentStore { root })
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| self.root.join("sha256").join(hex))
    }

    /// Stores `bytes` under `digest` after checking they match it.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch { what: "blob".into(), expected: digest.into(), actual });
        }
        let path = self.path(digest).ok_or_else(|| ImageError::io(&self.root, format!("bad digest {digest}")))?;
        if path.exists() {
            return Ok(());
        }
        let dir = self.root.join("sha256");
        let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(|e| ImageError::io(&dir, e))?;
        file.write_all(bytes).map_err(|e| ImageError::io(&path, e))?;
        file.as_file().sync_all().map_err(|e| ImageError::io(&path, e))?;
        file.persist(&path).map_err(|e| ImageError::io(&path, e.error))?;
        Ok(())
    }

    pub fn get(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(digest).ok_or_else(|| ImageError::NotFound(digest.to_string()))?;
        std::fs::read(&path).map_err(|e| ImageError::io(&path, e))
    }

    pub fn remove(&self, digest: &str) {
        if let Some(path) = self.path(digest) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Digests of every stored blob (for garbage collection).
    pub fn list(&self) -> Vec<String> {
        let dir = self.root.join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(|name| format!("sha256:{name}")))
            .filter(|digest| self.path(digest).is_some())
            .collect()
    }

    /// Removes temp files a crash left behind.
    pub fn clean_temp_files(&self) {
        let dir = self.root.join("sha256");
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_str().is_some_and(|name| name.starts_with(".tmp")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_verifies_and_get_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        let digest = sha256_digest(b"hello");
        store.put(&digest, b"hello").unwrap();
        assert_eq!(store.get(&digest).unwrap(), b"hello");
        assert_eq!(store.list(), vec![digest.clone()]);
        let wrong = store.put(&digest, b"evil").unwrap_err();
        assert!(matches!(wrong, ImageError::DigestMismatch { .. }));
        assert_eq!(store.get(&digest).unwrap(), b"hello");
        store.remove(&digest);
        assert!(store.get(&digest).is_err());
    }
}
