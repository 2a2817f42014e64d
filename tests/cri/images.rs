//! The image service against a real registry: pull every format, look images up
//! every way, tags, removal, auth, mirrors, and registries that lie.

use std::path::Path;

use berth::cri::v1::{
    AuthConfig, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest, ListImagesRequest, PullImageRequest,
    RemoveImageRequest,
};
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::image::{BuiltImage, Compression, ImageBuilder, Index, Layer, MediaTypes, Platform};
use crate::support::proxy::RegistryProxy;
use crate::support::registry::Registry;
use crate::support::token_auth::TokenAuthRegistry;

pub fn plain_http(host: &str) -> String {
    format!("[registries.\"{host}\"]\nplain_http = true\n")
}

pub async fn berth_for(registry: &Registry) -> Berth {
    Berth::builder().config(&plain_http(&registry.host())).start().await
}

pub fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec { image: image.to_string(), ..Default::default() })
}

pub async fn pull(berth: &Berth, image: &str) -> Result<String, tonic::Status> {
    pull_with(berth, image, None).await
}

pub async fn pull_with(berth: &Berth, image: &str, auth: Option<AuthConfig>) -> Result<String, tonic::Status> {
    let request = PullImageRequest { image: spec(image), auth, sandbox_config: None };
    berth.images().await.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

pub async fn status(berth: &Berth, image: &str) -> Option<berth::cri::v1::Image> {
    let request = ImageStatusRequest { image: spec(image), verbose: false };
    berth.images().await.image_status(request).await.unwrap().into_inner().image
}

async fn remove(berth: &Berth, image: &str) -> Result<(), tonic::Status> {
    berth.images().await.remove_image(RemoveImageRequest { image: spec(image) }).await.map(|_| ())
}

/// The unpacked layer directories berth holds (`state/snapshots/<id>/fs`).
pub fn snapshot_dirs(berth: &Berth) -> Vec<std::path::PathBuf> {
    let root = berth.paths.state_root.join("snapshots");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Finds `path` (relative) in any snapshot.
pub fn find_in_snapshots(berth: &Berth, path: &str) -> Option<std::path::PathBuf> {
    snapshot_dirs(berth).into_iter().map(|d| d.join("fs").join(path)).find(|p| p.symlink_metadata().is_ok())
}

fn busybox_bytes() -> Vec<u8> {
    std::fs::read("/usr/bin/busybox").expect("busybox-static is installed")
}

async fn push(registry: &Registry, image: &BuiltImage, repo: &str, tag: &str) -> String {
    image.push(registry, repo, tag).await
}

#[tokio::test]
async fn pull_reports_the_image_id_and_unpacks_the_layers() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().user("1002:1003").build();
    let manifest_digest = push(&registry, &image, "test/busybox", "latest").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/busybox", registry.host());

    let id = pull(&berth, &name).await.unwrap();
    assert_eq!(id, image.image_id());

    let unpacked = find_in_snapshots(&berth, "bin/busybox").expect("busybox unpacked into a snapshot");
    assert_eq!(std::fs::read(&unpacked).unwrap(), busybox_bytes());
    let sh = find_in_snapshots(&berth, "bin/sh").unwrap();
    assert_eq!(std::fs::read_link(&sh).unwrap(), Path::new("busybox"));

    let found = status(&berth, &name).await.expect("status by tag");
    assert_eq!(found.id, image.image_id());
    assert_eq!(found.repo_tags, [format!("{name}:latest")]);
    assert_eq!(found.repo_digests, [format!("{name}@{manifest_digest}")]);
    assert_eq!(found.size, image.size());
    assert_eq!(found.uid.map(|u| u.value), Some(1002));
    assert_eq!(found.username, "");
    assert!(!found.pinned);

    // Every way an ImageSpec may name it.
    let hex = image.image_id().trim_start_matches("sha256:").to_string();
    for alias in [
        format!("{name}:latest"),
        format!("{name}@{manifest_digest}"),
        image.image_id().to_string(),
        hex.clone(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..12]),
    ] {
        assert_eq!(status(&berth, &alias).await.map(|i| i.id), Some(image.image_id().to_string()), "{alias}");
    }

    let verbose = ImageStatusRequest { image: spec(&name), verbose: true };
    let info = berth.images().await.image_status(verbose).await.unwrap().into_inner().info;
    let details: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    assert_eq!(details["imageSpec"]["config"]["User"], "1002:1003", "verbose carries the image config");
    assert_eq!(details["chainIDs"].as_array().unwrap().len(), image.layers.len());

    let listed = berth.images().await.list_images(ListImagesRequest::default()).await.unwrap().into_inner().images;
    assert_eq!(listed.len(), 1);
    let filter = ListImagesRequest { filter: Some(ImageFilter { image: spec(&format!("{name}:latest")) }) };
    assert_eq!(berth.images().await.list_images(filter).await.unwrap().into_inner().images.len(), 1);
    let filter = ListImagesRequest { filter: Some(ImageFilter { image: spec("other:latest") }) };
    assert!(berth.images().await.list_images(filter).await.unwrap().into_inner().images.is_empty());
}

