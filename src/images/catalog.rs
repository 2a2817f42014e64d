//! Image records and the names that point at them, in the metadata store.
//!
//! `images`: image ID (`sha256:` + config digest) -> ImageRecord.
//! `names`: every repo tag and repo digest -> image ID. A tag points at one
//! image at a time; re-pulling a tag that moved re-points it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::error::ImageError;
use super::reference::ImageRef;
use crate::store::{ReadableTable, Store, StoreError, TableDefinition, decode, encode};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("image_names");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub repo_tags: BTreeSet<String>,
    pub repo_digests: BTreeSet<String>,
    /// Content size as containerd counts it: manifest, config and compressed layers.
    pub size: u64,
    /// The manifest (and index, when the reference resolved to one) kept in the content store.
    pub manifest_digest: String,
    pub index_digest: Option<String>,
    /// Chain IDs, bottom layer first; the last one is the image's top snapshot.
    pub chain_ids: Vec<String>,
    /// The config's `User`, for ImageStatus' uid / username.
    pub user: String,
    pub pulled_at: i64,
}

impl ImageRecord {
    pub fn top_chain_id(&self) -> Option<&str> {
        self.chain_ids.last().map(String::as_str)
    }
}

fn open_error(e: redb::TableError) -> Option<ImageError> {
    match e {
        redb::TableError::TableDoesNotExist(_) => None,
        e => Some(StoreError::from(e).into()),
    }
}

pub fn get(store: &Store, id: &str) -> Result<Option<ImageRecord>, ImageError> {
    Ok(store.get_json(IMAGES, id)?)
}

pub fn list(store: &Store) -> Result<Vec<ImageRecord>, ImageError> {
    Ok(store.list_json(IMAGES)?.into_iter().map(|(_, image)| image).collect())
}

fn lookup_name(store: &Store, name: &str) -> Result<Option<String>, ImageError> {
    let txn = store.read()?;
    let table = match txn.open_table(NAMES) {
        Ok(table) => table,
        Err(e) => return open_error(e).map_or(Ok(None), Err),
    };
    Ok(table.get(name).map_err(StoreError::from)?.map(|v| v.value().to_string()))
}

/// How an `ImageSpec.image` named the image; RemoveImage treats a tag differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    Tag(String),
    Digest(String),
    Id,
}

/// Finds the image an `ImageSpec.image` names: a tag, a digest reference, a
/// full ID (with or without `sha256:`), or a unique ID prefix.
pub fn resolve(store: &Store, spec: &str) -> Result<Option<(ImageRecord, Named)>, ImageError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(ImageError::InvalidArgument { field: "image.image", reason: "empty image reference".into() });
    }
    let hex = spec.strip_prefix("sha256:").unwrap_or(spec);
    let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && hex.len() == 64 {
        if let Some(image) = get(store, &format!("sha256:{hex}"))? {
            return Ok(Some((image, Named::Id)));
        }
    }
    if let Ok(reference) = ImageRef::parse(spec) {
        let (name, named) = match reference.digest() {
            Some(digest) => {
                let name = reference.with_digest(digest);
                (name.clone(), Named::Digest(name))
            }
            None => {
                let tag = reference.tagged().unwrap_or_else(|| reference.whole());
                (tag.clone(), Named::Tag(tag))
            }
        };
        if let Some(id) = lookup_name(store, &name)? {
            return Ok(get(store, &id)?.map(|image| (image, named)));
        }
    }
    if is_hex {
        let matches = store.keys_with_prefix(IMAGES, &format!("sha256:{hex}"))?;
        return match matches.as_slice() {
            [] => Ok(None),
            [id] => Ok(get(store, id)?.map(|image| (image, Named::Id))),
            _ => Err(ImageError::Ambiguous { reference: spec.to_string(), count: matches.len() }),
        };
    }
    Ok(None)
}

/// Records a pulled image and points `names` (its tag and repo digest) at it,
/// taking them away from any image that had them, in one transaction.
pub fn commit_pull(store: &Store, mut image: ImageRecord, names: &[String]) -> Result<ImageRecord, ImageError> {
    let txn = store.write()?;
    {
        let mut images = txn.open_table(IMAGES).map_err(StoreError::from)?;
        let mut name_table = txn.open_table(NAMES).map_err(StoreError::from)?;
        if let Some(existing) = images.get(image.id.as_str()).map_err(StoreError::from)? {
            let existing: ImageRecord = decode(&image.id, existing.value())?;
            image.repo_tags.extend(existing.repo_tags);
            image.repo_digests.extend(existing.repo_digests);
        }
        for name in names {
            let previous = name_table.insert(name.as_str(), image.id.as_str()).map_err(StoreError::from)?;
            let previous = previous.map(|v| v.value().to_string());
            if let Some(previous) = previous.filter(|p| *p != image.id) {
                let old = images.get(previous.as_str()).map_err(StoreError::from)?.map(|v| v.value().to_vec());
                if let Some(bytes) = old {
                    let mut old: ImageRecord = decode(&previous, &bytes)?;
                    old.repo_tags.remove(name);
                    old.repo_digests.remove(name);
                    images.insert(previous.as_str(), encode(&old).as_slice()).map_err(StoreError::from)?;
                }
            }
            if name.contains('@') {
                image.repo_digests.insert(name.clone());
            } else {
                image.repo_tags.insert(name.clone());
            }
        }
        images.insert(image.id.as_str(), encode(&image).as_slice()).map_err(StoreError::from)?;
    }
    store.commit(txn)?;
    Ok(image)
}

