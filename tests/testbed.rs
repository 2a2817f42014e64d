//! Tests of the test bed itself: the throw-away registry and the image builder
//! that the rest of the suite stands on.

mod support;

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;
use support::image::{
    Compression, FileEntry, ImageBuilder, Index, Layer, MediaTypes, Platform, RegistryClient, media_type, sha256_digest,
};
use support::registry::Registry;
use support::token_auth::{
    self, TokenAuthRegistry, TokenRequestCounts, TokenRequestKind, encode_form, parse_bearer_challenge,
};

/// What one tar entry looked like, for comparing against what the builder was told.
#[derive(Debug, PartialEq, Eq)]
struct TarEntry {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    link_name: Option<Vec<u8>>,
    device: Option<(u32, u32)>,
    size: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Reads a tar into (raw path bytes -> entry), keeping names exactly as written.
fn read_tar(tar_bytes: &[u8]) -> BTreeMap<Vec<u8>, TarEntry> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut entries = BTreeMap::new();
    for entry in archive.entries().expect("reading tar entries") {
        let mut entry = entry.expect("reading a tar entry");
        let mut xattrs = Vec::new();
        if let Some(extensions) = entry.pax_extensions().expect("reading pax extensions") {
            for extension in extensions {
                let extension = extension.expect("reading a pax record");
                if let Some(name) = extension.key().expect("pax key").strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_owned(), extension.value_bytes().to_vec()));
                }
            }
        }
        let header = entry.header();
        let kind = header.entry_type();
        let device = match kind {
            tar::EntryType::Char | tar::EntryType::Block => {
                Some((header.device_major().unwrap().unwrap(), header.device_minor().unwrap().unwrap()))
            }
            _ => None,
        };
        let parsed = TarEntry {
            kind,
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            link_name: entry.link_name_bytes().map(|l| l.into_owned()),
            device,
            size: header.size().unwrap(),
            xattrs,
        };
        let path = entry.path_bytes().into_owned();
        // Drain the content so the archive can move on to the next entry.
        std::io::copy(&mut entry, &mut std::io::sink()).unwrap();
        entries.insert(path, parsed);
    }
    entries
}

fn decompress(bytes: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gunzip");
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(bytes).unwrap().read_to_end(&mut out).expect("unzstd");
        }
    }
    out
}

/// Pushes `image`, reads its manifest back by tag and every blob by digest,
/// and checks that all of it is what was built.
async fn push_and_verify(registry: &Registry, repo: &str, image: &support::image::BuiltImage) {
    let pushed = image.push(registry, repo, "latest").await;
    assert_eq!(pushed, image.manifest_digest);

    let client = RegistryClient::new(registry);
    let fetched = client.get_manifest(repo, "latest", &[image.manifest_media_type]).await;
    assert_eq!(fetched.digest, image.manifest_digest, "Docker-Content-Digest of {repo}:latest");
    assert_eq!(fetched.media_type, image.manifest_media_type);
    assert_eq!(fetched.bytes, image.manifest);
    assert_eq!(sha256_digest(&fetched.bytes), image.manifest_digest);

    let manifest: Value = serde_json::from_slice(&fetched.bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], image.manifest_media_type);
    assert_eq!(manifest["config"]["mediaType"], image.media_types.config());
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
    assert_eq!(manifest["config"]["size"], image.config.len());

    let config_bytes = client.get_blob(repo, &image.config_digest).await;
    assert_eq!(sha256_digest(&config_bytes), image.config_digest);
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["os"], image.platform.os.as_str());
    assert_eq!(config["architecture"], image.platform.architecture.as_str());
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(config["history"].as_array().unwrap().len(), image.layers.len());

    let layers = manifest["layers"].as_array().unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(layers.len(), image.layers.len());
    assert_eq!(diff_ids.len(), image.layers.len());
    for ((descriptor, diff_id), built) in layers.iter().zip(diff_ids).zip(&image.layers) {
        assert_eq!(descriptor["mediaType"], built.media_type);
        assert_eq!(descriptor["digest"], built.digest.as_str());
        let blob = client.get_blob(repo, &built.digest).await;
        assert_eq!(descriptor["size"], blob.len());
        assert_eq!(sha256_digest(&blob), built.digest);
        let tar = decompress(&blob, built.compression);
        assert_eq!(tar.len() as u64, built.uncompressed_size);
        assert_eq!(diff_id, &Value::from(sha256_digest(&tar)), "diff_id is the digest of the uncompressed tar");
    }
}

