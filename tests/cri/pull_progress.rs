//! `berth.v1.Images/PullWithProgress`, berth's own progress stream beside the
//! CRI, and `berth pull`'s fallback to CRI PullImage on a runtime without it.

use std::collections::HashMap;

use berth::berth_api::v1::images_client::ImagesClient;
use berth::berth_api::v1::pull_progress::Event;
use berth::berth_api::v1::{LayerState, PullProgress, PullWithProgressRequest};
use berth::cri::v1 as cri;
use berth::cri::v1::image_service_server::{ImageService, ImageServiceServer};
use tonic::{Request, Response, Status};

use crate::support::berth::{berth_binary, output_within};
use crate::support::containers::{Bed, image_spec};
use crate::support::image::{Compression, ImageBuilder, Layer};

async fn pull_events(bed: &Bed, reference: &str) -> Vec<PullProgress> {
    let mut client = ImagesClient::new(bed.berth.channel().await);
    let request = PullWithProgressRequest { image: Some(image_spec(reference)), auth: None };
    let mut stream = client.pull_with_progress(request).await.expect("PullWithProgress").into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await.expect("a progress event") {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn every_layer_is_announced_counted_and_unpacked_then_done() {
    let bed = Bed::bare().await;
    let image = ImageBuilder::busybox()
        .layer(Layer::random(3 << 20, 21), Compression::Gzip)
        .layer(Layer::random(1 << 20, 22), Compression::Zstd)
        .build();
    image.push(&bed.registry, "test/progress", "v1").await;
    let reference = format!("{}/test/progress:v1", bed.registry.host());
    let events = pull_events(&bed, &reference).await;

    let Some(Event::Resolved(resolved)) = &events[0].event else { panic!("first the layers: {:?}", events[0]) };
    let announced: Vec<(String, u64)> = resolved.layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
    let expected: Vec<(String, u64)> =
        image.layers.iter().map(|layer| (layer.digest.clone(), layer.bytes.len() as u64)).collect();
    assert_eq!(announced, expected, "every layer, in order, with its size");

    let sizes: HashMap<String, u64> = expected.into_iter().collect();
    let mut last: HashMap<String, (u64, LayerState)> = HashMap::new();
    let mut unpacking_seen = 0;
    for event in &events[1..events.len() - 1] {
        let Some(Event::Layer(layer)) = &event.event else { panic!("only layer events between: {event:?}") };
        let size = sizes[&layer.digest];
        let (before, _) = last.get(&layer.digest).copied().unwrap_or((0, LayerState::Waiting));
        assert!(layer.downloaded >= before, "bytes never go back: {layer:?} after {before}");
        assert!(layer.downloaded <= size, "never more than the layer: {layer:?}");
        if layer.state() == LayerState::Unpacking {
            assert_eq!(layer.downloaded, size, "unpacking starts once every byte is in");
            unpacking_seen += 1;
        }
        last.insert(layer.digest.clone(), (layer.downloaded, layer.state()));
    }
    assert_eq!(unpacking_seen, 3, "each layer was seen unpacking");
    for (digest, size) in &sizes {
        assert_eq!(last[digest], (*size, LayerState::Unpacked), "{digest} ends unpacked with all its bytes");
    }
    let Some(Event::Done(done)) = &events[events.len() - 1].event else { panic!("last, done: {events:?}") };
    assert_eq!(done.image_ref, image.image_id());
    let request = cri::ImageStatusRequest { image: Some(image_spec(&reference)), verbose: false };
    let status = bed.berth.images().await.image_status(request).await.unwrap().into_inner();
    assert_eq!(status.image.unwrap().id, done.image_ref, "the ID ImageStatus reports");

    // Again: nothing to fetch, every layer already present.
    let events = pull_events(&bed, &reference).await;
    let states: Vec<LayerState> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Layer(layer)) => Some(layer.state()),
            _ => None,
        })
        .collect();
    assert_eq!(states, [LayerState::AlreadyPresent; 3]);
    assert!(matches!(&events.last().unwrap().event, Some(Event::Done(d)) if d.image_ref == image.image_id()));
}

#[tokio::test]
async fn a_failed_pull_ends_the_stream_with_its_status() {
    let bed = Bed::bare().await;
    let mut client = ImagesClient::new(bed.berth.channel().await);
    let missing = format!("{}/test/absent:v1", bed.registry.host());
    let request = PullWithProgressRequest { image: Some(image_spec(&missing)), auth: None };
    let mut stream = client.pull_with_progress(request).await.expect("the stream starts").into_inner();
    let error = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without the pull's error"),
            Err(status) => break status,
        }
    };
    assert_eq!(error.code(), tonic::Code::NotFound, "{error:?}");
    let request = PullWithProgressRequest { image: Some(image_spec("")), auth: None };
    let refused = client.pull_with_progress(request).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
}

/// Another runtime, as far as `berth pull` can tell: the CRI image service
/// only, PullImage answering, berth's own service unknown (UNIMPLEMENTED).
struct OtherRuntime;

const PULLED: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000042";

#[tonic::async_trait]
impl ImageService for OtherRuntime {
    type StreamImagesStream = tokio_stream::Empty<Result<cri::StreamImagesResponse, Status>>;

    async fn stream_images(
        &self,
        _: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        Err(Status::unimplemented("no"))
    }
    async fn list_images(
        &self,
        _: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Err(Status::unimplemented("no"))
    }
    async fn image_status(
        &self,
        _: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        Err(Status::unimplemented("no"))
    }
    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        match request.into_inner().image {
            Some(image) if image.image == "example.com/other:1" => {
                Ok(Response::new(cri::PullImageResponse { image_ref: PULLED.into() }))
            }
            _ => Err(Status::not_found("no such image")),
        }
    }
    async fn remove_image(
        &self,
        _: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(Status::unimplemented("no"))
    }
    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(Status::unimplemented("no"))
    }
}

#[tokio::test]
async fn pull_falls_back_to_pull_image_on_another_runtime() {
    let dir = tempfile::Builder::new().prefix("berth-test-").tempdir().unwrap();
    let socket = dir.path().join("other.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ImageServiceServer::new(OtherRuntime))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    let endpoint = format!("unix://{}", socket.display());
    let pull = move |image: &str| {
        let mut command = std::process::Command::new(berth_binary());
        command.args(["pull", image, "-r", &endpoint]);
        output_within(&mut command)
    };
    let output = tokio::task::spawn_blocking({
        let pull = pull.clone();
        move || pull("example.com/other:1")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("Image is up to date for {PULLED}\n"));
    let output = tokio::task::spawn_blocking(move || pull("example.com/absent:1")).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.starts_with("berth: PullImage: no such image") && stderr.lines().count() == 1, "{stderr}");
    server.abort();
}
