//! The `PullImage` RPC: resolve the reference (mirrors first), choose this
//! host's platform, fetch the config, download and unpack the missing layers
//! concurrently, then record the image and move its tag, in one transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::Reference;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use tokio::sync::watch;

use super::capped::CappedBuffer;
use super::catalog::{self, ImageRecord};
use super::content::sha256_digest;
use super::error::ImageError;
use super::layer_fetch::{LayerSource, Progress, fetch_and_unpack};
use super::manifest_fetch::ManifestFetcher;
use super::pull_progress::{LayerPhase, LayerReport, PullTracker, PullView};
use super::manifest::{self, ACCEPTED, LAYER_TYPES, Parsed};
use super::reference::{ImageRef, validate_digest};
use super::registry::{self, Credentials, Endpoint, classify};
use super::service::ImageService;
use super::snapshots::chain_ids;
use crate::time::now_nanos;

/// Manifests and configs are small; a registry sending more is broken or hostile.
const MAX_SMALL_BLOB: usize = 16 * 1024 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What one endpoint said the reference resolves to, before any layer moves.
struct Resolved {
    /// The digest of what the reference resolved to (an index or a manifest).
    digest: String,
    index: Option<Vec<u8>>,
    manifest: Box<ImageManifest>,
    manifest_bytes: Vec<u8>,
    manifest_digest: String,
    config_bytes: Vec<u8>,
    config: ImageConfiguration,
}

/// An endpoint with its client and credentials, ready for requests.
struct Session<'a> {
    endpoint: &'a Endpoint,
    manifests: ManifestFetcher<'a>,
    /// Shared with the layer flights, so they reuse its connections and the
    /// token it obtained while resolving the manifest.
    client: Arc<oci_client::Client>,
    auth: RegistryAuth,
    reference: Reference,
    stall_timeout: Duration,
}

impl ImageService {
    /// Pulls `reference`. Identical concurrent pulls (same reference, same
    /// credentials) share one flight: one manifest request, one config, one
    /// download per layer, and one outcome for all of them.
    pub async fn pull(self: &Arc<Self>, reference: &str, credentials: &Credentials) -> Result<ImageRecord, ImageError> {
        let (_, pulled) = self.pull_with_progress(reference, credentials)?;
        pulled.await
    }