#[tokio::test]
async fn oci_gzip_busybox_image_round_trips_through_the_registry() {
    let registry = Registry::start().await;
    let image = ImageBuilder::new()
        .layer(Layer::busybox(), Compression::Gzip)
        .layer(Layer::files_etc_passwd("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n"), Compression::Gzip)
        .entrypoint(["/bin/sh", "-c"])
        .cmd(["echo hello"])
        .env(["PATH=/bin", "GREETING=hi"])
        .working_dir("/tmp")
        .user("1000:1000")
        .label("org.example.test", "yes")
        .exposed_port("8080/tcp")
        .stop_signal("SIGQUIT")
        .build();
    push_and_verify(&registry, "test/busybox", &image).await;

    // An OCI manifest is refused to a client that does not accept OCI.
    let response = RegistryClient::new(&registry)
        .get_manifest_response("test/busybox", "latest", &[media_type::DOCKER_MANIFEST])
        .await;
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);

    // The manifest and config also parse as the OCI types berth will use.
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&image.manifest).unwrap();
    assert_eq!(manifest.layers().len(), 2);
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&image.config).unwrap();
    let runtime = config.config().as_ref().unwrap();
    assert_eq!(runtime.entrypoint().as_deref(), Some(&["/bin/sh".to_owned(), "-c".to_owned()][..]));
    assert_eq!(runtime.cmd().as_deref(), Some(&["echo hello".to_owned()][..]));
    assert_eq!(runtime.working_dir().as_deref(), Some("/tmp"));
    assert_eq!(runtime.user().as_deref(), Some("1000:1000"));
    assert_eq!(runtime.stop_signal().as_deref(), Some("SIGQUIT"));
    assert_eq!(runtime.exposed_ports().as_deref(), Some(&["8080/tcp".to_owned()][..]));
    assert_eq!(runtime.labels().as_ref().unwrap()["org.example.test"], "yes");
    assert_eq!(config.rootfs().diff_ids(), &image.diff_ids());
    assert_eq!(config.architecture().to_string(), Platform::host().architecture);

    // The busybox layer holds what the rest of the suite expects.
    let tar = decompress(&image.layers[0].bytes, Compression::Gzip);
    let entries = read_tar(&tar);
    let busybox = &entries[&b"bin/busybox"[..]];
    assert_eq!(busybox.kind, tar::EntryType::Regular);
    assert_eq!(busybox.mode, 0o755);
    assert_eq!(busybox.size, std::fs::metadata("/usr/bin/busybox").unwrap().len());
    let sh = &entries[&b"bin/sh"[..]];
    assert_eq!(sh.kind, tar::EntryType::Symlink);
    assert_eq!(sh.link_name.as_deref(), Some(&b"busybox"[..]));
    assert_eq!(entries[&b"tmp/"[..]].mode, 0o1777);
    assert_eq!(entries[&b"tmp/"[..]].kind, tar::EntryType::Directory);
    for dir in ["etc/", "proc/", "sys/", "dev/"] {
        assert_eq!(entries[dir.as_bytes()].kind, tar::EntryType::Directory, "{dir}");
    }
}

#[tokio::test]
async fn docker_schema2_uncompressed_image_round_trips_through_the_registry() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox()
        .media_types(MediaTypes::Docker)
        .layer(Layer::new().file("/hello.txt", "hello\n", 0o644), Compression::None)
        .build();
    assert_eq!(image.manifest_media_type, media_type::DOCKER_MANIFEST);
    assert_eq!(image.layers[0].media_type, media_type::DOCKER_LAYER_GZIP);
    assert_eq!(image.layers[1].media_type, media_type::DOCKER_LAYER);
    // Uncompressed: the blob is the tar, so digest and diff_id coincide.
    assert_eq!(image.layers[1].digest, image.layers[1].diff_id);
    push_and_verify(&registry, "test/docker", &image).await;

    // A client that does not accept schema2 gets the manifest converted to a
    // signed schema1 one (distribution 2.8 still does that): pullers must put
    // the schema2 type in their Accept header.
    let client = RegistryClient::new(&registry);
    let response = client.get_manifest_response("test/docker", "latest", &[media_type::OCI_MANIFEST]).await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["Content-Type"], "application/vnd.docker.distribution.manifest.v1+prettyjws");
}

