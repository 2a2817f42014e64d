//! The attachment cache: one JSON file per container under the cache dir, like libcni's
//! `/var/lib/cni/results`. It holds everything DEL needs, so a pod can be detached after a
//! restart even if the conf dir changed or emptied since.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::NetworkError;

/// Bumped if the layout changes incompatibly.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CacheEntry {
    pub format: u32,
    pub container_id: String,
    pub if_name: String,
    pub netns: PathBuf,
    /// The network config list as ADD used it (see `NetworkConfigList::to_value`).
    pub config: Value,
    pub cni_args: String,
    /// Every capability value the pod had; each plugin gets the ones it declares.
    pub runtime_config: Map<String, Value>,
    /// The last plugin's result; `None` while ADD runs, so that an entry written ahead of ADD
    /// still lets a crash mid-ADD be cleaned up by DEL.
    pub result: Option<Value>,
}

impl CacheEntry {
    pub fn new(
        container_id: String,
        if_name: String,
        netns: PathBuf,
        config: Value,
        cni_args: String,
        runtime_config: Map<String, Value>,
    ) -> Self {
        CacheEntry { format: FORMAT, container_id, if_name, netns, config, cni_args, runtime_config, result: None }
    }
}

pub(super) struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// Opens the cache, removing temp files a crash mid-write left behind
    /// (the entry they were meant to replace is still whole).
    pub fn new(dir: PathBuf) -> Self {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        ResultCache { dir }
    }

    pub fn path(&self, container_id: &str) -> PathBuf {
        self.dir.join(format!("{container_id}.json"))
    }

    /// The entry for `container_id`, if there is one. The ID must be validated already.
    pub fn read(&self, container_id: &str) -> Result<Option<CacheEntry>, NetworkError> {
        let path = self.path(container_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NetworkError::Cache { path, source }),
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes)
            .map_err(|e| NetworkError::CacheCorrupt { path: path.clone(), reason: e.to_string() })?;
        if entry.format != FORMAT {
            let reason = format!("format {} (this berth reads {FORMAT})", entry.format);
            return Err(NetworkError::CacheCorrupt { path, reason });
        }
        Ok(Some(entry))
    }

    /// Replaces the entry atomically: temp file, rename. The entry written ahead of ADD is
    /// also made durable (fsync of the file, then of the dir): it is what lets DEL release
    /// the pod's address after a power loss, and IPAM allocations outlive a reboot. The
    /// result written after ADD is not: a power loss ends the pod, and its DEL needs no
    /// result, so it is not worth two fsyncs on every pod start.
    pub async fn write(&self, entry: &CacheEntry) -> Result<(), NetworkError> {
        let dir = self.dir.clone();
        let path = self.path(&entry.container_id);
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| NetworkError::Cache { path: path.clone(), source: std::io::Error::other(e) })?;
        let target = path.clone();
        let durable = entry.result.is_none();
        let written = tokio::task::spawn_blocking(move || write_atomically(&dir, &target, &bytes, durable)).await;
        match written {
            Ok(result) => result.map_err(|source| NetworkError::Cache { path, source }),
            Err(join) => Err(NetworkError::Cache { path, source: std::io::Error::other(join) }),
        }
    }

    /// Removes the entry; a missing one is fine (DEL is idempotent).
    pub async fn remove(&self, container_id: &str) -> Result<(), NetworkError> {
        let dir = self.dir.clone();
        let path = self.path(container_id);
        let target = path.clone();
        let removed = tokio::task::spawn_blocking(move || remove_durably(&dir, &target)).await;
        match removed {
            Ok(result) => result.map_err(|source| NetworkError::Cache { path, source }),
            Err(join) => Err(NetworkError::Cache { path, source: std::io::Error::other(join) }),
        }
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Named like no cache entry can be (container IDs never start with '.').
    let mut temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    temp.write_all(bytes)?;
    if durable {
        temp.as_file().sync_all()?;
    }
    temp.persist(path).map_err(|e| e.error)?;
    if durable { sync_dir(dir) } else { Ok(()) }
}

fn remove_durably(dir: &Path, path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes a rename or unlink in `dir` survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> CacheEntry {
        CacheEntry::new(
            "abc".into(),
            "eth0".into(),
            "/run/netns/x".into(),
            json!({"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge"}]}),
            "IgnoreUnknown=1".into(),
            Map::new(),
        )
    }

    #[test]
    fn temp_files_from_a_crash_are_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-abc123"), "half").unwrap();
        std::fs::write(dir.path().join("keep.json"), "{}").unwrap();
        ResultCache::new(dir.path().to_path_buf());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["keep.json"]);
    }

    #[tokio::test]
    async fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path().join("cache"));
        assert_eq!(cache.read("abc").unwrap(), None);
        let mut entry = entry();
        cache.write(&entry).await.unwrap();
        entry.result = Some(json!({"ips": []}));
        cache.write(&entry).await.unwrap();
        assert_eq!(cache.read("abc").unwrap(), Some(entry));
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("cache")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["abc.json"], "no temp file left behind");
        cache.remove("abc").await.unwrap();
        cache.remove("abc").await.unwrap();
        assert_eq!(cache.read("abc").unwrap(), None);
    }

    #[test]
    fn garbage_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("abc.json"), "{").unwrap();
        let cache = ResultCache::new(dir.path().to_path_buf());
        assert!(matches!(cache.read("abc"), Err(NetworkError::CacheCorrupt { .. })));
    }
}