    /// As [`pull`](Self::pull), with the progress of the flight this call
    /// starts or joins. Dropping the returned future leaves the flight, as
    /// dropping `pull`'s does.
    pub fn pull_with_progress(
        self: &Arc<Self>,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<
        (watch::Receiver<PullView>, impl Future<Output = Result<ImageRecord, ImageError>> + Send + 'static),
        ImageError,
    > {
        let image = ImageRef::parse(reference)?;
        let key = format!("{}\0{}", image.whole(), credentials.fingerprint());
        let tracker = self.pull_trackers.get_or_create(&key);
        let progress = tracker.subscribe();
        let service = self.clone();
        let credentials = credentials.clone();
        let pulled = async move {
            let flight = service.clone();
            let flight_key = key.clone();
            let pulled = service
                .pull_flights
                .run(key, move || async move {
                    let _registered = flight.pull_trackers.register(flight_key, &tracker);
                    flight.pull_uncached(&image, &credentials, &tracker).await
                })
                .await
                .map_err(ImageError::Shared);
            service.pull_counters.count(pulled.is_ok());
            pulled
        };
        Ok((progress, pulled))
    }

    async fn pull_uncached(
        &self,
        image: &ImageRef,
        credentials: &Credentials,
        tracker: &Arc<PullTracker>,
    ) -> Result<ImageRecord, ImageError> {
        let endpoints = registry::endpoints(&self.registry_config(), image.registry());
        // What a tag points to, asked of an endpoint that may resolve, once a
        // mirror that serves content by digest only is reached.
        let mut pinned: Option<ImageRef> = None;
        let mut last_error = None;
        for endpoint in &endpoints {
            let fetch = match &pinned {
                _ if endpoint.resolve || image.digest().is_some() => image.clone(),
                Some(pinned) => pinned.clone(),
                None => match self.resolve_tag(image, &endpoints, credentials).await {
                    Ok(resolved) => pinned.insert(resolved).clone(),
                    Err(e) => return Err(e),
                },
            };
            match self.pull_from(image, &fetch, endpoint, credentials, tracker).await {
                Ok(record) => return Ok(record),
                Err(e) if endpoint.mirror => {
                    tracing::warn!(mirror = %endpoint.host, image = %image.whole(), error = %e, "mirror failed, trying the next endpoint");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ImageError::Internal("no registry endpoint".into())))
    }

    /// The digest a tag points to, from the first endpoint that may say and
    /// answers; a mirror failing is passed over, the registry itself is not.
    async fn resolve_tag(
        &self,
        image: &ImageRef,
        endpoints: &[Endpoint],
        credentials: &Credentials,
    ) -> Result<ImageRef, ImageError> {
        let mut last_error = None;
        for endpoint in endpoints.iter().filter(|e| e.resolve) {
            let session = self.session(image, endpoint, credentials).await?;
            match self.fetch_manifest(&session, &session.reference).await {
                Ok(bytes) => return Ok(image.pinned(&sha256_digest(&bytes))),
                Err(e) if endpoint.mirror => last_error = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ImageError::Registry {
            registry: image.registry().to_string(),
            message: format!(
                "no endpoint may resolve the tag of {}: its mirrors serve pulls by digest only and `use_upstream` is false",
                image.whole()
            ),
        }))
    }

    async fn session<'a>(
        &self,
        fetch: &ImageRef,
        endpoint: &'a Endpoint,
        credentials: &Credentials,
    ) -> Result<Session<'a>, ImageError> {
        let stall_timeout = self.config.images.stall_timeout;
        Ok(Session {
            endpoint,
            manifests: ManifestFetcher::new(endpoint, stall_timeout)?,
            client: Arc::new(registry::client(endpoint, stall_timeout)),
            auth: credentials.registry_auth(endpoint, fetch).await?,
            reference: fetch.on_host(&endpoint.host),
            stall_timeout,
        })
    }

    /// Pulls `fetch` (the image, or its tag pinned to a digest) from one
    /// endpoint, and records it under `image`'s names.
    async fn pull_from(
        &self,
        image: &ImageRef,
        fetch: &ImageRef,
        endpoint: &Endpoint,
        credentials: &Credentials,
        tracker: &Arc<PullTracker>,
    ) -> Result<ImageRecord, ImageError> {
        let session = self.session(fetch, endpoint, credentials).await?;
        let resolved = self.resolve(fetch, &session).await?;

        let diff_ids: Vec<String> = resolved.config.rootfs().diff_ids().clone();
        let layers = resolved.manifest.layers();
        if diff_ids.len() != layers.len() {
            return Err(ImageError::Unsupported {
                reference: image.whole(),
                message: format!("manifest has {} layers but config lists {} diff IDs", layers.len(), diff_ids.len()),
            });
        }
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            validate_digest(diff_id).map_err(|reason| self.unsupported(image, format!("config diff ID: {reason}")))?;
            validate_digest(layer.digest().as_ref())
                .map_err(|reason| self.unsupported(image, format!("layer: {reason}")))?;
            let media_type = layer.media_type().to_string();
            if !LAYER_TYPES.contains(&media_type.as_str()) {
                return Err(self.unsupported(image, format!("unsupported layer media type {media_type:?}")));
            }
        }
        let chain = chain_ids(&diff_ids);
        // From here until the image is recorded, its snapshots must survive any
        // concurrent garbage collection.
        let _hold = self.snapshots.hold(&chain);
        self.fetch_layers(image, &session, layers, &diff_ids, &chain, tracker).await?;

        // Blobs are written under the catalog lock: garbage collection (also under
        // it) deletes blobs no image record names, and this image has no record yet.
        let _catalog = self.catalog_lock.lock().await;
        self.content.put(&resolved.manifest_digest, &resolved.manifest_bytes)?;
        if let Some(index) = &resolved.index {
            self.content.put(&resolved.digest, index)?;
        }
        let config_digest = resolved.manifest.config().digest().to_string();
        self.content.put(&config_digest, &resolved.config_bytes)?;

        // As containerd counts it: manifest, config and compressed layers.
        let size = resolved.manifest_bytes.len() as u64
            + resolved.manifest.config().size()
            + layers.iter().map(|l| l.size()).sum::<u64>();
        let record = ImageRecord {
            id: config_digest,
            repo_tags: Default::default(),
            repo_digests: Default::default(),
            size,
            manifest_digest: resolved.manifest_digest.clone(),
            index_digest: resolved.index.as_ref().map(|_| resolved.digest.clone()),
            chain_ids: chain,
            user: resolved.config.config().as_ref().and_then(|c| c.user().clone()).unwrap_or_default(),
            pulled_at: now_nanos(),
        };
        let mut names: Vec<String> = image.tagged().into_iter().collect();
        names.push(image.with_digest(&resolved.digest));
        let record = catalog::commit_pull(&self.store, record, &names)?;
        tracing::info!(image = %image.whole(), id = %record.id, "pulled");
        Ok(record)
    }

    fn unsupported(&self, image: &ImageRef, message: String) -> ImageError {
        ImageError::Unsupported { reference: image.whole(), message }
    }