#[tokio::test]
async fn oci_zstd_image_round_trips_through_the_registry() {
    let registry = Registry::start().await;
    let image = ImageBuilder::new()
        .layer(Layer::busybox(), Compression::Zstd)
        .layer(Layer::random(1 << 20, 7), Compression::Zstd)
        .build();
    assert!(image.layers.iter().all(|l| l.media_type == media_type::OCI_LAYER_ZSTD));
    assert_eq!(&image.layers[0].bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    push_and_verify(&registry, "test/zstd", &image).await;
}

#[tokio::test]
async fn two_platform_index_round_trips_through_the_registry() {
    for media_types in [MediaTypes::Oci, MediaTypes::Docker] {
        let registry = Registry::start().await;
        let amd64 = ImageBuilder::busybox().media_types(media_types).platform("linux", "amd64", None).build();
        let arm64 = ImageBuilder::busybox().media_types(media_types).platform("linux", "arm64", Some("v8")).build();
        // Same layer, different configs: different images.
        assert_eq!(amd64.layer_digests(), arm64.layer_digests());
        assert_ne!(amd64.config_digest, arm64.config_digest);
        let index = Index::new(media_types).image(amd64.clone()).image(arm64.clone()).build();

        let pushed = index.push(&registry, "test/multi", "latest").await;
        assert_eq!(pushed, index.digest);

        let client = RegistryClient::new(&registry);
        let fetched = client.get_manifest("test/multi", "latest", &media_type::ALL_MANIFESTS).await;
        assert_eq!(fetched.digest, index.digest);
        assert_eq!(fetched.media_type, media_types.index());
        assert_eq!(fetched.bytes, index.bytes);

        let parsed: Value = serde_json::from_slice(&fetched.bytes).unwrap();
        assert_eq!(parsed["mediaType"], media_types.index());
        let entries = parsed["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["platform"]["architecture"], "amd64");
        assert_eq!(entries[1]["platform"]["architecture"], "arm64");
        assert_eq!(entries[1]["platform"]["variant"], "v8");
        for (entry, image) in entries.iter().zip([&amd64, &arm64]) {
            assert_eq!(entry["digest"], image.manifest_digest.as_str());
            assert_eq!(entry["size"], image.manifest.len());
            let child = client.get_manifest("test/multi", &image.manifest_digest, &[image.manifest_media_type]).await;
            assert_eq!(child.bytes, image.manifest);
            let config: Value =
                serde_json::from_slice(&client.get_blob("test/multi", &image.config_digest).await).unwrap();
            assert_eq!(config["architecture"], image.platform.architecture.as_str());
        }
        if media_types == MediaTypes::Oci {
            let parsed: oci_spec::image::ImageIndex = serde_json::from_slice(&index.bytes).unwrap();
            assert_eq!(parsed.manifests().len(), 2);
        }
    }
}

#[tokio::test]
async fn index_extra_entries_must_exist_in_the_repository() {
    let registry = Registry::start().await;
    let client = RegistryClient::new(&registry);
    let host = ImageBuilder::busybox().build();
    let other = ImageBuilder::busybox().platform("linux", "s390x", None).build();

    // An entry for a manifest that was never pushed is refused...
    let dangling = Index::new(MediaTypes::Oci).image(host.clone()).extra_entry(other.descriptor()).build();
    for image in &dangling.images {
        image.push(&registry, "test/extra", &image.manifest_digest).await;
    }
    let refused = client
        .try_push_manifest_raw("test/extra", "latest", dangling.media_type, &dangling.bytes)
        .await
        .expect_err("an index naming a missing manifest");
    assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST, "{refused}");

    // ...and accepted once it is there.
    other.push(&registry, "test/extra", &other.manifest_digest).await;
    let digest = client.push_manifest_raw("test/extra", "latest", dangling.media_type, &dangling.bytes).await;
    assert_eq!(digest, dangling.digest);
}

#[tokio::test]
async fn htpasswd_registry_requires_credentials() {
    let registry = Registry::start_with_htpasswd("tester", "s3cret").await;
    let anonymous = RegistryClient::new(&registry);
    let response = anonymous.get("/v2/").await;
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["WWW-Authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Basic realm="), "challenge: {challenge}");

    let wrong = RegistryClient::new(&registry).with_basic_auth("tester", "wrong");
    assert_eq!(wrong.get("/v2/").await.status(), reqwest::StatusCode::UNAUTHORIZED);

    let image = ImageBuilder::busybox().build();
    let refused = anonymous
        .try_upload_blob("test/private", &image.config, &image.config_digest)
        .await
        .expect_err("an anonymous upload");
    assert_eq!(refused.status, reqwest::StatusCode::UNAUTHORIZED);

    let digest = image.push_with_auth(&registry, "test/private", "v1", "tester", "s3cret").await;
    assert_eq!(digest, image.manifest_digest);
    let authorised = RegistryClient::new(&registry).with_basic_auth("tester", "s3cret");
    assert_eq!(authorised.get("/v2/").await.status(), reqwest::StatusCode::OK);
    let fetched = authorised.get_manifest("test/private", "v1", &[media_type::OCI_MANIFEST]).await;
    assert_eq!(fetched.digest, image.manifest_digest);
}

#[tokio::test]
async fn registry_lets_size_lies_through_but_checks_uploaded_digests() {
    let registry = Registry::start().await;
    let client = RegistryClient::new(&registry);
    let image = ImageBuilder::busybox().build();
    for (_, blob) in image.blobs() {
        client.push_blob("test/lies", blob).await;
    }

    // A blob uploaded under a digest it does not have is refused.
    let refused = client
        .try_upload_blob("test/lies", b"not what the digest says", &image.config_digest)
        .await
        .expect_err("an upload with a wrong digest");
    assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST, "{refused}");

    // A manifest with a wrong layer size is accepted and served as pushed.
    let mut manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
    manifest["layers"][0]["size"] = Value::from(12345);
    let lying = serde_json::to_vec(&manifest).unwrap();
    let digest = client.push_manifest_raw("test/lies", "wrong-size", media_type::OCI_MANIFEST, &lying).await;
    assert_eq!(digest, sha256_digest(&lying));

    // So is one whose layer is another blob (here: the config) of the repository.
    manifest["layers"][0]["digest"] = Value::from(image.config_digest.as_str());
    let swapped = serde_json::to_vec(&manifest).unwrap();
    client.push_manifest_raw("test/lies", "swapped", media_type::OCI_MANIFEST, &swapped).await;

    // A blob that is not in the repository is not.
    manifest["layers"][0]["digest"] = Value::from(sha256_digest(b"never pushed"));
    let missing = serde_json::to_vec(&manifest).unwrap();
    let refused = client
        .try_push_manifest_raw("test/lies", "missing", media_type::OCI_MANIFEST, &missing)
        .await
        .expect_err("a manifest naming a missing blob");
    assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST, "{refused}");

    // Overwriting the stored blob (same length) makes the registry serve
    // content that does not match its digest.
    let layer = &image.layers[0];
    let path = registry.blob_data_path(&layer.digest);
    std::fs::write(&path, vec![0u8; layer.bytes.len()]).unwrap();
    let served = client.get_blob("test/lies", &layer.digest).await;
    assert_eq!(served.len(), layer.bytes.len());
    assert_ne!(sha256_digest(&served), layer.digest);
}

