//! Records whose names are reserved: pods (name, namespace, uid, attempt) and
//! containers (pod, name, attempt) may exist once per name. A record table and a
//! name table (name -> ID) change together; the name is claimed first and the
//! record saved last, so a name without a record is what a crash mid-create leaves.

use serde::Serialize;

use super::{JsonTable, ReadableTable, Store, StoreError, TableDefinition, encode};
use crate::ids::{self, Lookup};

pub type NameTable = TableDefinition<'static, &'static str, &'static str>;

/// A record table and the name table that reserves its records' names.
#[derive(Clone, Copy)]
pub struct Named {
    pub records: JsonTable,
    pub names: NameTable,
}

impl Store {
    /// Claims `name` for `id`; returns the current holder instead if it is taken.
    pub fn reserve_name(&self, names: NameTable, name: &str, id: &str) -> Result<Option<String>, StoreError> {
        let txn = self.write()?;
        {
            let mut table = txn.open_table(names)?;
            let holder = table.get(name)?.map(|v| v.value().to_string());
            if holder.is_some() {
                return Ok(holder);
            }
            table.insert(name, id)?;
        }
        self.commit(txn)?;
        Ok(None)
    }

    /// Frees `name` if `id` holds it.
    pub fn release_name(&self, names: NameTable, name: &str, id: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut table = txn.open_table(names)?;
            let ours = table.get(name)?.is_some_and(|v| v.value() == id);
            if ours {
                table.remove(name)?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Reserved names whose record does not exist, as (name, ID).
    pub fn orphan_names(&self, tables: Named) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.read()?;
        let names = match txn.open_table(tables.names) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let records = match txn.open_table(tables.records) {
            Ok(table) => Some(table),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut orphans = Vec::new();
        for row in names.iter()? {
            let (name, id) = row?;
            let exists = match &records {
                Some(records) => records.get(id.value())?.is_some(),
                None => false,
            };
            if !exists {
                orphans.push((name.value().to_string(), id.value().to_string()));
            }
        }
        Ok(orphans)
    }

    pub fn put_json<T: Serialize>(&self, table: JsonTable, key: &str, value: &T) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut table = txn.open_table(table)?;
            table.insert(key, encode(value).as_slice())?;
        }
        self.commit(txn)?;
        Ok(())
    }

    /// Deletes record `id` and frees `name` if it holds it, in one transaction.
    pub fn delete_named(&self, tables: Named, id: &str, name: &str) -> Result<(), StoreError> {
        let txn = self.write()?;
        {
            let mut records = txn.open_table(tables.records)?;
            records.remove(id)?;
            let mut names = txn.open_table(tables.names)?;
            let ours = names.get(name)?.is_some_and(|v| v.value() == id);
            if ours {
                names.remove(name)?;
            }
        }
        self.commit(txn)?;
        Ok(())
    }

    /// The record ID `wanted` names, fully or by a unique prefix.
    pub fn resolve_id(&self, table: JsonTable, wanted: &str) -> Result<Lookup, StoreError> {
        if wanted.is_empty() {
            return Ok(Lookup::NotFound);
        }
        let candidates = self.keys_with_prefix(table, wanted)?;
        Ok(ids::resolve(wanted, candidates.iter().map(String::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: Named = Named { records: TableDefinition::new("things"), names: TableDefinition::new("thing_names") };

    #[test]
    fn names_are_claimed_once_and_orphans_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.reserve_name(TABLES.names, "app", "id1").unwrap(), None);
        assert_eq!(store.reserve_name(TABLES.names, "app", "id2").unwrap(), Some("id1".into()));
        assert_eq!(store.orphan_names(TABLES).unwrap(), vec![("app".to_string(), "id1".to_string())]);
        store.put_json(TABLES.records, "id1", &"record").unwrap();
        assert!(store.orphan_names(TABLES).unwrap().is_empty());
        assert_eq!(store.resolve_id(TABLES.records, "id").unwrap(), Lookup::Found("id1".into()));
        store.release_name(TABLES.names, "app", "id2").unwrap();
        assert_eq!(store.reserve_name(TABLES.names, "app", "id3").unwrap(), Some("id1".into()), "not id2's to free");
        store.delete_named(TABLES, "id1", "app").unwrap();
        assert_eq!(store.get_json::<String>(TABLES.records, "id1").unwrap(), None);
        assert_eq!(store.reserve_name(TABLES.names, "app", "id3").unwrap(), None);
    }
}