    /// Manifest (through the index, if any) and config, all digest-checked.
    async fn resolve(&self, image: &ImageRef, session: &Session<'_>) -> Result<Resolved, ImageError> {
        let (top_bytes, digest) = match image.digest().and_then(|d| self.content.get(d).ok().map(|b| (b, d))) {
            Some((bytes, digest)) => (bytes, digest.to_string()),
            None => {
                let bytes = self.fetch_manifest(session, &session.reference).await?;
                let digest = sha256_digest(&bytes);
                if let Some(expected) = image.digest().filter(|expected| **expected != digest) {
                    return Err(ImageError::DigestMismatch {
                        what: format!("manifest of {}", image.whole()),
                        expected: expected.to_string(),
                        actual: digest,
                    });
                }
                (bytes, digest)
            }
        };
        let (index, manifest_bytes, manifest_digest) =
            match manifest::parse(&top_bytes).map_err(|m| self.unsupported(image, m))? {
                Parsed::Manifest(_) => (None, top_bytes, digest.clone()),
                Parsed::Index(index) => {
                    let (os, arch) = manifest::host_platform();
                    let entry = manifest::select_platform(&index, os, arch).map_err(|m| self.unsupported(image, m))?;
                    let child_digest = entry.digest().to_string();
                    validate_digest(&child_digest).map_err(|m| self.unsupported(image, m))?;
                    let child_ref = image.by_digest_on(&session.endpoint.host, &child_digest);
                    let bytes = match self.content.get(&child_digest) {
                        Ok(bytes) => bytes,
                        Err(_) => self.fetch_manifest(session, &child_ref).await?,
                    };
                    verify(&bytes, &child_digest, || format!("manifest {child_digest} of {}", image.whole()))?;
                    (Some(top_bytes), bytes, child_digest)
                }
            };
        let manifest = match manifest::parse(&manifest_bytes).map_err(|m| self.unsupported(image, m))? {
            Parsed::Manifest(manifest) => manifest,
            Parsed::Index(_) => {
                return Err(self.unsupported(image, "an index lists another index for this platform".into()));
            }
        };
        let config_descriptor = manifest.config();
        let config_digest = config_descriptor.digest().to_string();
        validate_digest(&config_digest).map_err(|m| self.unsupported(image, format!("config: {m}")))?;
        let config_bytes = match self.content.get(&config_digest) {
            Ok(bytes) => bytes,
            Err(_) => self.fetch_small_blob(session, config_descriptor).await?,
        };
        verify(&config_bytes, &config_digest, || format!("config of {}", image.whole()))?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| self.unsupported(image, format!("malformed image config: {e}")))?;
        Ok(Resolved { digest, index, manifest, manifest_bytes, manifest_digest, config_bytes, config })
    }

    async fn fetch_manifest(&self, session: &Session<'_>, reference: &Reference) -> Result<Vec<u8>, ImageError> {
        session
            .manifests
            .fetch(&session.client, &session.auth, reference, ACCEPTED, MAX_SMALL_BLOB, session.stall_timeout)
            .await
    }

    async fn fetch_small_blob(&self, session: &Session<'_>, descriptor: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let oci = to_oci_descriptor(descriptor);
        if oci.size < 0 || oci.size as usize > MAX_SMALL_BLOB {
            return Err(ImageError::Registry {
                registry: session.endpoint.host.clone(),
                message: format!("config blob {} has an unreasonable size {}", oci.digest, oci.size),
            });
        }
        // The descriptor's size is what the digest check will hold it to: a
        // registry sending more is refused as the bytes come, not after.
        let mut bytes = CappedBuffer::new(oci.size as usize);
        let request = session.client.pull_blob(&session.reference, &oci, &mut bytes);
        stall_bounded(session, format!("blob {}", oci.digest), request)
            .await?
            .map_err(|e| classify(e, session.endpoint, &session.reference.whole()))?;
        Ok(bytes.into_inner())
    }

    /// Downloads and unpacks every layer not yet present, several at once. Each
    /// layer is a shared flight: concurrent pulls of images sharing it wait for
    /// the same download.
    async fn fetch_layers(
        &self,
        image: &ImageRef,
        session: &Session<'_>,
        layers: &[Descriptor],
        diff_ids: &[String],
        chain: &[String],
        tracker: &Arc<PullTracker>,
    ) -> Result<(), ImageError> {
        let mut described = Vec::with_capacity(chain.len());
        for (layer, chain_id) in layers.iter().zip(chain) {
            let present = self.snapshots.get(&self.store, chain_id)?.is_some();
            described.push((layer.digest().to_string(), layer.size(), present));
        }
        let reports = tracker.resolved(&described);
        let missing: Vec<usize> = (0..described.len()).filter(|&i| !described[i].2).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let total: u64 = missing.iter().map(|&i| layers[i].size()).sum();
        let progress = Arc::new(Progress::default());
        let _reporter = ProgressReporter::start(image.whole(), total, progress.clone());
        let _counting = self.pull_counters.count_bytes_of(progress.clone());
        let _sampling = tracker.start_sampling();
        futures::stream::iter(missing)
            .map(|i| {
                let work = LayerWork {
                    service: self,
                    client: session.client.clone(),
                    endpoint: session.endpoint.clone(),
                    auth: session.auth.clone(),
                    reference: session.reference.clone(),
                    descriptor: to_oci_descriptor(&layers[i]),
                    diff_id: diff_ids[i].clone(),
                    chain_id: chain[i].clone(),
                    parent: i.checked_sub(1).map(|p| chain[p].clone()),
                    stall_timeout: session.stall_timeout,
                    progress: progress.clone(),
                    report: reports[i].clone(),
                };
                work.run()
            })
            .buffer_unordered(self.config.images.max_concurrent_downloads)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

struct LayerWork<'a> {
    service: &'a ImageService,
    client: Arc<oci_client::Client>,
    endpoint: Endpoint,
    auth: RegistryAuth,
    reference: Reference,
    descriptor: OciDescriptor,
    diff_id: String,
    chain_id: String,
    parent: Option<String>,
    stall_timeout: Duration,
    progress: Arc<Progress>,
    report: LayerReport,
}