#[test]
fn layer_entries_are_written_as_asked() {
    let layer = Layer::new()
        .dir_owned("/data", 0o750, 1000, 1001)
        .file_owned("/data/owned", "x", 0o4755, 1000, 1001)
        .file_entry(
            FileEntry::new("/data/attrs", "y").mtime(42).xattr("user.colour", "blue").xattr("trusted.x", [0u8, 1, 2]),
        )
        .symlink("/data/abs", "/etc/passwd")
        .hardlink("/data/hard", "/data/owned")
        .char_device("/dev/null", 1, 3, 0o666)
        .block_device("/dev/loop9", 7, 9, 0o660)
        .fifo("/data/pipe", 0o600)
        .whiteout("/etc/removed")
        .whiteout("toplevel")
        .opaque("/var/cache/")
        .file(format!("/{}/long", "d".repeat(150)), "long path", 0o644);
    let tar = layer.to_tar();
    let entries = read_tar(&tar);

    let dir = &entries[&b"data/"[..]];
    assert_eq!((dir.kind, dir.mode, dir.uid, dir.gid), (tar::EntryType::Directory, 0o750, 1000, 1001));
    let owned = &entries[&b"data/owned"[..]];
    assert_eq!((owned.mode, owned.uid, owned.gid, owned.size), (0o4755, 1000, 1001, 1));
    let attrs = &entries[&b"data/attrs"[..]];
    assert_eq!(
        attrs.xattrs,
        vec![("user.colour".to_owned(), b"blue".to_vec()), ("trusted.x".to_owned(), vec![0, 1, 2])]
    );
    assert_eq!(entries[&b"data/abs"[..]].link_name.as_deref(), Some(&b"/etc/passwd"[..]));
    let hard = &entries[&b"data/hard"[..]];
    assert_eq!((hard.kind, hard.link_name.as_deref()), (tar::EntryType::Link, Some(&b"data/owned"[..])));
    let null = &entries[&b"dev/null"[..]];
    assert_eq!((null.kind, null.device, null.mode), (tar::EntryType::Char, Some((1, 3)), 0o666));
    assert_eq!(entries[&b"dev/loop9"[..]].device, Some((7, 9)));
    assert_eq!(entries[&b"data/pipe"[..]].kind, tar::EntryType::Fifo);
    assert_eq!(entries[&b"etc/.wh.removed"[..]].size, 0);
    assert!(entries.contains_key(&b".wh.toplevel"[..]));
    assert!(entries.contains_key(&b"var/cache/.wh..wh..opq"[..]));
    let long = format!("{}/long", "d".repeat(150));
    assert_eq!(entries[long.as_bytes()].size, 9);

    // mtime: default and explicit.
    let mut archive = tar::Archive::new(&tar[..]);
    let mtimes: BTreeMap<Vec<u8>, u64> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path_bytes().into_owned(), e.header().mtime().unwrap())
        })
        .collect();
    assert_eq!(mtimes[&b"data/attrs"[..]], 42);
    assert_eq!(mtimes[&b"data/owned"[..]], support::image::DEFAULT_MTIME);
}

#[test]
fn hostile_raw_entries_keep_their_names() {
    let layer = Layer::new()
        .raw_file("/etc/evil", "absolute")
        .raw_file("../../escape", "parent")
        .raw_symlink("link", "/")
        .raw_file("link/evil", "through the symlink")
        .raw_hardlink("hard", "../../etc/passwd");
    let entries = read_tar(&layer.to_tar());
    let names: Vec<&[u8]> = entries.keys().map(Vec::as_slice).collect();
    assert_eq!(names, [&b"../../escape"[..], b"/etc/evil", b"hard", b"link", b"link/evil"]);
    assert_eq!(entries[&b"link"[..]].link_name.as_deref(), Some(&b"/"[..]));
    let hard = &entries[&b"hard"[..]];
    assert_eq!((hard.kind, hard.link_name.as_deref()), (tar::EntryType::Link, Some(&b"../../etc/passwd"[..])));
    assert_eq!(entries[&b"link/evil"[..]].size, 19);
}

#[test]
fn builds_are_deterministic_and_random_layers_incompressible() {
    let build = || {
        ImageBuilder::new()
            .layer(Layer::random(3 << 20, 1), Compression::Gzip)
            .layer(Layer::random(1 << 20, 2), Compression::Zstd)
            .build()
    };
    let (a, b) = (build(), build());
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.config, b.config);
    assert_eq!(a.layers[0].bytes, b.layers[0].bytes);
    assert_ne!(a.layers[0].diff_id, a.layers[1].diff_id);

    // Random content does not shrink, and holds exactly `size` bytes.
    assert!(a.layers[0].bytes.len() >= 3 << 20, "gzip of random data shrank: {}", a.layers[0].bytes.len());
    assert!(a.layers[1].bytes.len() >= 1 << 20);
    let entries = read_tar(&decompress(&a.layers[0].bytes, Compression::Gzip));
    assert_eq!(entries[&b"random-1.bin"[..]].size, 3 << 20);

    // Different seeds, different content; an odd size is honoured.
    let odd = Layer::random(1001, 3).to_tar();
    assert_ne!(odd, Layer::random(1001, 4).to_tar());
    assert_eq!(read_tar(&odd)[&b"random-3.bin"[..]].size, 1001);
}

#[tokio::test]
async fn registry_process_ends_with_its_handle() {
    let registry = Registry::start().await;
    let pid = nix::unistd::Pid::from_raw(registry.pid() as i32);
    assert!(nix::sys::signal::kill(pid, None).is_ok(), "registry should be running");
    drop(registry);
    // Drop waited for the child, so the pid is gone (not even a zombie).
    assert_eq!(nix::sys::signal::kill(pid, None), Err(nix::errno::Errno::ESRCH));
}

#[test]
fn registry_dies_with_the_thread_that_started_it_even_without_drop() {
    // Start a registry on a thread of its own and leak the handle, as a test
    // killed mid-way would: only PR_SET_PDEATHSIG can end the process then.
    let (pid, dir) = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let registry = runtime.block_on(Registry::start());
        let pid = nix::unistd::Pid::from_raw(registry.pid() as i32);
        let dir = registry.storage_dir().parent().unwrap().to_owned();
        std::mem::forget(registry);
        (pid, dir)
    })
    .join()
    .unwrap();

    // The registry is a child of this process and, its handle leaked, nobody
    // reaps it: once killed it lingers as a zombie. Wait for that state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if !berth::procfs::is_alive(pid.as_raw()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "registry {pid} outlived its thread");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Reap it and clean up what the leaked handle would have removed.
    nix::sys::wait::waitpid(pid, None).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