#[tokio::test]
async fn every_media_type_and_compression_pulls() {
    let registry = Registry::start().await;
    let cases = [
        ("oci-gzip", MediaTypes::Oci, Compression::Gzip),
        ("oci-zstd", MediaTypes::Oci, Compression::Zstd),
        ("oci-plain", MediaTypes::Oci, Compression::None),
        ("docker-gzip", MediaTypes::Docker, Compression::Gzip),
        ("docker-plain", MediaTypes::Docker, Compression::None),
    ];
    let berth = berth_for(&registry).await;
    for (repo, media_types, compression) in cases {
        let marker = format!("made by {repo}\n");
        let image = ImageBuilder::new()
            .media_types(media_types)
            .layer(Layer::busybox(), compression)
            .layer(Layer::new().file(format!("etc/{repo}"), marker.clone(), 0o644), compression)
            .cmd(["sh"])
            .build();
        push(&registry, &image, &format!("test/{repo}"), "v1").await;
        let id = pull(&berth, &format!("{}/test/{repo}:v1", registry.host())).await.unwrap();
        assert_eq!(id, image.image_id(), "{repo}");
        let file = find_in_snapshots(&berth, &format!("etc/{repo}")).unwrap();
        assert_eq!(std::fs::read_to_string(file).unwrap(), marker, "{repo}");
    }
    // The busybox layer is the same tar whatever the compression: the shared
    // base chain is unpacked once, each top layer once.
    assert_eq!(snapshot_dirs(&berth).len(), 1 + cases.len());
}