impl LayerWork<'_> {
    async fn run(self) -> Result<(), ImageError> {
        let LayerWork {
            service,
            client,
            endpoint,
            auth,
            reference,
            descriptor,
            diff_id,
            chain_id,
            parent,
            stall_timeout,
            progress,
            report,
        } = self;
        let snapshots = service.snapshots.clone();
        let store = service.store.clone();
        let key = chain_id.clone();
        report.phase(LayerPhase::Downloading);
        // Only the pull that starts a layer's flight counts its bytes; another
        // waiting on the same layer sees it go from downloading to unpacked.
        let flight_report = report.clone();
        service
            .layer_flights
            .run(key, move || async move {
                // Another flight may have committed it between our check and now.
                if snapshots.get(&store, &chain_id)?.is_some() {
                    return Ok(());
                }
                // oci-client keeps credentials per registry inside the client; the
                // blob requests of this flight use the pull's own.
                client.store_auth_if_needed(reference.resolve_registry(), &auth).await;
                let unpacked = snapshots.temp_dir()?;
                let source = LayerSource {
                    client: &client,
                    endpoint: &endpoint,
                    reference: &reference,
                    descriptor: &descriptor,
                    diff_id: &diff_id,
                    stall_timeout,
                    progress: &progress,
                    report: &flight_report,
                };
                let unpacked = fetch_and_unpack(source, unpacked).await?;
                tokio::task::spawn_blocking(move || {
                    snapshots.commit(&store, &chain_id, parent.as_deref(), &diff_id, unpacked).map(|_| ())
                })
                .await
                .map_err(|e| ImageError::Internal(format!("snapshot commit task: {e}")))?
            })
            .await
            .map_err(ImageError::Shared)?;
        report.phase(LayerPhase::Unpacked);
        Ok(())
    }
}

async fn stall_bounded<T>(
    session: &Session<'_>,
    what: String,
    request: impl Future<Output = T>,
) -> Result<T, ImageError> {
    tokio::time::timeout(session.stall_timeout, request)
        .await
        .map_err(|_| ImageError::Stalled { what, seconds: session.stall_timeout.as_secs() })
}

fn verify(bytes: &[u8], digest: &str, what: impl FnOnce() -> String) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch { what: what(), expected: digest.to_string(), actual });
    }
    Ok(())
}

fn to_oci_descriptor(descriptor: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: descriptor.media_type().to_string(),
        digest: descriptor.digest().to_string(),
        size: i64::try_from(descriptor.size()).unwrap_or(i64::MAX),
        urls: None,
        annotations: None,
        ..Default::default()
    }
}

/// Logs a pull's progress at info level every few seconds while it runs.
struct ProgressReporter {
    task: tokio::task::JoinHandle<()>,
}

impl ProgressReporter {
    fn start(image: String, total: u64, progress: Arc<Progress>) -> Self {
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(PROGRESS_EVERY);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let done = progress.done.load(Ordering::Relaxed);
                tracing::info!(image = %image, done_bytes = done, total_bytes = total, "pulling");
            }
        });
        ProgressReporter { task }
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
