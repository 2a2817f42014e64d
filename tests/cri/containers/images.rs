//! Images removed while a container uses them: the container keeps its rootfs,
//! and the image's snapshots go once the container is removed.

use std::time::{Duration, Instant};

use berth::cri::v1::{ContainerState, ImageStatusRequest, RemoveImageRequest};

use crate::support::containers::{Bed, WAIT, image_spec, sh, wait_for_line};
use crate::support::image::{Compression, ImageBuilder, Layer};

fn snapshot_dirs(bed: &Bed) -> Vec<std::path::PathBuf> {
    let root = bed.berth.paths.state_root.join("snapshots");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[tokio::test]
async fn removing_an_image_in_use_keeps_the_container_then_frees_the_snapshots() {
    // No busybox image of the bed's own: its layer would be shared.
    let bed = Bed::bare().await;
    let layer = Layer::busybox().file("/hello.txt", "hello from the image\n", 0o644);
    let second = Layer::new().dir("/data", 0o755).file("/data/more.txt", "second layer\n", 0o644);
    let image =
        ImageBuilder::new().layer(layer, Compression::Gzip).layer(second, Compression::Gzip).env(["PATH=/bin"]).build();
    image.push(&bed.registry, "test/solo", "latest").await;
    let reference = format!("{}/test/solo:latest", bed.registry.host());
    let pull = berth::cri::v1::PullImageRequest { image: Some(image_spec(&reference)), ..Default::default() };
    bed.berth.images().await.pull_image(pull).await.unwrap();
    let snapshots = snapshot_dirs(&bed);
    assert_eq!(snapshots.len(), 2, "one snapshot per layer: {snapshots:?}");

    let pod = bed.pod("user").await;
    let config = sh("user", &reference, "echo ready; sleep 1000");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;

    let remove = RemoveImageRequest { image: Some(image_spec(&reference)) };
    bed.berth.images().await.remove_image(remove).await.expect("RemoveImage of an image in use");
    let status = ImageStatusRequest { image: Some(image_spec(&reference)), verbose: false };
    let gone = bed.berth.images().await.image_status(status).await.unwrap().into_inner().image;
    assert!(gone.is_none(), "the image is no longer listed: {gone:?}");

    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerRunning);
    let pid = bed.pid(&id).await;
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    assert_eq!(std::fs::read_to_string(root.join("hello.txt")).unwrap(), "hello from the image\n");
    assert_eq!(std::fs::read_to_string(root.join("data/more.txt")).unwrap(), "second layer\n");
    assert!(snapshots.iter().all(|s| s.exists()), "snapshots in use were collected");

    bed.stop(&id, 0).await.unwrap();
    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerExited);
    assert!(snapshots.iter().all(|s| s.exists()), "an exited container still holds its snapshots");
    bed.remove(&id).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while snapshots.iter().any(|s| s.exists()) {
        assert!(Instant::now() < deadline, "snapshots left after the container went: {:?}", snapshot_dirs(&bed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(snapshot_dirs(&bed).is_empty(), "{:?}", snapshot_dirs(&bed));
}