#[tokio::test]
async fn an_index_resolves_to_the_host_platform() {
    let registry = Registry::start().await;
    let host = ImageBuilder::busybox().label("platform", "host").build();
    let arm = ImageBuilder::busybox().label("platform", "other").platform("linux", "riscv64", None).build();
    let index = Index::new(MediaTypes::Oci).image(arm.clone()).image(host.clone()).build();
    let index_digest = index.push(&registry, "test/multi", "latest").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/multi", registry.host());

    assert_eq!(pull(&berth, &name).await.unwrap(), host.image_id());
    let found = status(&berth, &name).await.unwrap();
    assert_eq!(found.repo_digests, [format!("{name}@{index_digest}")], "the digest of what the tag resolved to");

    // Docker manifest lists too, and an index with nothing for this host is refused clearly.
    let list =
        Index::new(MediaTypes::Docker).image(ImageBuilder::busybox().media_types(MediaTypes::Docker).build()).build();
    list.push(&registry, "test/list", "latest").await;
    pull(&berth, &format!("{}/test/list", registry.host())).await.unwrap();

    let foreign = Index::new(MediaTypes::Oci).image(arm.clone()).build();
    foreign.push(&registry, "test/foreign", "latest").await;
    let err = pull(&berth, &format!("{}/test/foreign", registry.host())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no manifest for linux/") && err.message().contains("riscv64"), "{}", err.message());
}

#[tokio::test]
async fn pull_by_digest_and_by_tag_plus_digest() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    let digest = push(&registry, &image, "test/pinned", "v1").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/pinned", registry.host());
    assert_eq!(pull(&berth, &format!("{name}@{digest}")).await.unwrap(), image.image_id());
    let found = status(&berth, &format!("{name}@{digest}")).await.unwrap();
    assert!(found.repo_tags.is_empty(), "a digest pull adds no tag");
    assert_eq!(pull(&berth, &format!("{name}:v1@{digest}")).await.unwrap(), image.image_id());
    assert_eq!(status(&berth, &format!("{name}:v1")).await.unwrap().repo_tags, [format!("{name}:v1")]);

    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = pull(&berth, &format!("{name}@{wrong}")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn username_from_a_named_user() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().user("nobody").build();
    push(&registry, &image, "test/named", "latest").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/named", registry.host());
    pull(&berth, &name).await.unwrap();
    let found = status(&berth, &name).await.unwrap();
    assert_eq!(found.username, "nobody");
    assert!(found.uid.is_none());
}

#[tokio::test]
async fn a_moved_tag_moves_to_the_new_image() {
    let registry = Registry::start().await;
    let first = ImageBuilder::busybox().label("v", "1").build();
    let second = ImageBuilder::busybox().label("v", "2").build();
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/moving", registry.host());

    let first_digest = push(&registry, &first, "test/moving", "latest").await;
    assert_eq!(pull(&berth, &name).await.unwrap(), first.image_id());
    push(&registry, &second, "test/moving", "latest").await;
    assert_eq!(pull(&berth, &name).await.unwrap(), second.image_id());

    assert_eq!(status(&berth, &name).await.unwrap().id, second.image_id());
    let old = status(&berth, first.image_id()).await.expect("the old image stays, by ID");
    assert!(old.repo_tags.is_empty());
    assert_eq!(old.repo_digests, [format!("{name}@{first_digest}")]);
}

#[tokio::test]
async fn remove_untags_then_deletes_and_is_idempotent() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/rm", "a").await;
    push(&registry, &image, "test/rm", "b").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/rm", registry.host());
    pull(&berth, &format!("{name}:a")).await.unwrap();
    pull(&berth, &format!("{name}:b")).await.unwrap();
    assert_eq!(status(&berth, image.image_id()).await.unwrap().repo_tags.len(), 2);
    let before = image_fs_bytes(&berth).await;

    remove(&berth, &format!("{name}:a")).await.unwrap();
    let left = status(&berth, image.image_id()).await.expect("one of two tags only untags");
    assert_eq!(left.repo_tags, [format!("{name}:b")]);
    assert!(status(&berth, &format!("{name}:a")).await.is_none());
    assert!(!snapshot_dirs(&berth).is_empty());

    remove(&berth, &format!("{name}:b")).await.unwrap();
    assert!(status(&berth, image.image_id()).await.is_none());
    assert!(snapshot_dirs(&berth).is_empty(), "unused snapshots are deleted: {:?}", snapshot_dirs(&berth));
    assert!(image_fs_bytes(&berth).await < before);

    remove(&berth, &format!("{name}:b")).await.unwrap();
    remove(&berth, image.image_id()).await.unwrap();
    remove(&berth, "never/pulled:x").await.unwrap();
}

#[tokio::test]
async fn remove_by_id_deletes_every_name() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/rmid", "a").await;
    push(&registry, &image, "test/rmid", "b").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/rmid", registry.host());
    pull(&berth, &format!("{name}:a")).await.unwrap();
    pull(&berth, &format!("{name}:b")).await.unwrap();
    remove(&berth, image.image_id()).await.unwrap();
    assert!(status(&berth, &format!("{name}:a")).await.is_none());
    assert!(status(&berth, &format!("{name}:b")).await.is_none());
}

async fn image_fs_bytes(berth: &Berth) -> u64 {
    let info = berth.images().await.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    info.image_filesystems[0].used_bytes.as_ref().unwrap().value
}

