//! Pulls under duress, observed from the outside through a proxy between berth
//! and the registry: identical concurrent pulls, stalls, cancellation, and a
//! berth killed mid-pull.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::images::{find_in_snapshots, plain_http, pull, snapshot_dirs, spec, status};
use crate::support::berth::Berth;
use crate::support::image::{BuiltImage, Compression, ImageBuilder, Layer};
use crate::support::proxy::{RegistryProxy, Rule};
use crate::support::registry::Registry;

/// Polls `condition` until it holds; panics with `what` after a generous bound.
/// (A wait for an event, not a timing assertion.)
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What berth logs when a pull joins an identical one already under way.
const JOINED: &str = "joining the flight already under way";

fn temp_dirs(berth: &Berth) -> Vec<std::path::PathBuf> {
    snapshot_dirs(berth)
        .into_iter()
        .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tmp-")))
        .collect()
}

/// An image whose second layer is big enough to be caught mid-download.
fn big_image() -> BuiltImage {
    ImageBuilder::new()
        .layer(Layer::busybox(), Compression::Gzip)
        .layer(Layer::random(8 << 20, 42), Compression::Gzip)
        .cmd(["sh"])
        .build()
}

struct Setup {
    _registry: Registry,
    proxy: RegistryProxy,
    berth: Berth,
    name: String,
}

async fn setup(image: &BuiltImage, repo: &str, extra_config: &str) -> Setup {
    let registry = Registry::start().await;
    image.push(&registry, repo, "latest").await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let berth = Berth::builder().config(&format!("{extra_config}\n{}", plain_http(&proxy.host()))).start().await;
    let name = format!("{}/{repo}:latest", proxy.host());
    Setup { _registry: registry, proxy, berth, name }
}

#[tokio::test]
async fn identical_concurrent_pulls_fetch_every_blob_once() {
    let image = ImageBuilder::new()
        .layer(Layer::busybox(), Compression::Gzip)
        .layer(Layer::random(1 << 20, 7), Compression::Zstd)
        .build();
    let s = setup(&image, "test/herd", "").await;
    s.proxy.set_rule(Rule::Throttle { path_contains: "/blobs/".into(), bytes_per_sec: 4 << 20 });
    let pulls: Vec<_> = (0..5).map(|_| pull(&s.berth, &s.name)).collect();
    for result in futures::future::join_all(pulls).await {
        assert_eq!(result.unwrap(), image.image_id());
    }
    for digest in image.layer_digests().iter().chain([&image.config_digest]) {
        assert_eq!(s.proxy.blob_gets(digest), 1, "blob {digest} fetched once");
    }
    assert_eq!(s.proxy.count("GET", "/manifests/"), 1, "one manifest request");

    // A second pull of what is already there moves no blob at all.
    pull(&s.berth, &s.name).await.unwrap();
    for digest in image.layer_digests() {
        assert_eq!(s.proxy.blob_gets(&digest), 1, "layer {digest} not fetched again");
    }
    assert_eq!(s.proxy.blob_gets(&image.config_digest), 1, "config not fetched again");
}

#[tokio::test]
async fn a_stalled_registry_fails_the_pull_instead_of_hanging() {
    let image = big_image();
    let s = setup(&image, "test/stall", "[images]\nstall_timeout = \"2s\"").await;

    s.proxy.set_rule(Rule::StallBody { path_contains: "/blobs/".into(), after_bytes: 4096 });
    let err = pull(&s.berth, &s.name).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("no progress"), "{}", err.message());
    eventually("the half-unpacked layer is removed", || temp_dirs(&s.berth).is_empty()).await;

    s.proxy.set_rule(Rule::StallHeaders { path_contains: "/manifests/".into() });
    let err = pull(&s.berth, &s.name).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");

    s.proxy.set_rule(Rule::PassThrough);
    assert_eq!(pull(&s.berth, &s.name).await.unwrap(), image.image_id(), "works once the registry recovers");
}

