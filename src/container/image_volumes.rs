//! Image volumes (kubelet's ImageVolume feature, CRI `Mount.image`): an image
//! from the image service mounted read-only into a container.
//!
//! Each volume's image is leased to `container/<id>/image-volume/<index>` (so
//! RemoveImage cannot collect it while mounted; RemoveContainer releases the
//! container's leases together), its snapshot chain mounted as a read-only
//! overlay at `<run_dir>/image-volumes/<index>`, and that mount, or the
//! `image_sub_path` inside it, bound into the container like any other mount.
//! An overlay of the image's own snapshots costs no copy and no extra disk. In
//! a pod of its own user namespace, the layers are ID-mapped into it.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cri::v1::{ContainerConfig, Mount};

use super::create::lease_holder;
use super::rootfs;
use super::staging::{IMAGE_VOLUMES, StagedMounts, staging_point};
use crate::idmap::PodUserNamespace;
use super::{ContainerError, ContainerService};

/// An image volume as the container record keeps it, for ContainerStatus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    /// The CRI mount's index in `config.mounts`.
    pub mount_index: usize,
    /// `sha256:` + config digest, reported as the mount's `image.image_ref`.
    pub image_id: String,
}

/// Whether `mount` asks for an image rather than a host path.
pub fn is_image_volume(mount: &Mount) -> bool {
    mount.image.as_ref().is_some_and(|image| !image.image.is_empty())
}

/// The request's own rules, checked before anything is made.
pub fn validate(index: usize, mount: &Mount) -> Result<(), ContainerError> {
    let field = |name: &str| format!("config.mounts[{index}].{name}");
    if !is_image_volume(mount) {
        if !mount.image_sub_path.is_empty() {
            return Err(ContainerError::invalid(&field("image_sub_path"), "is set, but the mount names no image"));
        }
        return Ok(());
    }
    if !mount.host_path.is_empty() {
        return Err(ContainerError::invalid(&field("host_path"), "must be empty for an image volume"));
    }
    if !mount.readonly {
        return Err(ContainerError::invalid(&field("readonly"), "an image volume is read-only: set readonly"));
    }
    let sub_path = Path::new(&mount.image_sub_path);
    if sub_path.is_absolute() || sub_path.components().any(|c| c == Component::ParentDir) {
        return Err(ContainerError::invalid(
            &field("image_sub_path"),
            format!("{:?} must be relative to the image's root, without ..", mount.image_sub_path),
        ));
    }
    Ok(())
}

impl ContainerService {
    /// Leases and mounts every image volume of `config`, appending each to
    /// `made` once leased, so a failure part-way is undone by [`unmount_all`]
    /// and the container's lease release.
    pub(super) async fn mount_image_volumes(
        &self,
        id: &str,
        config: &ContainerConfig,
        user: Option<&Arc<PodUserNamespace>>,
        made: &mut Vec<ImageVolume>,
        staged: &mut StagedMounts,
    ) -> Result<(), ContainerError> {
        for (index, mount) in config.mounts.iter().enumerate().filter(|(_, m)| is_image_volume(m)) {
            let requested = mount.image.as_ref().map(|image| image.image.as_str()).unwrap_or_default();
            let holder = format!("{}/image-volume/{index}", lease_holder(id));
            let image = self.images.lease(&holder, requested).await?.ok_or_else(|| {
                ContainerError::invalid(
                    &format!("config.mounts[{index}].image.image"),
                    format!("image {requested:?} is not here: pull it first"),
                )
            })?;
            made.push(ImageVolume { mount_index: index, image_id: image.record.id.clone() });
            let mount_point = staging_point(&self.run_dir(id), IMAGE_VOLUMES, index);
            let links = staging_point(&self.state_dir(id), IMAGE_VOLUMES, index);
            let sub_path = PathBuf::from(&mount.image_sub_path);
            let user = user.cloned();
            let source = tokio::task::spawn_blocking(move || -> Result<PathBuf, ContainerError> {
                rootfs::mount_read_only(&image.lower_dirs, &mount_point, &links, user.as_deref())?;
                sub_path_source(index, &mount_point, &sub_path)
            })
            .await
            .map_err(|e| ContainerError::host("image volume task", e))??;
            staged.insert(index, source);
        }
        Ok(())
    }
}