#[tokio::test]
async fn image_fs_info_counts_real_bytes_and_inodes() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/fs", "latest").await;
    let berth = berth_for(&registry).await;
    let empty = berth.images().await.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    pull(&berth, &format!("{}/test/fs", registry.host())).await.unwrap();
    let full = berth.images().await.image_fs_info(ImageFsInfoRequest {}).await.unwrap().into_inner();
    let fs = &full.image_filesystems[0];
    let used = fs.used_bytes.as_ref().unwrap().value;
    let before = empty.image_filesystems[0].used_bytes.as_ref().unwrap().value;
    assert!(used >= before + busybox_bytes().len() as u64, "{used} vs {before}");
    assert!(fs.inodes_used.as_ref().unwrap().value > 70, "busybox, its applet links and dirs");
    assert!(fs.timestamp > 1_600_000_000_000_000_000, "nanoseconds");
    assert_eq!(fs.fs_id.as_ref().unwrap().mountpoint, berth.paths.state_root.display().to_string());
}

#[tokio::test]
async fn the_sandbox_image_is_pinned() {
    let registry = Registry::start().await;
    let pause = ImageBuilder::busybox().label("role", "pause").build();
    let other = ImageBuilder::busybox().build();
    push(&registry, &pause, "test/pause", "3.10").await;
    push(&registry, &other, "test/other", "1").await;
    let host = registry.host();
    let berth = Berth::builder()
        .config(&format!("sandbox_image = \"{host}/test/pause:3.10\"\n{}", plain_http(&host)))
        .start()
        .await;
    pull(&berth, &format!("{host}/test/pause:3.10")).await.unwrap();
    pull(&berth, &format!("{host}/test/other:1")).await.unwrap();
    assert!(status(&berth, &format!("{host}/test/pause:3.10")).await.unwrap().pinned);
    assert!(!status(&berth, &format!("{host}/test/other:1")).await.unwrap().pinned);
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_and_unknown_images_empty() {
    let registry = Registry::start().await;
    let berth = berth_for(&registry).await;
    for bad in ["UPPER/case", "bad@sha256:short", "a b", "app:"] {
        let err = pull(&berth, bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains(bad), "names the reference: {}", err.message());
    }
    let err = pull(&berth, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("image.image"));
    let err = berth.images().await.pull_image(PullImageRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    assert!(status(&berth, "never/pulled:1").await.is_none(), "an unknown image is an empty answer");
    let err = pull(&berth, &format!("{}/test/absent:1", registry.host())).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

#[tokio::test]
async fn images_survive_a_restart() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/persist", "latest").await;
    let mut berth = berth_for(&registry).await;
    let name = format!("{}/test/persist", registry.host());
    pull(&berth, &name).await.unwrap();
    berth.restart().await;
    assert_eq!(status(&berth, &name).await.unwrap().id, image.image_id());
    assert!(find_in_snapshots(&berth, "bin/busybox").is_some());
}

// ---- authentication ----

fn basic(user: &str, password: &str) -> Option<AuthConfig> {
    Some(AuthConfig { username: user.into(), password: password.into(), ..Default::default() })
}

#[tokio::test]
async fn basic_auth_with_every_credential_form() {
    let registry = Registry::start_with_htpasswd("alice", "wonderland").await;
    let image = ImageBuilder::busybox().build();
    image.push_with_auth(&registry, "test/private", "latest", "alice", "wonderland").await;
    let berth = berth_for(&registry).await;
    let name = format!("{}/test/private", registry.host());

    let err = pull(&berth, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "anonymous: {err:?}");
    let err = pull_with(&berth, &name, basic("alice", "wrong")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "wrong password: {err:?}");
    assert!(err.message().contains("authentication failed"), "{}", err.message());

    assert_eq!(pull_with(&berth, &name, basic("alice", "wonderland")).await.unwrap(), image.image_id());
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    let encoded = Some(AuthConfig { auth, ..Default::default() });
    assert_eq!(pull_with(&berth, &name, encoded).await.unwrap(), image.image_id());
}

#[tokio::test]
async fn bearer_token_flow_with_password_identity_token_and_registry_token() {
    let auth = TokenAuthRegistry::start("bob", "builder").await;
    let image = ImageBuilder::busybox().build();
    auth.push(&image, "test/bearer", "latest").await;
    let berth = berth_for(auth.registry()).await;
    let name = format!("{}/test/bearer", auth.registry().host());

    let err = pull(&berth, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "anonymous: {err:?}");
    let err = pull_with(&berth, &name, basic("bob", "nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "wrong password: {err:?}");

    assert_eq!(pull_with(&berth, &name, basic("bob", "builder")).await.unwrap(), image.image_id());
    remove(&berth, &name).await.unwrap();

    let identity = Some(AuthConfig { identity_token: auth.identity_token(), ..Default::default() });
    assert_eq!(pull_with(&berth, &name, identity).await.unwrap(), image.image_id());
    assert!(auth.token_requests().refresh_token >= 1, "the identity token was exchanged");
    remove(&berth, &name).await.unwrap();

    let token = Some(AuthConfig { registry_token: auth.mint_token("test/bearer", &["pull"]), ..Default::default() });
    assert_eq!(pull_with(&berth, &name, token).await.unwrap(), image.image_id());
    let bad_identity = Some(AuthConfig { identity_token: "forged".into(), ..Default::default() });
    let err = pull_with(&berth, &name, bad_identity).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
}

// ---- mirrors ----

#[tokio::test]
async fn mirrors_are_tried_first_and_a_dead_mirror_falls_back() {
    let upstream = Registry::start().await;
    let mirror = Registry::start().await;
    let image = ImageBuilder::busybox().label("from", "mirror").build();
    push(&mirror, &image, "test/mirrored", "latest").await;
    // The upstream name is a closed port: only the mirror can answer.
    let closed = closed_port_host();
    let berth = Berth::builder()
        .config(&format!("[registries.\"{closed}\"]\nmirrors = [\"http://{}\"]\n", mirror.host()))
        .start()
        .await;
    let name = format!("{closed}/test/mirrored");
    assert_eq!(pull(&berth, &name).await.unwrap(), image.image_id());
    assert_eq!(status(&berth, &name).await.unwrap().repo_tags, [format!("{name}:latest")], "named as asked");

    // A dead mirror, then the upstream itself.
    let fallback = ImageBuilder::busybox().label("from", "upstream").build();
    push(&upstream, &fallback, "test/fallback", "latest").await;
    let berth = Berth::builder()
        .config(&format!(
            "[registries.\"{host}\"]\nplain_http = true\nmirrors = [\"http://{closed}\"]\n",
            host = upstream.host()
        ))
        .start()
        .await;
    assert_eq!(pull(&berth, &format!("{}/test/fallback", upstream.host())).await.unwrap(), fallback.image_id());
    assert!(berth.log().contains("mirror failed"), "{}", berth.log());
}

#[tokio::test]
async fn credentials_for_a_registry_are_used_for_its_mirror() {
    let mirror = Registry::start_with_htpasswd("carol", "secret").await;
    let image = ImageBuilder::busybox().build();
    image.push_with_auth(&mirror, "test/authmirror", "latest", "carol", "secret").await;
    let closed = closed_port_host();
    let berth = Berth::builder()
        .config(&format!("[registries.\"{closed}\"]\nmirrors = [\"http://{}\"]\n", mirror.host()))
        .start()
        .await;
    let name = format!("{closed}/test/authmirror");
    assert_eq!(pull_with(&berth, &name, basic("carol", "secret")).await.unwrap(), image.image_id());
}

#[tokio::test]
async fn a_pull_only_mirror_serves_content_by_digest_with_its_own_credentials() {
    let upstream = Registry::start().await;
    let mirror = Registry::start_with_htpasswd("dave", "mirror-secret").await;
    let image = ImageBuilder::busybox().label("from", "either").build();
    let digest = push(&upstream, &image, "test/split", "v1").await;
    image.push_with_auth(&mirror, "test/split", "v1", "dave", "mirror-secret").await;
    let (upstream_seen, mirror_seen) = (RegistryProxy::start(&upstream.url()).await, RegistryProxy::start(&mirror.url()).await);
    let mirror_entry = format!(
        "{{ url = \"http://{}\", capabilities = [\"pull\"], username = \"dave\", password = \"mirror-secret\" }}",
        mirror_seen.host()
    );
    let berth = Berth::builder()
        .config(&format!("[registries.\"{}\"]\nmirrors = [{mirror_entry}]\n", upstream_seen.host()))
        .start()
        .await;
    // No credentials in the pull: the mirror's own are what it gets.
    let name = format!("{}/test/split:v1", upstream_seen.host());
    assert_eq!(pull(&berth, &name).await.unwrap(), image.image_id());
    // The tag is resolved by the registry itself, which serves nothing else;
    // the mirror is asked for content by digest only.
    assert!(upstream_seen.count("GET", "/manifests/v1") + upstream_seen.count("HEAD", "/manifests/v1") > 0);
    assert_eq!(upstream_seen.count("GET", "/blobs/"), 0, "{:?}", upstream_seen.requests());
    assert_eq!(mirror_seen.count("GET", "/manifests/v1") + mirror_seen.count("HEAD", "/manifests/v1"), 0);
    assert!(mirror_seen.count("GET", &format!("/manifests/{digest}")) > 0, "{:?}", mirror_seen.requests());
    assert!(mirror_seen.count("GET", "/blobs/") > 0, "{:?}", mirror_seen.requests());
    assert_eq!(status(&berth, &name).await.unwrap().repo_tags, std::slice::from_ref(&name), "named as asked");

    // Never the registry itself: a tag cannot be resolved by anyone, a digest
    // still pulls from the mirror.
    let closed = closed_port_host();
    let berth = Berth::builder()
        .config(&format!("[registries.\"{closed}\"]\nuse_upstream = false\nmirrors = [{mirror_entry}]\n"))
        .start()
        .await;
    let err = pull(&berth, &format!("{closed}/test/split:v1")).await.unwrap_err();
    assert!(err.message().contains("use_upstream"), "{err:?}");
    let pinned = format!("{closed}/test/split@{digest}");
    assert_eq!(pull(&berth, &pinned).await.unwrap(), image.image_id());
}

/// `127.0.0.1:<port>` where nothing listens.
pub fn closed_port_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("127.0.0.1:{port}")
}

// ---- hostile and lying registries ----

#[tokio::test]
async fn hostile_layers_fail_the_pull_and_touch_nothing_outside() {
    let registry = Registry::start().await;
    let berth = berth_for(&registry).await;
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary");
    std::fs::write(&canary, "untouched").unwrap();
    let target = outside.path().display().to_string();
    let climb = "../".repeat(24);
    let cases: Vec<(&str, Layer)> = vec![
        ("absolute", Layer::new().raw_file(format!("{target}/canary"), "owned")),
        ("dotdot", Layer::new().raw_file(format!("{climb}{}/canary", &target[1..]), "owned")),
        ("symlink", Layer::new().raw_symlink("escape", &target).raw_file("escape/canary", "owned")),
        ("hardlink", Layer::new().raw_hardlink("link", format!("{climb}etc/passwd"))),
    ];
    for (repo, layer) in cases {
        let image =
            ImageBuilder::new().layer(Layer::busybox(), Compression::Gzip).layer(layer, Compression::Gzip).build();
        push(&registry, &image, &format!("hostile/{repo}"), "latest").await;
        let err = pull(&berth, &format!("{}/hostile/{repo}", registry.host())).await.unwrap_err();
        assert!(err.message().contains("unsafe"), "{repo}: {err:?}");
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "untouched", "{repo}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1, "{repo}: nothing new outside");
        assert!(status(&berth, &format!("{}/hostile/{repo}", registry.host())).await.is_none());
    }
    // A failed layer aborts its sibling downloads; they clean up as they stop.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let leftovers: Vec<_> =
            snapshot_dirs(&berth).into_iter().filter(|d| d.to_string_lossy().contains("tmp-")).collect();
        if leftovers.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "temp dirs left behind: {leftovers:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_registry_serving_corrupt_blobs_is_caught() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/corrupt", "latest").await;
    let layer = &image.layers[0];
    let mut bytes = layer.bytes.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(registry.blob_data_path(&layer.digest), &bytes).unwrap();
    let berth = berth_for(&registry).await;
    let err = pull(&berth, &format!("{}/test/corrupt", registry.host())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Either the gzip stream breaks or the digest check catches it: the
    // error names the layer either way.
    assert!(err.message().contains(&layer.digest), "{}", err.message());
    assert!(snapshot_dirs(&berth).is_empty(), "nothing committed: {:?}", snapshot_dirs(&berth));
}

#[tokio::test]
async fn a_config_whose_diff_ids_lie_is_caught() {
    let registry = Registry::start().await;
    let honest = ImageBuilder::busybox().build();
    let mut config: serde_json::Value = serde_json::from_slice(&honest.config).unwrap();
    config["rootfs"]["diff_ids"][0] = serde_json::Value::from(format!("sha256:{}", "1".repeat(64)));
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let client = crate::support::image::RegistryClient::new(&registry);
    let config_digest = client.push_blob("test/liar", &config_bytes).await;
    let layer_digest = client.push_blob("test/liar", &honest.layers[0].bytes).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": [{"mediaType": honest.layers[0].media_type, "digest": layer_digest, "size": honest.layers[0].bytes.len()}],
    });
    client
        .push_manifest_raw(
            "test/liar",
            "latest",
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .await;
    let berth = berth_for(&registry).await;
    let err = pull(&berth, &format!("{}/test/liar", registry.host())).await.unwrap_err();
    assert!(err.message().contains("diff ID"), "{err:?}");
    assert!(snapshot_dirs(&berth).is_empty());
}

#[tokio::test]
async fn layers_shared_between_images_are_unpacked_once() {
    let registry = Registry::start().await;
    let base = Layer::busybox();
    let a = ImageBuilder::new()
        .layer(base.clone(), Compression::Gzip)
        .layer(Layer::new().file("a", "a", 0o644), Compression::Gzip)
        .build();
    let b = ImageBuilder::new()
        .layer(base, Compression::Gzip)
        .layer(Layer::new().file("b", "b", 0o644), Compression::Gzip)
        .build();
    push(&registry, &a, "test/a", "latest").await;
    push(&registry, &b, "test/b", "latest").await;
    let berth = berth_for(&registry).await;
    let (name_a, name_b) = (format!("{}/test/a", registry.host()), format!("{}/test/b", registry.host()));
    let (ra, rb) = tokio::join!(pull(&berth, &name_a), pull(&berth, &name_b));
    assert_eq!(ra.unwrap(), a.image_id());
    assert_eq!(rb.unwrap(), b.image_id());
    assert_eq!(snapshot_dirs(&berth).len(), 3, "base once, two tops: {:?}", snapshot_dirs(&berth));
}

#[tokio::test]
async fn a_platform_variant_is_matched() {
    // Index entries may carry a variant; this host's (amd64) has none, arm64 is v8.
    let registry = Registry::start().await;
    let host = ImageBuilder::busybox().build();
    let mut with_variant = Platform::host();
    if with_variant.architecture == "arm64" {
        with_variant.variant = Some("v8".into());
    }
    let index = Index::new(MediaTypes::Oci).image_as(host.clone(), with_variant).build();
    index.push(&registry, "test/variant", "latest").await;
    let berth = berth_for(&registry).await;
    assert_eq!(pull(&berth, &format!("{}/test/variant", registry.host())).await.unwrap(), host.image_id());
}

#[tokio::test]
async fn a_self_signed_registry_needs_skip_verify() {
    let registry = Registry::start_with_tls().await;
    let image = ImageBuilder::busybox().build();
    push(&registry, &image, "test/tls", "latest").await;
    let name = format!("{}/test/tls", registry.host());

    // A loopback registry is spoken to over plain HTTP by default; the error
    // says that this one speaks HTTPS.
    let strict = Berth::start().await;
    let err = pull(&strict, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("seems to speak HTTPS"), "{err:?}");

    let trusting = Berth::builder()
        .config(&format!("[registries.\"{}\"]\ninsecure_skip_verify = true\n", registry.host()))
        .start()
        .await;
    assert_eq!(pull(&trusting, &name).await.unwrap(), image.image_id());
}