// ---------------------------------------------------------------------------
// Token authentication
// ---------------------------------------------------------------------------

const TOKEN_USER: &str = "tester";
const TOKEN_PASSWORD: &str = "s3cret";

/// A client for the token server (never through a proxy from the environment).
fn token_http() -> reqwest::Client {
    support::registry::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().expect("building an HTTP client")
}

/// The parameters of the bearer challenge on a 401 answer.
fn bearer_challenge(response: &reqwest::Response) -> BTreeMap<String, String> {
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED, "{} should need a token", response.url());
    let header = response.headers()["WWW-Authenticate"].to_str().expect("an ASCII challenge");
    parse_bearer_challenge(header).unwrap_or_else(|| panic!("not a bearer challenge: {header}"))
}

/// Reads a token server answer: its status and JSON body.
async fn token_answer(response: reqwest::Response) -> (reqwest::StatusCode, Value) {
    let status = response.status();
    let body = response.text().await.expect("reading a token server answer");
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("token server answered non-JSON {body:?}: {e}"));
    (status, json)
}

/// POSTs an OAuth2 token request with these form fields.
async fn post_token_form(registry: &TokenAuthRegistry, form: &[(&str, &str)]) -> (reqwest::StatusCode, Value) {
    let response = token_http()
        .post(registry.realm())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(encode_form(form))
        .send()
        .await
        .expect("the token server answers");
    token_answer(response).await
}

#[tokio::test]
async fn token_registry_challenges_anonymous_clients() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let anonymous = RegistryClient::new(registry.registry());
    let challenge = bearer_challenge(&anonymous.get("/v2/").await);
    assert_eq!(challenge["realm"], registry.realm());
    assert_eq!(challenge["service"], token_auth::SERVICE);
    // A repository request also names the scope to ask for.
    let response = anonymous.get_manifest_response("test/anon", "latest", &media_type::ALL_MANIFESTS).await;
    assert_eq!(bearer_challenge(&response)["scope"], "repository:test/anon:pull");

    // The token server hands anonymous clients a token that grants nothing...
    let query = [("service", token_auth::SERVICE), ("scope", "repository:test/anon:pull")];
    let response = token_http().get(registry.realm()).query(&query).send().await.expect("the token server answers");
    let (status, answer) = token_answer(response).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    let token = answer["token"].as_str().expect("a token");
    // ...which gets past /v2/ (it is validly signed) but into no repository.
    let client = registry.client(token);
    assert_eq!(client.get("/v2/").await.status(), reqwest::StatusCode::OK);
    let challenge =
        bearer_challenge(&client.get_manifest_response("test/anon", "latest", &media_type::ALL_MANIFESTS).await);
    assert_eq!(challenge.get("error").map(String::as_str), Some("insufficient_scope"), "{challenge:?}");
    assert_eq!(registry.token_requests(), TokenRequestCounts { anonymous: 1, ..Default::default() });
}

#[tokio::test]
async fn minted_tokens_push_and_pull_only_what_they_grant() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let image = ImageBuilder::busybox().build();
    let digest = registry.push(&image, "test/minted", "v1").await;
    assert_eq!(digest, image.manifest_digest);

    let pull_token = registry.mint_token("test/minted", &["pull"]);
    let fetched = registry.client(&pull_token).get_manifest("test/minted", "v1", &media_type::ALL_MANIFESTS).await;
    assert_eq!((fetched.digest.as_str(), fetched.bytes.as_slice()), (digest.as_str(), image.manifest.as_slice()));

    // A pull token does not push, and a token for another repository opens nothing here.
    let upload = format!("{}/v2/test/minted/blobs/uploads/", registry.registry().url());
    let refused = token_http().post(&upload).bearer_auth(&pull_token).send().await.expect("the registry answers");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let other = registry.client(&registry.mint_token("test/other", &["pull", "push"]));
    assert_eq!(
        other.get_manifest_response("test/minted", "v1", &media_type::ALL_MANIFESTS).await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
    assert_eq!(registry.token_requests().total(), 0, "minting bypasses the token server");
}

