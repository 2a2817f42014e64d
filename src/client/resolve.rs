//! IDs given by a unique prefix, for any runtime: berth resolves prefixes
//! itself, other runtimes may not, so the client resolves them through the
//! List calls as crictl does.

use crate::cri::v1::{ImageSpec, ImageStatusRequest, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest};

use super::connect::Cri;
use super::error::ClientError;

pub async fn container(cri: &Cri, wanted: &str) -> Result<String, ClientError> {
    let listed =
        cri.call("ListContainers", cri.runtime().list_containers(ListContainersRequest { filter: None })).await?;
    unique("container", "ps -a", wanted, listed.containers.into_iter().map(|c| c.id))
}

pub async fn pod(cri: &Cri, wanted: &str) -> Result<String, ClientError> {
    let listed =
        cri.call("ListPodSandbox", cri.runtime().list_pod_sandbox(ListPodSandboxRequest { filter: None })).await?;
    unique("pod", "pods", wanted, listed.items.into_iter().map(|p| p.id))
}

/// An image by any name ImageStatus knows (tag, digest, ID), else by a
/// prefix of its ID.
pub async fn image(cri: &Cri, wanted: &str) -> Result<String, ClientError> {
    let spec = ImageSpec { image: wanted.to_string(), ..Default::default() };
    let request = ImageStatusRequest { image: Some(spec), verbose: false };
    if let Some(image) = cri.call("ImageStatus", cri.images().image_status(request)).await?.image {
        return Ok(image.id);
    }
    let listed = cri.call("ListImages", cri.images().list_images(ListImagesRequest { filter: None })).await?;
    let bare = |id: &str| id.split_once(':').map_or(id, |(_, hex)| hex).to_string();
    let wanted_bare = bare(wanted);
    let ids = listed.images.into_iter().map(|i| i.id);
    let matches: Vec<String> = ids.filter(|id| id.starts_with(wanted) || bare(id).starts_with(&wanted_bare)).collect();
    one("image", "images", wanted, matches)
}

fn unique(
    kind: &'static str,
    list: &'static str,
    wanted: &str,
    ids: impl Iterator<Item = String>,
) -> Result<String, ClientError> {
    let ids: Vec<String> = ids.collect();
    // A full ID is itself even when it also prefixes a longer one.
    if ids.iter().any(|id| id == wanted) {
        return Ok(wanted.to_string());
    }
    one(kind, list, wanted, ids.into_iter().filter(|id| !wanted.is_empty() && id.starts_with(wanted)).collect())
}

fn one(kind: &'static str, list: &'static str, wanted: &str, mut matches: Vec<String>) -> Result<String, ClientError> {
    match matches.len() {
        0 => Err(ClientError::NotFound { kind, id: wanted.to_string(), list }),
        1 => Ok(matches.remove(0)),
        count => Err(ClientError::Ambiguous { kind, id: wanted.to_string(), count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> impl Iterator<Item = String> {
        ids.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn prefixes_resolve_when_unique() {
        assert_eq!(unique("pod", "pods", "ab", ids(&["abc", "def"])).ok().as_deref(), Some("abc"));
        assert!(matches!(
            unique("pod", "pods", "a", ids(&["abc", "abd"])),
            Err(ClientError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(unique("pod", "pods", "x", ids(&["abc"])), Err(ClientError::NotFound { .. })));
        assert!(matches!(unique("pod", "pods", "", ids(&["abc"])), Err(ClientError::NotFound { .. })));
        assert_eq!(unique("pod", "pods", "ab", ids(&["ab", "abc"])).ok().as_deref(), Some("ab"));
    }
}
