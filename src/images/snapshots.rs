//! Unpacked layers, one directory per chain ID, in overlayfs "upper dir" form:
//! `<state_root>/snapshots/<id>/fs`. A container's rootfs stacks the `fs` dirs
//! of its image's chain as overlay lowerdirs. Short numeric ids keep overlay
//! mount options short enough for images with many layers.
//!
//! A snapshot is unpacked into `tmp-*`, made durable (syncfs), renamed to its
//! id, and only then recorded; at start, directories without a record (a crash
//! between rename and record) and `tmp-*` leftovers are removed.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::ImageError;
use crate::store::{ReadableTable, Store, StoreError, TableDefinition, encode};

/// chain ID -> SnapshotRecord
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
/// holder (e.g. `container/<id>`) -> chain ID of the snapshot it stands on
const LEASES: TableDefinition<&str, &str> = TableDefinition::new("snapshot_leases");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub parent: Option<String>,
    pub diff_id: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.bytes += other.bytes;
        self.inodes += other.inodes;
    }
}

/// Chain IDs per the OCI image spec: chain(L0) = diff(L0);
/// chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{parent} {diff_id}")))),
        };
        chain.push(next);
    }
    chain
}

pub struct Snapshots {
    root: PathBuf,
    next_id: AtomicU64,
    /// Chain IDs that running pulls are making or about to reference; never collected.
    held: Mutex<HashMap<String, usize>>,
}

/// Releases a pull's hold on its chain when dropped.
pub struct Hold<'a> {
    snapshots: &'a Snapshots,
    chain: Vec<String>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let mut held = self.snapshots.held.lock().unwrap_or_else(|p| p.into_inner());
        for chain_id in &self.chain {
            if let Some(count) = held.get_mut(chain_id) {
                *count -= 1;
                if *count == 0 {
                    held.remove(chain_id);
                }
            }
        }
    }
}

impl Snapshots {
    pub fn open(root: PathBuf, store: &Store) -> Result<Self, ImageError> {
        std::fs::create_dir_all(&root).map_err(|e| ImageError::io(&root, e))?;
        let records = Self::all(store)?;
        let known: HashSet<u64> = records.values().map(|r| r.id).collect();
        let mut max_id = known.iter().copied().max().unwrap_or(0);
        for entry in std::fs::read_dir(&root).map_err(|e| ImageError::io(&root, e))?.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let orphan = match name.parse::<u64>() {
                Ok(id) => {
                    max_id = max_id.max(id);
                    !known.contains(&id)
                }
                Err(_) => name.starts_with("tmp-"),
            };
            if orphan {
                tracing::info!(path = %entry.path().display(), "removing unfinished snapshot");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Snapshots { root, next_id: AtomicU64::new(max_id + 1), held: Mutex::new(HashMap::new()) })
    }

    pub fn all(store: &Store) -> Result<HashMap<String, SnapshotRecord>, ImageError> {
        Ok(store.list_json(SNAPSHOTS)?.into_iter().collect())
    }

    pub fn get(&self, store: &Store, chain_id: &str) -> Result<Option<SnapshotRecord>, ImageError> {
        Ok(store.get_json(SNAPSHOTS, chain_id)?)
    }