#[tokio::test]
async fn tokens_of_another_token_server_are_refused() {
    // Proves the registry checks signatures against its own certificate.
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let stranger = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    registry.push(&ImageBuilder::busybox().build(), "test/signed", "v1").await;
    let forged = registry.client(&stranger.mint_token("test/signed", &["pull"]));
    assert_eq!(forged.get("/v2/").await.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(
        forged.get_manifest_response("test/signed", "v1", &media_type::ALL_MANIFESTS).await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn token_server_get_flow_with_basic_credentials() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let image = ImageBuilder::busybox().build();
    registry.push(&image, "test/basic", "v1").await;

    // Follow the challenge as oci-client does.
    let anonymous = RegistryClient::new(registry.registry());
    let response = anonymous.get_manifest_response("test/basic", "v1", &media_type::ALL_MANIFESTS).await;
    let challenge = bearer_challenge(&response);
    let ask = |password: &'static str| {
        token_http()
            .get(&challenge["realm"])
            .basic_auth(TOKEN_USER, Some(password))
            .query(&[("scope", &challenge["scope"]), ("service", &challenge["service"])])
            .send()
    };

    let (status, answer) = token_answer(ask(TOKEN_PASSWORD).await.expect("the token server answers")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(answer["token"], answer["access_token"]);
    assert_eq!(answer["expires_in"], token_auth::TOKEN_LIFETIME.as_secs());
    assert!(answer["issued_at"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z')), "{answer}");
    let token = answer["token"].as_str().expect("a token");
    let fetched = registry.client(token).get_manifest("test/basic", "v1", &media_type::ALL_MANIFESTS).await;
    assert_eq!(fetched.digest, image.manifest_digest);

    let (status, answer) = token_answer(ask("wrong").await.expect("the token server answers")).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"], "unauthorized");

    assert_eq!(registry.token_requests(), TokenRequestCounts { basic: 2, refused: 1, ..Default::default() });
    let log = registry.token_request_log();
    assert_eq!(log[0].kind, TokenRequestKind::Basic);
    assert_eq!(log[0].scopes, ["repository:test/basic:pull"]);
    assert_eq!(log[0].service.as_deref(), Some(token_auth::SERVICE));
    assert!(log[0].granted && !log[1].granted);
}

/// The OAuth2 refresh form berth sends for a CRI `identity_token`.
fn refresh_form(refresh_token: &str) -> [(&str, &str); 5] {
    [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("service", token_auth::SERVICE),
        ("scope", "repository:test/refresh:pull"),
        ("client_id", "berth"),
    ]
}

#[tokio::test]
async fn token_server_refresh_token_flow_with_the_identity_token() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let image = ImageBuilder::busybox().build();
    registry.push(&image, "test/refresh", "v1").await;
    let identity = registry.identity_token();

    let (status, answer) = post_token_form(&registry, &refresh_form(&identity)).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(answer["scope"], "repository:test/refresh:pull");
    assert_eq!(answer["expires_in"], token_auth::TOKEN_LIFETIME.as_secs());
    let token = answer["access_token"].as_str().expect("an access token");
    let fetched = registry.client(token).get_manifest("test/refresh", "v1", &media_type::ALL_MANIFESTS).await;
    assert_eq!(fetched.digest, image.manifest_digest);

    let (status, answer) = post_token_form(&registry, &refresh_form("not-the-identity-token")).await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED, "{answer}");

    // The password grant, asked for offline access, hands out the identity token (as docker login does).
    let password_grant = [
        ("grant_type", "password"),
        ("username", TOKEN_USER),
        ("password", TOKEN_PASSWORD),
        ("service", token_auth::SERVICE),
        ("scope", "repository:test/refresh:pull,push"),
        ("client_id", "berth"),
        ("access_type", "offline"),
    ];
    let (status, answer) = post_token_form(&registry, &password_grant).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(answer["refresh_token"], identity.as_str());

    let counts = registry.token_requests();
    assert_eq!(counts, TokenRequestCounts { refresh_token: 2, password: 1, refused: 1, ..Default::default() });
    assert_eq!(registry.token_request_log()[0].client_id.as_deref(), Some("berth"));
}

#[tokio::test]
async fn token_server_refuses_requests_for_another_service() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let form =
        [("grant_type", "password"), ("username", TOKEN_USER), ("password", TOKEN_PASSWORD), ("client_id", "berth")];
    let (status, answer) = post_token_form(&registry, &form).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "no service: {answer}");
    let wrong = [("service", "elsewhere"), ("scope", "repository:x:pull")];
    let response = token_http().get(registry.realm()).query(&wrong).send().await.expect("the token server answers");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(registry.token_requests().refused, 2);
}

#[tokio::test]
async fn token_auth_registry_stops_with_its_handle() {
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let pid = nix::unistd::Pid::from_raw(registry.registry().pid() as i32);
    let stopped = registry.token_server_stopped_flag();
    drop(registry);
    assert_eq!(nix::sys::signal::kill(pid, None), Err(nix::errno::Errno::ESRCH));
    // Drop joined the token server's thread.
    assert!(stopped.load(std::sync::atomic::Ordering::SeqCst), "the token server still runs");
}

