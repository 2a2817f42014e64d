//! ImageService: translates CRI messages to image-store calls and back.

use std::sync::Arc;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::status_code::not_implemented;
use crate::daemon::Daemon;

type Rpc<T> = Result<Response<T>, Status>;

pub struct ImageApi {
    #[allow(dead_code)] // used once the image service lands
    daemon: Arc<Daemon>,
}

impl ImageApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageApi { daemon }
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(&self, _: Request<cri::ListImagesRequest>) -> Rpc<cri::ListImagesResponse> {
        Err(not_implemented("ListImages"))
    }

    async fn image_status(&self, _: Request<cri::ImageStatusRequest>) -> Rpc<cri::ImageStatusResponse> {
        Err(not_implemented("ImageStatus"))
    }

    async fn pull_image(&self, _: Request<cri::PullImageRequest>) -> Rpc<cri::PullImageResponse> {
        Err(not_implemented("PullImage"))
    }

    async fn remove_image(&self, _: Request<cri::RemoveImageRequest>) -> Rpc<cri::RemoveImageResponse> {
        Err(not_implemented("RemoveImage"))
    }

    async fn image_fs_info(&self, _: Request<cri::ImageFsInfoRequest>) -> Rpc<cri::ImageFsInfoResponse> {
        Err(not_implemented("ImageFsInfo"))
    }
}
