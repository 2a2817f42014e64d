//! ImageService: translates CRI messages to image-service calls and back.

use std::sync::Arc;

use crate::cri::v1 as cri;
use crate::cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::status_code::to_status;
use crate::daemon::Daemon;
use crate::images::catalog::ImageRecord;
use crate::images::status::{ImageUser, image_user};
use crate::images::{Credentials, ImageError};

type Rpc<T> = Result<Response<T>, Status>;

pub struct ImageApi {
    daemon: Arc<Daemon>,
}

impl ImageApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageApi { daemon }
    }

    fn to_cri(&self, image: ImageRecord) -> cri::Image {
        let (uid, username) = match image_user(&image.user) {
            ImageUser::Uid(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
            ImageUser::Name(name) => (None, name),
            ImageUser::Unset => (None, String::new()),
        };
        let pinned = self.daemon.images().is_pinned(&image);
        cri::Image {
            spec: Some(cri::ImageSpec { image: image.id.clone(), ..Default::default() }),
            id: image.id,
            repo_tags: image.repo_tags.into_iter().collect(),
            repo_digests: image.repo_digests.into_iter().collect(),
            size: image.size,
            uid,
            username,
            pinned,
        }
    }
}

pub(super) fn image_name(spec: Option<&cri::ImageSpec>) -> Result<&str, Status> {
    match spec.map(|s| s.image.as_str()) {
        Some(name) if !name.trim().is_empty() => Ok(name),
        _ => Err(to_status(ImageError::InvalidArgument { field: "image.image", reason: "must not be empty".into() })),
    }
}

pub(super) fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Credentials, Status> {
    match auth {
        None => Ok(Credentials::Anonymous),
        Some(a) => Credentials::from_cri(&a.username, &a.password, &a.auth, &a.identity_token, &a.registry_token)
            .map_err(to_status),
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    type StreamImagesStream = super::list_stream::Responses<cri::StreamImagesResponse>;

    /// ListImages' answer in chunks (list_stream.rs).
    async fn stream_images(&self, request: Request<cri::StreamImagesRequest>) -> Rpc<Self::StreamImagesStream> {
        let filter = request.into_inner().filter;
        let images = self.list_images(Request::new(cri::ListImagesRequest { filter })).await?.into_inner().images;
        Ok(Response::new(super::list_stream::chunked(images, |images| cri::StreamImagesResponse { images })))
    }

    async fn list_images(&self, request: Request<cri::ListImagesRequest>) -> Rpc<cri::ListImagesResponse> {
        let filter = request.get_ref().filter.as_ref().and_then(|f| f.image.as_ref()).map(|s| s.image.as_str());
        let images = self.daemon.images().list_images(filter).map_err(to_status)?;
        Ok(Response::new(cri::ListImagesResponse { images: images.into_iter().map(|i| self.to_cri(i)).collect() }))
    }

    async fn image_status(&self, request: Request<cri::ImageStatusRequest>) -> Rpc<cri::ImageStatusResponse> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let found = self.daemon.images().image_status(name, request.verbose).map_err(to_status)?;
        // An unknown image is an empty answer, not an error (CRI).
        let (image, info) = match found {
            Some(found) => (Some(self.to_cri(found.image)), found.info.into_iter().collect()),
            None => (None, Default::default()),
        };
        Ok(Response::new(cri::ImageStatusResponse { image, info }))
    }

    async fn pull_image(&self, request: Request<cri::PullImageRequest>) -> Rpc<cri::PullImageResponse> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        let credentials = credentials(request.auth.as_ref())?;
        let image = self.daemon.images().pull(name, &credentials).await.map_err(to_status)?;
        Ok(Response::new(cri::PullImageResponse { image_ref: image.id }))
    }

    async fn remove_image(&self, request: Request<cri::RemoveImageRequest>) -> Rpc<cri::RemoveImageResponse> {
        let request = request.into_inner();
        let name = image_name(request.image.as_ref())?;
        self.daemon.images().remove_image(name).await.map_err(to_status)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<cri::ImageFsInfoRequest>) -> Rpc<cri::ImageFsInfoResponse> {
        let fs = self.daemon.images().image_fs_info().map_err(to_status)?;
        let usage = cri::FilesystemUsage {
            timestamp: fs.timestamp,
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: fs.mountpoint.display().to_string() }),
            used_bytes: Some(cri::UInt64Value { value: fs.usage.bytes }),
            inodes_used: Some(cri::UInt64Value { value: fs.usage.inodes }),
        };
        // Containers' writable layers are added here when containers land.
        Ok(Response::new(cri::ImageFsInfoResponse { image_filesystems: vec![usage], container_filesystems: vec![] }))
    }
}