    /// Keeps `chain` from being collected until the hold is dropped.
    pub fn hold(&self, chain: &[String]) -> Hold<'_> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for chain_id in chain {
            *held.entry(chain_id.clone()).or_default() += 1;
        }
        Hold { snapshots: self, chain: chain.to_vec() }
    }

    /// A fresh directory to unpack into; its `fs` subdirectory is the layer root.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(&self.root)
            .map_err(|e| ImageError::io(&self.root, e))?;
        std::fs::create_dir(dir.path().join("fs")).map_err(|e| ImageError::io(dir.path(), e))?;
        Ok(dir)
    }

    /// Makes an unpacked layer a snapshot. Blocking: call from a blocking thread.
    pub fn commit(
        &self,
        store: &Store,
        chain_id: &str,
        parent: Option<&str>,
        diff_id: &str,
        unpacked: tempfile::TempDir,
    ) -> Result<SnapshotRecord, ImageError> {
        if let Some(existing) = self.get(store, chain_id)? {
            return Ok(existing);
        }
        let usage = disk_usage(&unpacked.path().join("fs"));
        sync_filesystem(unpacked.path())?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let final_dir = self.root.join(id.to_string());
        let temp = unpacked.keep();
        std::fs::rename(&temp, &final_dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&temp);
            ImageError::io(&final_dir, e)
        })?;
        let record = SnapshotRecord { id, parent: parent.map(str::to_string), diff_id: diff_id.to_string(), usage };
        let txn = store.write()?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(StoreError::from)?;
            table.insert(chain_id, encode(&record).as_slice()).map_err(StoreError::from)?;
        }
        store.commit(txn)?;
        Ok(record)
    }

    pub fn fs_dir(&self, record: &SnapshotRecord) -> PathBuf {
        self.root.join(record.id.to_string()).join("fs")
    }

    /// The `fs` directories of `top` and its ancestors, top first (overlay's
    /// lowerdir order).
    pub fn lower_dirs(&self, store: &Store, top: &str) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::new();
        let mut next = Some(top.to_string());
        while let Some(chain_id) = next {
            let record = self
                .get(store, &chain_id)?
                .ok_or_else(|| ImageError::Internal(format!("snapshot {chain_id} is missing from the store")))?;
            dirs.push(self.fs_dir(&record));
            next = record.parent;
        }
        Ok(dirs)
    }

    /// Records that `holder` (a container) stands on `chain_id`, so the snapshot
    /// outlives the removal of its image.
    pub fn lease(&self, store: &Store, holder: &str, chain_id: &str) -> Result<(), ImageError> {
        let txn = store.write()?;
        {
            let mut table = txn.open_table(LEASES).map_err(StoreError::from)?;
            table.insert(holder, chain_id).map_err(StoreError::from)?;
        }
        store.commit(txn)?;
        Ok(())
    }

    /// Ends `holder`'s lease and those of its parts (`<holder>/...`, a
    /// container's image volumes), in one commit; returns the chain IDs they
    /// stood on.
    pub fn release(&self, store: &Store, holder: &str) -> Result<Vec<String>, ImageError> {
        let txn = store.write()?;
        let released = {
            let mut table = txn.open_table(LEASES).map_err(StoreError::from)?;
            let parts = format!("{holder}/");
            let mut holders = vec![holder.to_string()];
            for row in table.range(parts.as_str()..).map_err(StoreError::from)? {
                let (key, _) = row.map_err(StoreError::from)?;
                if !key.value().starts_with(&parts) {
                    break;
                }
                holders.push(key.value().to_string());
            }
            let mut chains = Vec::new();
            for holder in &holders {
                if let Some(chain) = table.remove(holder.as_str()).map_err(StoreError::from)? {
                    chains.push(chain.value().to_string());
                }
            }
            chains
        };
        store.commit(txn)?;
        Ok(released)
    }

    fn leased(&self, store: &Store) -> Result<Vec<String>, ImageError> {
        let txn = store.read()?;
        let table = match txn.open_table(LEASES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::from(e).into()),
        };
        let mut chains = Vec::new();
        for row in table.iter().map_err(StoreError::from)? {
            let (_, value) = row.map_err(StoreError::from)?;
            chains.push(value.value().to_string());
        }
        Ok(chains)
    }

    /// Forgets every snapshot that no image (`in_use`: each image's top chain
    /// ID), lease or running pull stands on, and returns their directories for
    /// the caller to remove once it has let go of its locks: removing a large
    /// tree takes long, and nothing can name these directories any more (a new
    /// snapshot of the same chain gets a new number). Blocking.
    pub fn collect_garbage(&self, store: &Store, in_use: &[String]) -> Result<Garbage, ImageError> {
        let records = Self::all(store)?;
        let mut keep = HashSet::new();
        let mut tops: Vec<String> = in_use.to_vec();
        tops.extend(self.leased(store)?);
        // The held set is read under its lock, and a pull takes its hold before
        // it commits anything, so nothing it is about to use can be missed.
        let held: Vec<String> = self.held.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        tops.extend(held);
        for top in tops {
            let mut next = Some(top);
            while let Some(chain_id) = next {
                if !keep.insert(chain_id.clone()) {
                    break;
                }
                next = records.get(&chain_id).and_then(|r| r.parent.clone());
            }
        }
        let doomed: Vec<(&String, &SnapshotRecord)> = records.iter().filter(|(id, _)| !keep.contains(*id)).collect();
        if doomed.is_empty() {
            return Ok(Garbage::default());
        }
        let txn = store.write()?;
        {
            let mut table = txn.open_table(SNAPSHOTS).map_err(StoreError::from)?;
            for (chain_id, _) in &doomed {
                table.remove(chain_id.as_str()).map_err(StoreError::from)?;
            }
        }
        store.commit(txn)?;
        // Records go first: a crash before the directories are removed leaves
        // directories without records, which the next start removes.
        Ok(Garbage { dirs: doomed.iter().map(|(_, record)| self.root.join(record.id.to_string())).collect() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Snapshot directories no record names any more, to be removed.
#[derive(Debug, Default)]
#[must_use = "the directories stay on disk until removed"]
pub struct Garbage {
    dirs: Vec<PathBuf>,
}

impl Garbage {
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// Removes the directories. Blocking, and best effort: what is left is
    /// unrecorded, and the next start removes it.
    pub fn remove(self) {
        for dir in self.dirs {
            tracing::debug!(path = %dir.display(), "removing snapshot");
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Bytes (allocated blocks) and inodes under `dir`, each hardlinked inode once.
pub fn disk_usage(dir: &Path) -> Usage {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if seen.insert((meta.dev(), meta.ino())) {
            usage.bytes += meta.blocks() * 512;
            usage.inodes += 1;
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    usage
}

/// One syncfs for a whole layer is far cheaper than an fsync per file.
fn sync_filesystem(dir: &Path) -> Result<(), ImageError> {
    let file = std::fs::File::open(dir).map_err(|e| ImageError::io(dir, e))?;
    use std::os::fd::AsRawFd;
    nix::unistd::syncfs(file.as_raw_fd()).map_err(|e| ImageError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let diffs = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let chain = chain_ids(&diffs);
        assert_eq!(chain[0], "sha256:a");
        let expected = format!("sha256:{}", hex::encode(Sha256::digest("sha256:a sha256:b")));
        assert_eq!(chain[1], expected);
    }

    #[test]
    fn commit_gc_and_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let snapshots = Snapshots::open(dir.path().join("snapshots"), &store).unwrap();
        let commit = |chain: &str, parent: Option<&str>| {
            let tmp = snapshots.temp_dir().unwrap();
            std::fs::write(tmp.path().join("fs/file"), chain).unwrap();
            snapshots.commit(&store, chain, parent, chain, tmp).unwrap()
        };
        let base = commit("sha256:base", None);
        let top = commit("sha256:top", Some("sha256:base"));
        let other = commit("sha256:other", None);
        assert!(snapshots.fs_dir(&top).join("file").exists());
        assert!(base.usage.inodes >= 2);

        // The image stands on top (and so on base); a container leases other.
        snapshots.lease(&store, "container/x", "sha256:other").unwrap();
        assert!(snapshots.collect_garbage(&store, &["sha256:top".into()]).unwrap().is_empty());
        snapshots.release(&store, "container/x").unwrap();
        {
            let _hold = snapshots.hold(&["sha256:other".into()]);
            assert!(snapshots.collect_garbage(&store, &["sha256:top".into()]).unwrap().is_empty());
        }
        let garbage = snapshots.collect_garbage(&store, &["sha256:top".into()]).unwrap();
        assert_eq!(garbage.len(), 1);
        // Forgotten at once, removed when the caller says so (after its locks).
        assert!(!Snapshots::all(&store).unwrap().contains_key("sha256:other"));
        assert!(snapshots.fs_dir(&other).exists());
        garbage.remove();
        assert!(!snapshots.fs_dir(&other).exists());
        assert!(snapshots.fs_dir(&base).exists());

        // A crash leaves a temp dir and a renamed dir without record: both go at start.
        let leftover = snapshots.temp_dir().unwrap().keep();
        let unrecorded = dir.path().join("snapshots/999");
        std::fs::create_dir_all(unrecorded.join("fs")).unwrap();
        drop(snapshots);
        let snapshots = Snapshots::open(dir.path().join("snapshots"), &store).unwrap();
        assert!(!leftover.exists() && !unrecorded.exists());
        assert!(snapshots.fs_dir(&top).exists());
        assert!(snapshots.next_id.load(Ordering::SeqCst) > 999, "ids are never reused");
    }
}