/// The host path of `sub_path` in the mounted image, its links followed inside
/// the image; it must exist.
fn sub_path_source(index: usize, mount_point: &Path, sub_path: &Path) -> Result<PathBuf, ContainerError> {
    if sub_path.as_os_str().is_empty() {
        return Ok(mount_point.to_path_buf());
    }
    let field = format!("config.mounts[{index}].image_sub_path");
    let source = crate::in_root::host_path(mount_point, sub_path)
        .map_err(|e| ContainerError::invalid(&field, format!("{sub_path:?} cannot be resolved in the image: {e}")))?;
    if std::fs::symlink_metadata(&source).is_err() {
        return Err(ContainerError::invalid(&field, format!("{sub_path:?} does not exist in the image")));
    }
    Ok(source)
}

/// The CRI mounts as ContainerStatus reports them: image volumes carry the
/// ID of the image they were made from.
pub fn reported_mounts(config: &ContainerConfig, volumes: &[ImageVolume]) -> Vec<Mount> {
    let mut mounts = config.mounts.clone();
    for volume in volumes {
        if let Some(image) = mounts.get_mut(volume.mount_index).and_then(|m| m.image.as_mut()) {
            image.image_ref = volume.image_id.clone();
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::ImageSpec;

    fn image_mount(sub_path: &str) -> Mount {
        Mount {
            container_path: "/mnt/image".into(),
            readonly: true,
            image: Some(ImageSpec { image: "busybox".into(), ..Default::default() }),
            image_sub_path: sub_path.into(),
            ..Default::default()
        }
    }

    fn refused_field(mount: Mount) -> String {
        match validate(3, &mount) {
            Err(ContainerError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn image_volumes_are_read_only_and_stay_inside_their_image() {
        assert!(validate(3, &image_mount("")).is_ok());
        assert!(validate(3, &image_mount("etc/ssl")).is_ok());
        assert_eq!(refused_field(Mount { readonly: false, ..image_mount("") }), "config.mounts[3].readonly");
        assert_eq!(refused_field(image_mount("../etc")), "config.mounts[3].image_sub_path");
        assert_eq!(refused_field(image_mount("etc/../../x")), "config.mounts[3].image_sub_path");
        assert_eq!(refused_field(image_mount("/etc")), "config.mounts[3].image_sub_path");
        let both = Mount { host_path: "/tmp".into(), ..image_mount("") };
        assert_eq!(refused_field(both), "config.mounts[3].host_path");
        let no_image = Mount { image: None, host_path: "/tmp".into(), ..image_mount("etc") };
        assert_eq!(refused_field(no_image), "config.mounts[3].image_sub_path");
    }

    #[test]
    fn a_sub_path_resolves_inside_the_image_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path();
        std::fs::create_dir_all(image.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", image.join("config")).unwrap();
        std::os::unix::fs::symlink("../../../../..", image.join("up")).unwrap();
        assert_eq!(sub_path_source(0, image, Path::new("")).unwrap(), image);
        assert_eq!(sub_path_source(0, image, Path::new("config")).unwrap(), image.join("etc"), "links stay in the image");
        assert_eq!(sub_path_source(0, image, Path::new("up/etc")).unwrap(), image.join("etc"), ".. stops at the image");
        let missing = sub_path_source(0, image, Path::new("not-existing")).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }

    #[test]
    fn status_reports_the_image_each_volume_was_made_from() {
        let config = ContainerConfig {
            mounts: vec![Mount { host_path: "/tmp".into(), ..Default::default() }, image_mount("")],
            ..Default::default()
        };
        let mounts = reported_mounts(&config, &[ImageVolume { mount_index: 1, image_id: "sha256:abc".into() }]);
        assert_eq!(mounts[1].image.as_ref().unwrap().image_ref, "sha256:abc");
        assert!(mounts[0].image.is_none());
    }
}
