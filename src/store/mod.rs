//! The embedded transactional metadata store (redb). Each domain module defines
//! its own tables; this module opens the database and carries the error type.
//! Values are JSON so that records can grow fields without migrations.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Classify, ErrorKind};

mod named;
pub use named::{NameTable, Named};

pub use redb::{ReadableDatabase, ReadableTable, TableDefinition};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata store: {0}")]
    Db(String),
    #[error("metadata store: corrupt record {key:?}: {message}")]
    Corrupt { key: String, message: String },
}

impl Classify for StoreError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A table of JSON records keyed by string: what every domain table is.
pub type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (or creates) the database; redb repairs it after a crash on open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Database::create(path).map_err(|e| StoreError::Db(format!("{}: {e}", path.display())))?;
        Ok(Store { db })
    }

    pub fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Begins the one write transaction redb allows at a time: this waits for the
    /// previous writer's commit, so it runs off the async workers.
    pub fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        let _step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "store begin write").entered();
        Ok(off_worker(|| self.db.begin_write())?)
    }

    /// Commits `txn`, off the async workers: a commit fsyncs.
    pub fn commit(&self, txn: redb::WriteTransaction) -> Result<(), StoreError> {
        let _step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "store commit").entered();
        Ok(off_worker(|| txn.commit())?)
    }

    /// The JSON record at `key`, if any (a missing table is an empty one).
    pub fn get_json<T: DeserializeOwned>(&self, table: JsonTable, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.read()?;
        let table = match txn.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(key)? {
            Some(value) => Ok(Some(decode(key, value.value())?)),
            None => Ok(None),
        }
    }

    /// Every (key, JSON record) of `table`, in key order.
    pub fn list_json<T: DeserializeOwned>(&self, table: JsonTable) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.read()?;
        let table = match txn.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut rows = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            rows.push((key.value().to_string(), decode(key.value(), value.value())?));
        }
        Ok(rows)
    }

    /// Keys of `table` starting with `prefix`, by a range scan that decodes no
    /// value: how IDs given by a unique prefix are resolved.
    pub fn keys_with_prefix<V: redb::Value + 'static>(
        &self,
        table: TableDefinition<&'static str, V>,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        let txn = self.read()?;
        let table = match txn.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut keys = Vec::new();
        for row in table.range(prefix..)? {
            let (key, _) = row?;
            if !key.value().starts_with(prefix) {
                break;
            }
            keys.push(key.value().to_string());
        }
        Ok(keys)
    }
}

/// Runs `work`, which may block, without stalling the other tasks of the tokio
/// worker it is called on: the worker's queue moves to another thread meanwhile.
/// Outside a multi-threaded runtime (start-up, tests, blocking threads) it just runs.
fn off_worker<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: key.to_string(), message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: JsonTable = TableDefinition::new("test");

    /// A write that waits for another writer's commit must leave the worker free:
    /// on a runtime of one worker, the task that lets the other writer finish
    /// could not run otherwise, and the two would wait on each other for ever.
    #[test]
    fn a_waiting_writer_does_not_hold_its_worker() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = std::sync::Arc::new(Store::open(&dir.path().join("db.redb")).expect("open"));
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");

        let held = store.write().expect("the first writer");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // Only a guard: with the worker free, the release comes at once.
            let by_the_other_task = released.recv_timeout(std::time::Duration::from_secs(20)).is_ok();
            held.commit().expect("commit the first writer");
            by_the_other_task
        });
        let (waiting, started) = std::sync::mpsc::channel::<()>();
        let writer = {
            let store = store.clone();
            runtime.spawn(async move {
                let _ = waiting.send(());
                store.put_json(TABLE, "key", &"value")
            })
        };
        started.recv().expect("the second writer started");
        // Runs only if the second writer's wait left the only worker free.
        let releaser = runtime.spawn(async move {
            let _ = release.send(());
        });
        runtime.block_on(async {
            releaser.await.expect("releaser task");
            writer.await.expect("writer task").expect("second write");
        });
        assert!(holder.join().expect("holder thread"), "the waiting writer held the only worker");
        assert_eq!(store.get_json::<String>(TABLE, "key").expect("read"), Some("value".to_string()));
    }
}
