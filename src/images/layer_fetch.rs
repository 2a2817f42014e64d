//! One layer, from the registry's byte stream to an unpacked directory, with no
//! intermediate file: the async side streams chunks into a bounded channel; a
//! blocking thread hashes the compressed bytes, decompresses (gzip, zstd or
//! none, detected from the bytes), hashes the tar and unpacks it. Memory is
//! bounded by the channel, whatever the layer's size.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use oci_client::Reference;
use oci_client::manifest::OciDescriptor;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::sync::mpsc;

use super::error::ImageError;
use super::pull_progress::{LayerPhase, LayerReport};
use super::registry::{Endpoint, classify};
use super::unpack::unpack_layer;

/// Chunks buffered between download and unpack. hyper hands over whatever one
/// socket read gave, up to a few hundred KiB on loopback, so this bounds a
/// layer's in-flight memory to about a MiB; more buys no throughput, since
/// decompression and writing are the slower side.
const CHUNKS_IN_FLIGHT: usize = 4;
const READ_BUFFER: usize = 256 * 1024;

/// Bytes a pull has received, shared by its layers for progress logging.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
}

pub struct LayerSource<'a> {
    pub client: &'a oci_client::Client,
    pub endpoint: &'a Endpoint,
    pub reference: &'a Reference,
    pub descriptor: &'a OciDescriptor,
    pub diff_id: &'a str,
    pub stall_timeout: Duration,
    pub progress: &'a Arc<Progress>,
    /// This layer's part of the pull's progress, for its watchers.
    pub report: &'a LayerReport,
}

/// Downloads the layer and unpacks it into `unpacked/fs`, checking its digest,
/// size and diff ID; hands the directory back on success.
///
/// The directory travels with the blocking unpacker: if this future is dropped
/// (the pull was cancelled) the unpacker sees the stream end, stops writing,
/// and only then drops the directory, so its removal never races a writer.
pub async fn fetch_and_unpack(source: LayerSource<'_>, unpacked: TempDir) -> Result<TempDir, ImageError> {
    let descriptor = source.descriptor;
    let what = format!("layer {}", descriptor.digest);
    let stalled = || ImageError::Stalled { what: what.clone(), seconds: source.stall_timeout.as_secs() };
    let expected_size = u64::try_from(descriptor.size).unwrap_or(0);

    let blob = tokio::time::timeout(source.stall_timeout, source.client.pull_blob_stream(source.reference, descriptor))
        .await
        .map_err(|_| stalled())?
        .map_err(|e| classify(e, source.endpoint, &source.reference.whole()))?;
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let unpacker = tokio::task::spawn_blocking(move || {
        unpack_from_channel(rx, unpacked.path().join("fs")).map(|digests| (digests, unpacked))
    });

    let mut stream = blob.stream;
    let mut received: u64 = 0;
    let download = loop {
        match tokio::time::timeout(source.stall_timeout, stream.next()).await {
            Err(_) => break Err(stalled()),
            Ok(None) => break Ok(()),
            Ok(Some(Err(e))) => {
                break Err(ImageError::Registry {
                    registry: source.endpoint.host.clone(),
                    message: format!("{what}: {e}"),
                });
            }
            Ok(Some(Ok(chunk))) => {
                received += chunk.len() as u64;
                source.progress.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                source.report.received(chunk.len() as u64);
                // A registry sending more than the manifest promised is lying; stop at once.
                if received > expected_size {
                    break Err(ImageError::SizeMismatch {
                        what: what.clone(),
                        expected: expected_size,
                        actual: received,
                    });
                }
                if tx.send(chunk).await.is_err() {
                    break Ok(()); // the unpacker failed: its error says why
                }
            }
        }
    };
    drop(tx);
    if download.is_ok() {
        source.report.phase(LayerPhase::Unpacking);
    }
    let unpacked = unpacker.await.map_err(|e| ImageError::Internal(format!("{what}: unpack task: {e}")))?;
    download?;
    let (digests, unpacked) = unpacked?;
    if digests.size != expected_size {
        return Err(ImageError::SizeMismatch { what, expected: expected_size, actual: digests.size });
    }
    if digests.compressed != descriptor.digest {
        return Err(ImageError::DigestMismatch {
            what,
            expected: descriptor.digest.clone(),
            actual: digests.compressed,
        });
    }
    if digests.uncompressed != source.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("{what} (uncompressed, the config's diff ID)"),
            expected: source.diff_id.to_string(),
            actual: digests.uncompressed,
        });
    }
    Ok(unpacked)
}

struct LayerDigests {
    compressed: String,
    size: u64,
    uncompressed: String,
}

fn unpack_from_channel(rx: mpsc::Receiver<Bytes>, dest: PathBuf) -> Result<LayerDigests, ImageError> {
    let layer_error = |message: String| ImageError::Layer { digest: String::new(), message };
    let mut compressed = BufReader::with_capacity(READ_BUFFER, Hashing::new(ChannelReader { rx, chunk: Bytes::new() }));
    let head = compressed.fill_buf().map_err(|e| layer_error(e.to_string()))?;
    let uncompressed = match Compression::sniff(head) {
        Compression::Gzip => unpack_hashing(flate2::bufread::MultiGzDecoder::new(&mut compressed), &dest),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(&mut compressed).map_err(|e| layer_error(e.to_string()))?;
            unpack_hashing(decoder, &dest)
        }
        Compression::None => unpack_hashing(&mut compressed, &dest),
    }?;
    // Whatever follows the compressed stream's end still counts for the digest.
    std::io::copy(&mut compressed, &mut std::io::sink()).map_err(|e| layer_error(e.to_string()))?;
    let (compressed, size) = compressed.into_inner().finish();
    Ok(LayerDigests { compressed, size, uncompressed })
}

fn unpack_hashing<R: Read>(reader: R, dest: &std::path::Path) -> Result<String, ImageError> {
    let mut tar = Hashing::new(reader);
    unpack_layer(&mut tar, dest).map_err(|e| ImageError::Layer { digest: String::new(), message: e.to_string() })?;
    Ok(tar.finish().0)
}

enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// By magic number rather than media type: registries and old clients
    /// mislabel layers, and containerd sniffs too.
    fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// Feeds the blocking side from the download; EOF when the sender is gone.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Hashes and counts what is read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0 }
    }

    fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex::encode(self.hasher.finalize())), self.count)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