#[tokio::test]
async fn token_server_answers_while_the_test_thread_blocks() {
    // A test blocking its (current-thread) runtime, as a synchronous berth CLI
    // call would, must not starve the token server.
    use std::io::Write as _;
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let address = reqwest::Url::parse(&registry.realm()).unwrap().socket_addrs(|| None).unwrap()[0];
    let mut stream = std::net::TcpStream::connect(address).expect("connecting to the token server");
    let request =
        format!("GET /token?service={} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n", token_auth::SERVICE);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reading the token server's answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[test]
fn token_support_helpers() {
    assert_eq!(token_auth::rfc3339(support::image::DEFAULT_MTIME), support::image::CREATED);
    assert_eq!(token_auth::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(token_auth::rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    let challenge =
        parse_bearer_challenge(r#"Bearer realm="http://h/token",service="s",scope="repository:a/b:pull,push""#)
            .unwrap();
    assert_eq!(challenge["realm"], "http://h/token");
    assert_eq!(challenge["scope"], "repository:a/b:pull,push");
    assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
}

#[tokio::test]
async fn oci_client_pulls_through_the_token_flow() {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;

    // The client berth builds on must get along with this token server as is.
    let registry = TokenAuthRegistry::start(TOKEN_USER, TOKEN_PASSWORD).await;
    let image = ImageBuilder::busybox().build();
    registry.push(&image, "test/oci", "v1").await;
    support::registry::install_crypto_provider();
    let client = || oci_client::Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
    let reference: oci_client::Reference = format!("{}/test/oci:v1", registry.registry().host()).parse().unwrap();

    let basic = RegistryAuth::Basic(TOKEN_USER.to_owned(), TOKEN_PASSWORD.to_owned());
    let (_, digest) = client().pull_manifest(&reference, &basic).await.expect("pulling with basic credentials");
    assert_eq!(digest, image.manifest_digest);
    assert_eq!(registry.token_requests(), TokenRequestCounts { basic: 1, ..Default::default() });
    assert_eq!(registry.token_request_log()[0].scopes, ["repository:test/oci:pull"]);

    // A CRI registry_token goes straight to the registry.
    let bearer = RegistryAuth::Bearer(registry.mint_token("test/oci", &["pull"]));
    let (_, digest) = client().pull_manifest(&reference, &bearer).await.expect("pulling with a registry token");
    assert_eq!(digest, image.manifest_digest);

    let refused = client().pull_manifest(&reference, &RegistryAuth::Anonymous).await;
    assert!(refused.is_err(), "an anonymous pull got {refused:?}");
    assert_eq!(registry.token_requests().anonymous, 1);
}

// ---------------------------------------------------------------------------
// Registry proxy
// ---------------------------------------------------------------------------

use support::proxy::{RegistryProxy, Rule};

/// `size` bytes that differ from offset to offset, so a misplaced piece shows.
fn patterned_blob(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8 ^ (i >> 12) as u8).collect()
}

/// A plain client for requests whose answer a test inspects itself.
fn proxy_test_http(read_timeout: Option<std::time::Duration>) -> reqwest::Client {
    support::registry::install_crypto_provider();
    let builder = reqwest::Client::builder().no_proxy();
    let builder = match read_timeout {
        Some(timeout) => builder.read_timeout(timeout),
        None => builder,
    };
    builder.build().expect("building an HTTP client")
}

/// A bound on waits for an event, only there so that a test that goes wrong
/// fails instead of hanging: no wait is expected to come near it.
const HANG_GUARD: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `condition` until it holds (or the hang guard fails the test).
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + HANG_GUARD;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "still not true after {HANG_GUARD:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Reads a body until it ends or fails; returns what arrived and the failure.
async fn read_body(response: &mut reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut received = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => return (received, None),
            Err(e) => return (received, Some(e)),
        }
    }
}

#[tokio::test]
async fn proxy_passes_requests_through_and_counts_them() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    image.push(&registry, "test/proxied", "latest").await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let client = RegistryClient::from_url(&proxy.url());

    let manifest = client.get_manifest("test/proxied", "latest", &[image.manifest_media_type]).await;
    assert_eq!(manifest.digest, image.manifest_digest);
    assert_eq!(manifest.media_type, image.manifest_media_type);
    assert_eq!(manifest.bytes, image.manifest);
    let layer = &image.layers[0];
    let blob = client.get_blob("test/proxied", &layer.digest).await;
    assert_eq!(sha256_digest(&blob), layer.digest);

    assert_eq!(proxy.blob_gets(&layer.digest), 1);
    assert_eq!(proxy.blob_gets(&image.config_digest), 0);
    assert_eq!(proxy.count("GET", "/manifests/latest"), 1);
    let record = proxy.requests().into_iter().find(|r| r.path.ends_with(&layer.digest)).expect("the blob GET");
    assert_eq!((record.status, record.body_bytes, record.body_complete), (Some(200), blob.len() as u64, true));

    // HEAD keeps its Content-Length (with no body).
    let head_url = format!("{}/v2/test/proxied/blobs/{}", proxy.url(), layer.digest);
    let head = proxy_test_http(None).head(&head_url).send().await.expect("the proxy answers HEAD");
    assert_eq!(head.status(), reqwest::StatusCode::OK);
    assert_eq!(head.headers()["Content-Length"], blob.len().to_string().as_str());
    assert_eq!(head.headers()["Docker-Content-Digest"], layer.digest.as_str());

    // An upload's Location is rewritten to the proxy: the PUT comes through it too.
    let pushed = client.push_blob("test/proxied", b"pushed through the proxy").await;
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 1);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 1, "{:#?}", proxy.requests());
    assert!(RegistryClient::new(&registry).blob_exists("test/proxied", &pushed).await);
    // The client may have the last (empty) body before the proxy's pump has wound down.
    eventually("every finished body stream is let go", || proxy.active_body_streams() == 0).await;
}

