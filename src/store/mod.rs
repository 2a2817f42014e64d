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

    pub fn write(&self) -> Result<redb::WriteTransaction, StoreError> {
        Ok(self.db.begin_write()?)
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

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: key.to_string(), message: e.to_string() })
}
