//! The `ImageStatus` RPC, and the user an image runs as by default.

use std::collections::BTreeMap;

use super::catalog::{self, ImageRecord};
use super::error::ImageError;
use super::service::ImageService;

/// The image's default user, as ImageStatus reports it: a numeric `User`
/// (`"1002"` or `"1002:1003"`) is a uid, anything else a user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageUser {
    Uid(i64),
    Name(String),
    Unset,
}

pub fn image_user(user: &str) -> ImageUser {
    let name = user.split(':').next().unwrap_or_default();
    if name.is_empty() {
        return ImageUser::Unset;
    }
    match name.parse::<i64>() {
        Ok(uid) => ImageUser::Uid(uid),
        Err(_) => ImageUser::Name(name.to_string()),
    }
}

pub struct ImageStatus {
    pub image: ImageRecord,
    /// Verbose only: JSON details keyed by topic.
    pub info: BTreeMap<String, String>,
}

impl ImageService {
    /// The image `spec` names, if present; `verbose` adds its config and chain as JSON.
    pub fn image_status(&self, spec: &str, verbose: bool) -> Result<Option<ImageStatus>, ImageError> {
        let Some((image, _)) = catalog::resolve(&self.store, spec)? else { return Ok(None) };
        let mut info = BTreeMap::new();
        if verbose {
            let config: serde_json::Value =
                self.content.get(&image.id).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            let details = serde_json::json!({
                "imageSpec": config,
                "chainID": image.top_chain_id(),
                "chainIDs": image.chain_ids,
                "manifestDigest": image.manifest_digest,
                "indexDigest": image.index_digest,
                "pulledAt": image.pulled_at,
            });
            info.insert("info".to_string(), details.to_string());
        }
        Ok(Some(ImageStatus { image, info }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms() {
        assert_eq!(image_user("1002"), ImageUser::Uid(1002));
        assert_eq!(image_user("1002:1003"), ImageUser::Uid(1002));
        assert_eq!(image_user("nobody"), ImageUser::Name("nobody".into()));
        assert_eq!(image_user("nobody:nogroup"), ImageUser::Name("nobody".into()));
        assert_eq!(image_user(""), ImageUser::Unset);
    }
}