#[tokio::test]
async fn proxy_stall_body_sends_the_first_bytes_then_nothing() {
    const AFTER_BYTES: u64 = 10_000;
    let registry = Registry::start().await;
    let blob = patterned_blob(256 * 1024);
    let digest = support::image::push_blob(&registry, "test/stall", &blob).await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    proxy.set_rule(Rule::StallBody { path_contains: digest.clone(), after_bytes: AFTER_BYTES });

    // The proxy's own test is the one place a short timeout is right: the
    // stall is forever, so 1 s of silence is as good as any.
    let http = proxy_test_http(Some(std::time::Duration::from_secs(1)));
    let url = format!("{}/v2/test/stall/blobs/{digest}", proxy.url());
    let mut response = http.get(&url).send().await.expect("the headers arrive");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.content_length(), Some(blob.len() as u64), "the full length is announced");
    let (received, failure) = read_body(&mut response).await;
    let failure = failure.unwrap_or_else(|| panic!("the body ended after {} bytes", received.len()));
    assert!(failure.is_timeout(), "expected a read timeout, got {failure:?}");
    assert_eq!(received, blob[..AFTER_BYTES as usize]);
    assert_eq!(proxy.active_body_streams(), 1);

    // Giving up closes the connection, and the proxy lets go of the stream.
    drop(response);
    eventually("the stalled stream ends with its client", || proxy.active_body_streams() == 0).await;
    let record = &proxy.requests()[0];
    assert_eq!((record.status, record.body_bytes, record.body_complete), (Some(200), AFTER_BYTES, false));

    // Other paths pass through.
    let response = http.get(format!("{}/v2/", proxy.url())).send().await.expect("the proxy answers /v2/");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn proxy_stall_headers_never_answers() {
    let registry = Registry::start().await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    proxy.set_rule(Rule::StallHeaders { path_contains: "/manifests/".to_owned() });
    let http = proxy_test_http(None);
    let url = format!("{}/v2/test/none/manifests/latest", proxy.url());
    let answer = tokio::time::timeout(std::time::Duration::from_secs(1), http.get(&url).send()).await;
    assert!(answer.is_err(), "a stalled request got an answer: {answer:?}");
    assert_eq!(proxy.count("GET", "/manifests/latest"), 1);
    assert_eq!(proxy.requests()[0].status, None);

    let response = http.get(format!("{}/v2/", proxy.url())).send().await.expect("the proxy answers /v2/");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn proxy_throttle_holds_the_body_back_then_delivers_all_of_it() {
    let registry = Registry::start().await;
    // Small enough for the socket buffers to take at once, were it not paced.
    let held = patterned_blob(64 * 1024);
    let held_digest = support::image::push_blob(&registry, "test/held", &held).await;
    let blob = patterned_blob(1 << 20);
    let digest = support::image::push_blob(&registry, "test/slow", &blob).await;
    let proxy = RegistryProxy::start(&registry.url()).await;

    // At 1 byte/s the first 16 KiB piece goes out at once and the next is due
    // hours later: held back, the rest is as good as stalled, so (as in the
    // stall test) 1 s of silence shows it.
    proxy.set_rule(Rule::Throttle { path_contains: held_digest.clone(), bytes_per_sec: 1 });
    let url = format!("{}/v2/test/held/blobs/{held_digest}", proxy.url());
    let http = proxy_test_http(Some(std::time::Duration::from_secs(1)));
    let mut response = http.get(&url).send().await.expect("the headers arrive");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let (received, failure) = read_body(&mut response).await;
    let failure = failure.unwrap_or_else(|| panic!("not held back: all {} bytes came at once", received.len()));
    assert!(failure.is_timeout(), "expected a read timeout, got {failure:?}");
    assert!(!received.is_empty() && received.len() < held.len(), "{} bytes came", received.len());
    assert_eq!(received, held[..received.len()]);
    let record = &proxy.requests()[0];
    assert_eq!((record.body_bytes, record.body_complete), (received.len() as u64, false));
    assert_eq!(proxy.active_body_streams(), 1, "the download is under way");
    drop(response);
    eventually("the held stream ends with its client", || proxy.active_body_streams() == 0).await;

    // A pace a test can wait out delivers the whole body, intact.
    proxy.set_rule(Rule::Throttle { path_contains: digest.clone(), bytes_per_sec: 4 << 20 });
    let url = format!("{}/v2/test/slow/blobs/{digest}", proxy.url());
    let mut response = proxy_test_http(None).get(&url).send().await.expect("the headers arrive");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(proxy.active_body_streams(), 1, "the download is under way");
    let (received, failure) = read_body(&mut response).await;
    assert!(failure.is_none(), "the throttled body broke: {failure:?}");
    assert_eq!(sha256_digest(&received), digest);
    eventually("the finished stream is no longer active", || proxy.active_body_streams() == 0).await;
    assert!(proxy.requests()[1].body_complete);
}

#[tokio::test]
async fn proxy_respond_serves_the_canned_answer() {
    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    image.push(&registry, "test/canned", "latest").await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let body = br#"{"errors":[{"code":"UNKNOWN","message":"on purpose"}]}"#.to_vec();
    proxy.set_rule(Rule::Respond {
        path_contains: "/manifests/".to_owned(),
        status: 503,
        content_type: "application/json".to_owned(),
        body: body.clone(),
    });

    let client = RegistryClient::from_url(&proxy.url());
    let response = client.get_manifest_response("test/canned", "latest", &media_type::ALL_MANIFESTS).await;
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["Content-Type"], "application/json");
    assert_eq!(response.bytes().await.expect("reading the canned body"), body);
    // Blobs still come from the registry...
    let config = client.get_blob("test/canned", &image.config_digest).await;
    assert_eq!(config, image.config);
    // ...and the manifest does again once the rule is lifted.
    proxy.set_rule(Rule::PassThrough);
    let manifest = client.get_manifest("test/canned", "latest", &[image.manifest_media_type]).await;
    assert_eq!(manifest.digest, image.manifest_digest);
    let statuses: Vec<Option<u16>> = proxy.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(503), Some(200), Some(200)]);
}

#[tokio::test]
async fn proxy_stops_with_its_handle() {
    let registry = Registry::start().await;
    let blob = patterned_blob(64 * 1024);
    let digest = support::image::push_blob(&registry, "test/gone", &blob).await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    proxy.set_rule(Rule::StallBody { path_contains: digest.clone(), after_bytes: 1000 });
    let url = format!("{}/v2/test/gone/blobs/{digest}", proxy.url());
    let mut stalled = proxy_test_http(None).get(&url).send().await.expect("the headers arrive");
    let mut first = Vec::new();
    while first.len() < 1000 {
        first.extend_from_slice(&stalled.chunk().await.expect("the first bytes").expect("more than this"));
    }
    assert_eq!(first, blob[..1000]);

    // Drop must not wait for the stalled download, and must cut it.
    let stopped = proxy.stopped_flag();
    drop(proxy);
    assert!(stopped.load(std::sync::atomic::Ordering::SeqCst), "the proxy still runs after drop");
    let end = tokio::time::timeout(HANG_GUARD, read_body(&mut stalled)).await;
    let (rest, failure) = end.expect("the stalled body ends when the proxy stops");
    assert!(rest.is_empty() && failure.is_some(), "after the proxy stopped: {} more bytes, {failure:?}", rest.len());
}