#[tokio::test]
async fn a_cancelled_pull_stops_its_download() {
    let image = big_image();
    let s = setup(&image, "test/cancel", "").await;
    s.proxy.set_rule(Rule::Throttle { path_contains: "/blobs/".into(), bytes_per_sec: 512 << 10 });

    let mut client = s.berth.images().await;
    let request = berth::cri::v1::PullImageRequest { image: spec(&s.name), ..Default::default() };
    let call = tokio::spawn(async move { client.pull_image(request).await });
    // The config blob streams first: wait for the big layer's own download.
    let big_layer = &image.layer_digests()[1];
    let big_layer_requested = || s.proxy.requests().iter().any(|r| r.path.ends_with(big_layer.as_str()));
    eventually("the big layer's download is under way", || big_layer_requested() && s.proxy.active_body_streams() > 0)
        .await;
    call.abort();
    let _ = call.await;

    eventually("berth drops the download", || s.proxy.active_body_streams() == 0).await;
    eventually("its temp dir is removed", || temp_dirs(&s.berth).is_empty()).await;
    assert!(status(&s.berth, &s.name).await.is_none());
    let record = s.proxy.requests().into_iter().find(|r| r.path.ends_with(big_layer.as_str())).unwrap();
    assert!(!record.body_complete, "the big layer was not downloaded to the end");
}

#[tokio::test]
async fn a_pull_another_caller_waits_on_survives_one_cancel() {
    let image = big_image();
    let s = setup(&image, "test/shared", "").await;
    // Slow enough that the second pull joins long before the download ends.
    s.proxy.set_rule(Rule::Throttle { path_contains: "/blobs/".into(), bytes_per_sec: 1 << 20 });

    let mut leaver = s.berth.images().await;
    let request = berth::cri::v1::PullImageRequest { image: spec(&s.name), ..Default::default() };
    let leaving = tokio::spawn(async move { leaver.pull_image(request).await });
    eventually("the download is under way", || s.proxy.active_body_streams() > 0).await;
    let staying = pull(&s.berth, &s.name);
    let (_, result) = tokio::join!(
        async {
            // The leaver goes only once the other pull waits on its flight.
            eventually("the second pull joins the first", || s.berth.log().contains(JOINED)).await;
            leaving.abort();
        },
        staying
    );
    assert_eq!(result.unwrap(), image.image_id());
    assert_eq!(s.berth.log().matches(JOINED).count(), 1, "one pull joined another");
    assert_eq!(s.proxy.blob_gets(&image.layer_digests()[1]), 1, "the download went on, not again");
}

#[tokio::test]
async fn berth_killed_mid_pull_recovers_and_pulls_again() {
    let image = big_image();
    let mut s = setup(&image, "test/crash", "").await;
    s.proxy.set_rule(Rule::Throttle { path_contains: "/blobs/".into(), bytes_per_sec: 512 << 10 });
    let mut client = s.berth.images().await;
    let request = berth::cri::v1::PullImageRequest { image: spec(&s.name), ..Default::default() };
    let call = tokio::spawn(async move { client.pull_image(request).await });
    eventually("a layer is being unpacked", || !temp_dirs(&s.berth).is_empty()).await;
    s.berth.kill();
    let _ = call.await;

    s.proxy.set_rule(Rule::PassThrough);
    s.berth.restart().await;
    assert!(temp_dirs(&s.berth).is_empty(), "the unfinished layer was removed at start");
    assert!(status(&s.berth, &s.name).await.is_none(), "no half-pulled image is listed");
    assert_eq!(pull(&s.berth, &s.name).await.unwrap(), image.image_id());
    let random = find_in_snapshots(&s.berth, "random-42.bin").expect("the big layer is unpacked");
    assert_eq!(std::fs::metadata(random).unwrap().len(), 8 << 20);
}

#[tokio::test]
async fn a_schema1_manifest_is_refused_with_a_reason() {
    let image = ImageBuilder::busybox().build();
    let s = setup(&image, "test/old", "").await;
    let schema1 =
        br#"{"schemaVersion":1,"name":"test/old","tag":"latest","architecture":"amd64","fsLayers":[],"history":[]}"#;
    s.proxy.set_rule(Rule::Respond {
        path_contains: "/manifests/".into(),
        status: 200,
        content_type: "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
        body: schema1.to_vec(),
    });
    let err = pull(&s.berth, &s.name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("schema1"), "{}", err.message());
}