/// Removes one tag from an image that keeps others.
pub fn untag(store: &Store, image: &ImageRecord, tag: &str) -> Result<(), ImageError> {
    let mut image = image.clone();
    image.repo_tags.remove(tag);
    let txn = store.write()?;
    {
        let mut images = txn.open_table(IMAGES).map_err(StoreError::from)?;
        let mut names = txn.open_table(NAMES).map_err(StoreError::from)?;
        names.remove(tag).map_err(StoreError::from)?;
        images.insert(image.id.as_str(), encode(&image).as_slice()).map_err(StoreError::from)?;
    }
    store.commit(txn)?;
    Ok(())
}

/// Deletes an image and every name pointing at it.
pub fn delete(store: &Store, image: &ImageRecord) -> Result<(), ImageError> {
    let txn = store.write()?;
    {
        let mut images = txn.open_table(IMAGES).map_err(StoreError::from)?;
        let mut names = txn.open_table(NAMES).map_err(StoreError::from)?;
        for name in image.repo_tags.iter().chain(&image.repo_digests) {
            let points_here =
                names.get(name.as_str()).map_err(StoreError::from)?.is_some_and(|v| v.value() == image.id);
            if points_here {
                names.remove(name.as_str()).map_err(StoreError::from)?;
            }
        }
        images.remove(image.id.as_str()).map_err(StoreError::from)?;
    }
    store.commit(txn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id_digit: char) -> ImageRecord {
        ImageRecord {
            id: format!("sha256:{}", id_digit.to_string().repeat(64)),
            repo_tags: BTreeSet::new(),
            repo_digests: BTreeSet::new(),
            size: 1,
            manifest_digest: String::new(),
            index_digest: None,
            chain_ids: vec!["sha256:c".into()],
            user: String::new(),
            pulled_at: 0,
        }
    }

    #[test]
    fn tags_move_and_lookups_work_every_way() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let tag = "docker.io/library/app:latest".to_string();
        let a = commit_pull(
            &store,
            record('a'),
            &[tag.clone(), format!("docker.io/library/app@sha256:{}", "1".repeat(64))],
        )
        .unwrap();
        assert!(a.repo_tags.contains(&tag));

        let (found, named) = resolve(&store, "app").unwrap().unwrap();
        assert_eq!((found.id.as_str(), named), (a.id.as_str(), Named::Tag(tag.clone())));
        assert_eq!(resolve(&store, &a.id).unwrap().unwrap().0.id, a.id);
        assert_eq!(resolve(&store, &"a".repeat(64)).unwrap().unwrap().0.id, a.id);
        assert_eq!(resolve(&store, "aaaa").unwrap().unwrap().0.id, a.id);
        assert_eq!(resolve(&store, &format!("app@sha256:{}", "1".repeat(64))).unwrap().unwrap().0.id, a.id);
        assert!(resolve(&store, "nothere").unwrap().is_none());

        // The tag moves to b; a keeps its digest name only.
        let b = commit_pull(&store, record('b'), std::slice::from_ref(&tag)).unwrap();
        assert_eq!(resolve(&store, "app").unwrap().unwrap().0.id, b.id);
        let a_now = get(&store, &a.id).unwrap().unwrap();
        assert!(a_now.repo_tags.is_empty());
        assert_eq!(a_now.repo_digests.len(), 1);

        let c = commit_pull(&store, record('a').clone(), &[]).unwrap();
        assert_eq!(c.repo_digests.len(), 1, "re-recording an image keeps its names");
        commit_pull(
            &store,
            {
                let mut r = record('c');
                r.id = format!("sha256:a{}", "c".repeat(63));
                r
            },
            &[],
        )
        .unwrap();
        assert!(matches!(resolve(&store, "a"), Err(ImageError::Ambiguous { count: 2, .. })));
        assert_eq!(resolve(&store, "ac").unwrap().unwrap().0.id, format!("sha256:a{}", "c".repeat(63)));

        delete(&store, &b).unwrap();
        assert!(resolve(&store, "app").unwrap().is_none());
        assert!(get(&store, &b.id).unwrap().is_none());
    }
}
