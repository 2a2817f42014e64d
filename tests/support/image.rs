//! Builds OCI and Docker schema2 images in memory and pushes them to a test
//! [`Registry`] over plain HTTP.
//!
//! Everything here is deterministic: fixed timestamps, seeded pseudo-random
//! content, sorted JSON keys. The same builder calls always give the same
//! digests, so tests may compare digests across runs.
//!
//! Typical use:
//! ```ignore
//! let image = ImageBuilder::new()
//!     .layer(Layer::busybox(), Compression::Gzip)
//!     .cmd(["sh", "-c", "echo hello"])
//!     .build();
//! let digest = image.push(&registry, "test/busybox", "latest").await;
//! ```
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::time::Duration;

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::registry::Registry;

/// Modification time of every entry that does not set its own, and the
/// `created` time of every image: a fixed instant, so digests are stable.
pub const DEFAULT_MTIME: u64 = 1_700_000_000;
/// [`DEFAULT_MTIME`] in RFC 3339.
pub const CREATED: &str = "2023-11-14T22:13:20Z";

/// Media types used by the builder, and the index types for tests that check them.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    /// Every manifest and index type, for an `Accept` header that takes anything.
    pub const ALL_MANIFESTS: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];
}

/// "sha256:<hex>" of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

/// Content of a regular file.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    /// `size` pseudo-random bytes from `seed`, generated while the tar is
    /// written, so large files never sit in memory uncompressed.
    Random {
        size: u64,
        seed: u64,
    },
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Random { size, .. } => *size,
        }
    }

    fn reader(&self) -> Box<dyn Read + '_> {
        match self {
            Content::Bytes(bytes) => Box::new(bytes.as_slice()),
            Content::Random { size, seed } => Box::new(RandomReader::new(*seed, *size)),
        }
    }
}

/// A regular file with every attribute a test may want to set.
#[derive(Clone, Debug)]
pub struct FileEntry {
    /// Path in the image; a leading '/' is dropped in the tar, as in real layers.
    pub path: String,
    pub content: Content,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; [`DEFAULT_MTIME`] when `None`.
    pub mtime: Option<u64>,
    /// Extended attributes ("user.foo", "security.capability", ...), written as
    /// PAX `SCHILY.xattr.<name>` records before the file's header.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl FileEntry {
    /// A root-owned 0644 file.
    pub fn new(path: impl Into<String>, content: impl Into<Vec<u8>>) -> FileEntry {
        FileEntry {
            path: path.into(),
            content: Content::Bytes(content.into()),
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: None,
            xattrs: Vec::new(),
        }
    }

    pub fn mode(mut self, mode: u32) -> FileEntry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> FileEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> FileEntry {
        self.mtime = Some(mtime);
        self
    }

    pub fn xattr(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> FileEntry {
        self.xattrs.push((name.into(), value.into()));
        self
    }
}

/// An entry written exactly as given, bypassing the `tar` crate's path checks
/// (which refuse absolute paths and `..`): for hostile layers.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// Written byte for byte into the header's 100-byte name field, so it must
    /// be shorter than 100 bytes (no GNU long-name support for raw entries).
    pub name: Vec<u8>,
    pub kind: tar::EntryType,
    /// Link target for symlinks and hardlinks, byte for byte (< 100 bytes).
    pub link_name: Vec<u8>,
    pub content: Vec<u8>,
    pub mode: u32,
}

/// One entry of a [`Layer`].
#[derive(Clone, Debug)]
pub enum Entry {
    File(FileEntry),
    Dir {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    /// `target` is written verbatim (it may be absolute or contain `..`).
    Symlink {
        path: String,
        target: String,
    },
    /// `target` is a path in the archive (a leading '/' is dropped).
    Hardlink {
        path: String,
        target: String,
    },
    CharDevice {
        path: String,
        major: u32,
        minor: u32,
        mode: u32,
    },
    BlockDevice {
        path: String,
        major: u32,
        minor: u32,
        mode: u32,
    },
    Fifo {
        path: String,
        mode: u32,
    },
    /// Deletes `path` from lower layers: written as `<dir>/.wh.<name>`.
    Whiteout {
        path: String,
    },
    /// Hides everything lower layers put in `dir`: `<dir>/.wh..wh..opq`.
    Opaque {
        dir: String,
    },
    Raw(RawEntry),
}

/// The content of one layer: an ordered list of tar entries.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

/// Applets linked to `/bin/busybox` by [`Layer::busybox`].
#[rustfmt::skip]
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "echo", "sleep", "cat", "ls", "id", "env", "true", "false", "test", "[",
    "printf", "pwd", "mkdir", "rmdir", "rm", "touch", "cp", "mv", "ln", "chmod", "chown",
    "stat", "readlink", "head", "tail", "wc", "grep", "sed", "awk", "sort", "uniq", "tr", "cut",
    "tee", "seq", "dd", "df", "du", "find", "xargs", "basename", "dirname", "hostname", "uname",
    "date", "whoami", "kill", "ps", "mount", "umount", "mknod", "mkfifo", "sha256sum", "md5sum",
    "nc", "wget", "ip", "ping", "nslookup", "timeout", "usleep", "yes", "sync", "which", "xxd",
    "vi", "nproc", "top", "httpd",
];

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    /// `/bin/busybox` (this machine's busybox-static) with [`BUSYBOX_APPLETS`]
    /// symlinked to it, and the usual top-level directories.
    pub fn busybox() -> Layer {
        let busybox =
            std::fs::read("/usr/bin/busybox").expect("reading /usr/bin/busybox (Debian package busybox-static)");
        let mut layer = Layer::new()
            .dir("/bin", 0o755)
            .dir("/dev", 0o755)
            .dir("/etc", 0o755)
            .dir("/proc", 0o555)
            .dir("/root", 0o700)
            .dir("/sys", 0o555)
            .dir("/tmp", 0o1777)
            .file("/bin/busybox", busybox, 0o755);
        for applet in BUSYBOX_APPLETS {
            layer = layer.symlink(format!("/bin/{applet}"), "busybox");
        }
        layer
    }

    /// `/etc/passwd` and `/etc/group` with the given contents.
    pub fn files_etc_passwd(passwd: &str, group: &str) -> Layer {
        Layer::new().dir("/etc", 0o755).file("/etc/passwd", passwd, 0o644).file("/etc/group", group, 0o644)
    }

    /// One file, `/random-<seed>.bin`, of `size` incompressible bytes derived
    /// from `seed`: for benchmarks and size-sensitive tests.
    pub fn random(size: u64, seed: u64) -> Layer {
        Layer::new().random_file(format!("/random-{seed}.bin"), size, seed)
    }

    pub fn entry(mut self, entry: Entry) -> Layer {
        self.entries.push(entry);
        self
    }

    /// A root-owned regular file.
    pub fn file(self, path: impl Into<String>, content: impl Into<Vec<u8>>, mode: u32) -> Layer {
        self.entry(Entry::File(FileEntry::new(path, content).mode(mode)))
    }

    pub fn file_owned(
        self,
        path: impl Into<String>,
        content: impl Into<Vec<u8>>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Layer {
        self.entry(Entry::File(FileEntry::new(path, content).mode(mode).owner(uid, gid)))
    }

    /// A file with mtime, xattrs, ...: see [`FileEntry`].
    pub fn file_entry(self, file: FileEntry) -> Layer {
        self.entry(Entry::File(file))
    }

    /// A root-owned 0644 file of `size` pseudo-random bytes from `seed`.
    pub fn random_file(self, path: impl Into<String>, size: u64, seed: u64) -> Layer {
        let mut file = FileEntry::new(path, Vec::new());
        file.content = Content::Random { size, seed };
        self.entry(Entry::File(file))
    }

    /// A root-owned directory.
    pub fn dir(self, path: impl Into<String>, mode: u32) -> Layer {
        self.dir_owned(path, mode, 0, 0)
    }

    pub fn dir_owned(self, path: impl Into<String>, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entry(Entry::Dir { path: path.into(), mode, uid, gid })
    }

    pub fn symlink(self, path: impl Into<String>, target: impl Into<String>) -> Layer {
        self.entry(Entry::Symlink { path: path.into(), target: target.into() })
    }

    pub fn hardlink(self, path: impl Into<String>, target: impl Into<String>) -> Layer {
        self.entry(Entry::Hardlink { path: path.into(), target: target.into() })
    }

    pub fn char_device(self, path: impl Into<String>, major: u32, minor: u32, mode: u32) -> Layer {
        self.entry(Entry::CharDevice { path: path.into(), major, minor, mode })
    }

    pub fn block_device(self, path: impl Into<String>, major: u32, minor: u32, mode: u32) -> Layer {
        self.entry(Entry::BlockDevice { path: path.into(), major, minor, mode })
    }

    pub fn fifo(self, path: impl Into<String>, mode: u32) -> Layer {
        self.entry(Entry::Fifo { path: path.into(), mode })
    }

    pub fn whiteout(self, path: impl Into<String>) -> Layer {
        self.entry(Entry::Whiteout { path: path.into() })
    }

    pub fn opaque(self, dir: impl Into<String>) -> Layer {
        self.entry(Entry::Opaque { dir: dir.into() })
    }

    pub fn raw(self, raw: RawEntry) -> Layer {
        self.entry(Entry::Raw(raw))
    }

    /// A regular file named exactly `name` (e.g. `/etc/evil`, `../../escape`).
    pub fn raw_file(self, name: impl AsRef<[u8]>, content: impl Into<Vec<u8>>) -> Layer {
        self.raw(RawEntry {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Regular,
            link_name: Vec::new(),
            content: content.into(),
            mode: 0o644,
        })
    }

    /// A directory named exactly `name`.
    pub fn raw_dir(self, name: impl AsRef<[u8]>) -> Layer {
        self.raw(RawEntry {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Directory,
            link_name: Vec::new(),
            content: Vec::new(),
            mode: 0o755,
        })
    }

    /// A symlink named exactly `name` pointing to exactly `target` (e.g. `link -> /`).
    pub fn raw_symlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Layer {
        self.raw(RawEntry {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Symlink,
            link_name: target.as_ref().to_vec(),
            content: Vec::new(),
            mode: 0o777,
        })
    }

    /// A hardlink named exactly `name` to exactly `target` (e.g. `../../etc/passwd`).
    pub fn raw_hardlink(self, name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Layer {
        self.raw(RawEntry {
            name: name.as_ref().to_vec(),
            kind: tar::EntryType::Link,
            link_name: target.as_ref().to_vec(),
            content: Vec::new(),
            mode: 0o644,
        })
    }

    /// The layer as an uncompressed tar.
    pub fn to_tar(&self) -> Vec<u8> {
        self.write_tar(Vec::new())
    }

    /// Writes the layer as a tar into `out` and gives `out` back.
    fn write_tar<W: Write>(&self, out: W) -> W {
        let mut builder = tar::Builder::new(out);
        for entry in &self.entries {
            append_entry(&mut builder, entry).unwrap_or_else(|e| panic!("writing tar entry {entry:?}: {e}"));
        }
        builder.into_inner().expect("finishing a layer tar")
    }
}

/// Real layers hold relative paths ("bin/sh", not "/bin/sh").
fn archive_path(path: &str) -> &str {
    let relative = path.trim_start_matches('/');
    assert!(!relative.is_empty(), "tar entry path {path:?} names the root; use a raw entry for that");
    relative
}

/// `<dir>/<prefix><name>` for whiteouts: the marker sits beside what it hides.
fn whiteout_path(path: &str, prefix: &str) -> String {
    let path = archive_path(path).trim_end_matches('/');
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{prefix}{name}"),
        None => format!("{prefix}{path}"),
    }
}

/// A ustar header (what Go's archive/tar, hence docker and buildkit, writes
/// when the entry fits) with the common fields set.
fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(mtime);
    header.set_size(0);
    header
}

fn append_entry<W: Write>(builder: &mut tar::Builder<W>, entry: &Entry) -> io::Result<()> {
    use tar::EntryType;
    match entry {
        Entry::File(file) => {
            if !file.xattrs.is_empty() {
                let records: Vec<(String, &[u8])> = file
                    .xattrs
                    .iter()
                    .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice()))
                    .collect();
                builder.append_pax_extensions(records.iter().map(|(key, value)| (key.as_str(), *value)))?;
            }
            let mut h = header(EntryType::Regular, file.mode, file.uid, file.gid, file.mtime.unwrap_or(DEFAULT_MTIME));
            h.set_size(file.content.len());
            builder.append_data(&mut h, archive_path(&file.path), file.content.reader())
        }
        Entry::Dir { path, mode, uid, gid } => {
            let mut h = header(EntryType::Directory, *mode, *uid, *gid, DEFAULT_MTIME);
            // Directory names end in '/' in real layers.
            let path = format!("{}/", archive_path(path).trim_end_matches('/'));
            builder.append_data(&mut h, path, io::empty())
        }
        Entry::Symlink { path, target } => {
            let mut h = header(EntryType::Symlink, 0o777, 0, 0, DEFAULT_MTIME);
            builder.append_link(&mut h, archive_path(path), target)
        }
        Entry::Hardlink { path, target } => {
            let mut h = header(EntryType::Link, 0o644, 0, 0, DEFAULT_MTIME);
            builder.append_link(&mut h, archive_path(path), archive_path(target))
        }
        Entry::CharDevice { path, major, minor, mode } | Entry::BlockDevice { path, major, minor, mode } => {
            let kind = if matches!(entry, Entry::CharDevice { .. }) { EntryType::Char } else { EntryType::Block };
            let mut h = header(kind, *mode, 0, 0, DEFAULT_MTIME);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            builder.append_data(&mut h, archive_path(path), io::empty())
        }
        Entry::Fifo { path, mode } => {
            let mut h = header(EntryType::Fifo, *mode, 0, 0, DEFAULT_MTIME);
            builder.append_data(&mut h, archive_path(path), io::empty())
        }
        Entry::Whiteout { path } => {
            let mut h = header(EntryType::Regular, 0o644, 0, 0, DEFAULT_MTIME);
            builder.append_data(&mut h, whiteout_path(path, ".wh."), io::empty())
        }
        Entry::Opaque { dir } => {
            let mut h = header(EntryType::Regular, 0o644, 0, 0, DEFAULT_MTIME);
            let marker = format!("{}/.wh..wh..opq", archive_path(dir).trim_end_matches('/'));
            builder.append_data(&mut h, marker, io::empty())
        }
        Entry::Raw(raw) => {
            let mut h = header(raw.kind, raw.mode, 0, 0, DEFAULT_MTIME);
            let name_field = &mut h.as_old_mut().name;
            assert!(
                raw.name.len() < name_field.len(),
                "raw tar entry names must be shorter than {} bytes: {:?}",
                name_field.len(),
                String::from_utf8_lossy(&raw.name)
            );
            name_field[..raw.name.len()].copy_from_slice(&raw.name);
            if !raw.link_name.is_empty() {
                h.set_link_name_literal(&raw.link_name)?;
            }
            h.set_size(raw.content.len() as u64);
            h.set_cksum();
            builder.append(&h, raw.content.as_slice())
        }
    }
}

/// Deterministic incompressible bytes: xorshift64* seeded through splitmix64
/// (so that small or zero seeds still give a good state).
struct RandomReader {
    state: u64,
    remaining: u64,
    /// Unused bytes of the last generated word.
    pending: [u8; 8],
    pending_len: usize,
}

impl RandomReader {
    fn new(seed: u64, size: u64) -> RandomReader {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        RandomReader { state: z | 1, remaining: size, pending: [0; 8], pending_len: 0 }
    }

    fn next_word(&mut self) -> [u8; 8] {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes()
    }
}

impl Read for RandomReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut filled = 0;
        while filled < want {
            if self.pending_len == 0 {
                self.pending = self.next_word();
                self.pending_len = 8;
            }
            let take = self.pending_len.min(want - filled);
            let start = 8 - self.pending_len;
            buf[filled..filled + take].copy_from_slice(&self.pending[start..start + take]);
            self.pending_len -= take;
            filled += take;
        }
        self.remaining -= filled as u64;
        Ok(filled)
    }
}

// ---------------------------------------------------------------------------
// Compression and built layers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Which family of media types the manifest, config and layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTypes {
    Oci,
    /// Docker image manifest v2 schema 2.
    Docker,
}

impl MediaTypes {
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => media_type::OCI_MANIFEST,
            MediaTypes::Docker => media_type::DOCKER_MANIFEST,
        }
    }

    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => media_type::OCI_INDEX,
            MediaTypes::Docker => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => media_type::OCI_CONFIG,
            MediaTypes::Docker => media_type::DOCKER_CONFIG,
        }
    }

    pub fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (MediaTypes::Oci, Compression::None) => media_type::OCI_LAYER,
            (MediaTypes::Oci, Compression::Gzip) => media_type::OCI_LAYER_GZIP,
            (MediaTypes::Oci, Compression::Zstd) => media_type::OCI_LAYER_ZSTD,
            (MediaTypes::Docker, Compression::None) => media_type::DOCKER_LAYER,
            (MediaTypes::Docker, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
            (MediaTypes::Docker, Compression::Zstd) => {
                panic!("Docker schema2 has no zstd layer media type; use MediaTypes::Oci or a raw manifest")
            }
        }
    }
}

/// A layer as it is pushed: compressed bytes plus the digests that name it.
#[derive(Clone, Debug)]
pub struct BuiltLayer {
    pub media_type: &'static str,
    pub compression: Compression,
    /// Digest of the compressed blob, as listed in the manifest.
    pub digest: String,
    /// Digest of the uncompressed tar, as listed in the config's `rootfs.diff_ids`.
    pub diff_id: String,
    pub uncompressed_size: u64,
    /// The blob (compressed) itself.
    pub bytes: Vec<u8>,
}

impl BuiltLayer {
    fn build(layer: &Layer, compression: Compression, media_types: MediaTypes) -> BuiltLayer {
        // Check the media type first: a Docker + zstd mistake should fail
        // before minutes of compression.
        let media_type = media_types.layer(compression);
        // The tar streams through a hasher (for the diff_id) into the
        // compressor, so a 64 MiB random layer is held only once, compressed.
        let encoder = match compression {
            Compression::None => Encoder::None(Vec::new()),
            // Level 1: the level changes no test's meaning, and on random
            // benchmark layers it is several times faster than the default.
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            Compression::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), zstd::DEFAULT_COMPRESSION_LEVEL)
                    .expect("creating a zstd encoder"),
            ),
        };
        let hashing = layer.write_tar(HashingWriter { inner: encoder, hasher: Sha256::new(), size: 0 });
        let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
        let bytes = hashing.inner.finish();
        BuiltLayer {
            media_type,
            compression,
            digest: sha256_digest(&bytes),
            diff_id,
            uncompressed_size: hashing.size,
            bytes,
        }
    }

    fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn finish(self) -> Vec<u8> {
        match self {
            Encoder::None(bytes) => bytes,
            Encoder::Gzip(encoder) => encoder.finish().expect("finishing gzip compression"),
            Encoder::Zstd(encoder) => encoder.finish().expect("finishing zstd compression"),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(bytes) => bytes.write(buf),
            Encoder::Gzip(encoder) => encoder.write(buf),
            Encoder::Zstd(encoder) => encoder.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(_) => Ok(()),
            Encoder::Gzip(encoder) => encoder.flush(),
            Encoder::Zstd(encoder) => encoder.flush(),
        }
    }
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform { os: os.to_owned(), architecture: architecture.to_owned(), variant: variant.map(str::to_owned) }
    }

    /// This machine's platform in OCI/Go terms (linux/amd64, linux/arm64, ...).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, architecture, None)
    }

    /// The `platform` object of an index entry.
    pub fn to_json(&self) -> Value {
        let mut platform = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        platform
    }
}

/// Builds an image: layers plus the runtime configuration of its config blob.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<(Layer, Compression)>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    labels: BTreeMap<String, String>,
    exposed_ports: BTreeSet<String>,
    stop_signal: Option<String>,
    platform: Platform,
    media_types: MediaTypes,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl ImageBuilder {
    /// No layers, no configuration, the host's platform, OCI media types.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            exposed_ports: BTreeSet::new(),
            stop_signal: None,
            platform: Platform::host(),
            media_types: MediaTypes::Oci,
        }
    }

    /// The common test image: one gzip busybox layer, `PATH=/bin`, `CMD ["sh"]`.
    pub fn busybox() -> ImageBuilder {
        ImageBuilder::new().layer(Layer::busybox(), Compression::Gzip).env(["PATH=/bin"]).cmd(["sh"])
    }

    pub fn layer(mut self, layer: Layer, compression: Compression) -> ImageBuilder {
        self.layers.push((layer, compression));
        self
    }

    pub fn entrypoint<I: IntoIterator<Item = S>, S: Into<String>>(mut self, entrypoint: I) -> ImageBuilder {
        self.entrypoint = Some(strings(entrypoint));
        self
    }

    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, cmd: I) -> ImageBuilder {
        self.cmd = Some(strings(cmd));
        self
    }

    /// Replaces the environment: "NAME=value" strings.
    pub fn env<I: IntoIterator<Item = S>, S: Into<String>>(mut self, env: I) -> ImageBuilder {
        self.env = strings(env);
        self
    }

    pub fn working_dir(mut self, dir: impl Into<String>) -> ImageBuilder {
        self.working_dir = Some(dir.into());
        self
    }

    /// "uid", "uid:gid", "name" or "name:group", as in a Dockerfile's USER.
    pub fn user(mut self, user: impl Into<String>) -> ImageBuilder {
        self.user = Some(user.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageBuilder {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// "8080/tcp", "53/udp", ...
    pub fn exposed_port(mut self, port: impl Into<String>) -> ImageBuilder {
        self.exposed_ports.insert(port.into());
        self
    }

    /// "SIGTERM", "SIGQUIT", "9", ...
    pub fn stop_signal(mut self, signal: impl Into<String>) -> ImageBuilder {
        self.stop_signal = Some(signal.into());
        self
    }

    pub fn platform(mut self, os: &str, architecture: &str, variant: Option<&str>) -> ImageBuilder {
        self.platform = Platform::new(os, architecture, variant);
        self
    }

    pub fn media_types(mut self, media_types: MediaTypes) -> ImageBuilder {
        self.media_types = media_types;
        self
    }

    /// The image's runtime configuration (the config blob's `config` object),
    /// with only the fields that were set, as docker writes it.
    fn runtime_config(&self) -> Value {
        let mut config = serde_json::Map::new();
        if let Some(user) = &self.user {
            config.insert("User".into(), json!(user));
        }
        if !self.exposed_ports.is_empty() {
            let ports: BTreeMap<&str, Value> = self.exposed_ports.iter().map(|p| (p.as_str(), json!({}))).collect();
            config.insert("ExposedPorts".into(), json!(ports));
        }
        if !self.env.is_empty() {
            config.insert("Env".into(), json!(self.env));
        }
        if let Some(entrypoint) = &self.entrypoint {
            config.insert("Entrypoint".into(), json!(entrypoint));
        }
        if let Some(cmd) = &self.cmd {
            config.insert("Cmd".into(), json!(cmd));
        }
        if let Some(dir) = &self.working_dir {
            config.insert("WorkingDir".into(), json!(dir));
        }
        if !self.labels.is_empty() {
            config.insert("Labels".into(), json!(self.labels));
        }
        if let Some(signal) = &self.stop_signal {
            config.insert("StopSignal".into(), json!(signal));
        }
        Value::Object(config)
    }

    pub fn build(self) -> BuiltImage {
        let layers: Vec<BuiltLayer> = self
            .layers
            .iter()
            .map(|(layer, compression)| BuiltLayer::build(layer, *compression, self.media_types))
            .collect();

        let history: Vec<Value> = (1..=layers.len())
            .map(|n| json!({ "created": CREATED, "created_by": format!("berth testbed layer {n}") }))
            .collect();
        let mut config = json!({
            "created": CREATED,
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": self.runtime_config(),
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        if let Some(variant) = &self.platform.variant {
            config["variant"] = json!(variant);
        }
        let config = serde_json::to_vec(&config).expect("serialising an image config");
        let config_digest = sha256_digest(&config);

        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": self.media_types.manifest(),
            "config": {
                "mediaType": self.media_types.config(),
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": layers.iter().map(BuiltLayer::descriptor).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).expect("serialising an image manifest");

        BuiltImage {
            platform: self.platform,
            media_types: self.media_types,
            manifest_media_type: self.media_types.manifest(),
            manifest_digest: sha256_digest(&manifest),
            manifest,
            config_digest,
            config,
            layers,
        }
    }
}

/// A built image: every blob and the manifest, ready to push.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub platform: Platform,
    pub media_types: MediaTypes,
    pub manifest_media_type: &'static str,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    /// "sha256:<hex>" of the config blob: the image ID.
    pub config_digest: String,
    pub layers: Vec<BuiltLayer>,
}

impl BuiltImage {
    /// The image ID ("sha256:<hex>"), which is the config digest.
    pub fn image_id(&self) -> &str {
        &self.config_digest
    }

    /// Compressed layer digests, as in the manifest.
    pub fn layer_digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest.clone()).collect()
    }

    /// Uncompressed layer digests, as in the config.
    pub fn diff_ids(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Total size of the blobs (config and compressed layers) plus the manifest.
    pub fn size(&self) -> u64 {
        (self.manifest.len() + self.config.len() + self.layers.iter().map(|l| l.bytes.len()).sum::<usize>()) as u64
    }

    /// The config and the layers, as (digest, bytes).
    pub fn blobs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        std::iter::once((self.config_digest.as_str(), self.config.as_slice()))
            .chain(self.layers.iter().map(|l| (l.digest.as_str(), l.bytes.as_slice())))
    }

    /// The content of blob `digest`, if it is one of this image's.
    pub fn blob(&self, digest: &str) -> Option<&[u8]> {
        self.blobs().find(|(d, _)| *d == digest).map(|(_, bytes)| bytes)
    }

    /// Descriptor of the manifest for an index, with the image's platform.
    pub fn descriptor(&self) -> Value {
        self.descriptor_as(&self.platform)
    }

    /// Descriptor of the manifest for an index, claiming `platform`.
    pub fn descriptor_as(&self, platform: &Platform) -> Value {
        json!({
            "mediaType": self.manifest_media_type,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "platform": platform.to_json(),
        })
    }

    /// Pushes the blobs, then the manifest under `tag`; returns the manifest
    /// digest the registry reported.
    pub async fn push(&self, registry: &Registry, repo: &str, tag: &str) -> String {
        RegistryClient::new(registry).push_image(repo, tag, self).await
    }

    /// [`BuiltImage::push`] with HTTP basic auth.
    pub async fn push_with_auth(
        &self,
        registry: &Registry,
        repo: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> String {
        RegistryClient::new(registry).with_basic_auth(user, password).push_image(repo, tag, self).await
    }
}

/// A multi-platform image: an OCI image index or a Docker manifest list.
#[derive(Clone, Debug)]
pub struct Index {
    media_types: MediaTypes,
    images: Vec<(BuiltImage, Platform)>,
    extra_entries: Vec<Value>,
}

impl Index {
    pub fn new(media_types: MediaTypes) -> Index {
        Index { media_types, images: Vec::new(), extra_entries: Vec::new() }
    }

    /// Adds an image under its own platform.
    pub fn image(self, image: BuiltImage) -> Index {
        let platform = image.platform.clone();
        self.image_as(image, platform)
    }

    /// Adds an image under a platform of the test's choosing (which may differ
    /// from the one its config states).
    pub fn image_as(mut self, image: BuiltImage, platform: Platform) -> Index {
        self.images.push((image, platform));
        self
    }

    /// Adds a descriptor verbatim, after the images. The registry checks that
    /// every manifest an index references exists in the repository, so push
    /// what it points to first (e.g. with [`RegistryClient::push_manifest_raw`]).
    pub fn extra_entry(mut self, descriptor: Value) -> Index {
        self.extra_entries.push(descriptor);
        self
    }

    pub fn build(self) -> BuiltIndex {
        let mut manifests: Vec<Value> =
            self.images.iter().map(|(image, platform)| image.descriptor_as(platform)).collect();
        manifests.extend(self.extra_entries);
        let index = json!({
            "schemaVersion": 2,
            "mediaType": self.media_types.index(),
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).expect("serialising an image index");
        BuiltIndex {
            media_type: self.media_types.index(),
            digest: sha256_digest(&bytes),
            bytes,
            images: self.images.into_iter().map(|(image, _)| image).collect(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BuiltIndex {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub digest: String,
    /// The images the index lists (not the extra entries).
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// Pushes every image by digest, then the index under `tag`; returns the
    /// index digest the registry reported.
    pub async fn push(&self, registry: &Registry, repo: &str, tag: &str) -> String {
        RegistryClient::new(registry).push_index(repo, tag, self).await
    }

    pub async fn push_with_auth(
        &self,
        registry: &Registry,
        repo: &str,
        tag: &str,
        user: &str,
        password: &str,
    ) -> String {
        RegistryClient::new(registry).with_basic_auth(user, password).push_index(repo, tag, self).await
    }
}

// ---------------------------------------------------------------------------
// Registry client
// ---------------------------------------------------------------------------

/// What a registry request that did not succeed got back.
#[derive(Debug)]
pub struct RegistryError {
    /// "PUT http://.../v2/x/manifests/latest" and the like.
    pub request: String,
    pub status: StatusCode,
    /// The `WWW-Authenticate` header, if any: a bearer challenge names the
    /// scope the client's token lacked.
    pub challenge: Option<String>,
    pub body: String,
}

impl RegistryError {
    /// Reads what the registry said in `response` to `request`.
    async fn read(request: String, response: reqwest::Response) -> RegistryError {
        let status = response.status();
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = response.text().await.unwrap_or_default();
        RegistryError { request, status, challenge, body }
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered {}", self.request, self.status)?;
        if let Some(challenge) = &self.challenge {
            write!(f, " (challenge {challenge})")?;
        }
        write!(f, ": {}", self.body)
    }
}

/// A manifest (or index) as the registry served it.
#[derive(Debug)]
pub struct FetchedManifest {
    /// The `Docker-Content-Digest` header.
    pub digest: String,
    /// The `Content-Type` header.
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// How a [`RegistryClient`] authenticates its requests.
#[derive(Clone, Debug, Default)]
pub enum ClientAuth {
    #[default]
    None,
    /// HTTP basic credentials, for a registry with `htpasswd` auth.
    Basic { user: String, password: String },
    /// A fixed bearer token, for a registry with token auth: minted, or got
    /// from the token server by the test (the client runs no challenge dance).
    Bearer(String),
}

/// A minimal distribution-API client for pushing test content and reading it
/// back. Helpers panic on failure; the `try_` ones return the error instead,
/// for tests that expect the registry to refuse something.
///
/// What the registry (distribution 2.8) verifies, and so which lies a test can
/// and cannot push:
/// - Blob uploads are checked: content whose sha256 differs from the `digest`
///   parameter is refused (400 DIGEST_INVALID). To serve a blob whose content
///   does not match its digest, push it honestly and then overwrite the file
///   at [`Registry::blob_data_path`].
/// - Manifests must parse as the schema their Content-Type names, and what
///   they reference must exist in the same repository (blobs, and the child
///   manifests of an index; see the testbed tests). Descriptor `size`s are
///   NOT checked, nor is the config's `diff_ids` against the layers, nor an
///   index entry's `platform` against the child's config. So a manifest may
///   list a layer with a wrong size, or reference another existing blob in
///   place of the right one; push it with [`RegistryClient::push_manifest_raw`].
#[derive(Clone)]
pub struct RegistryClient {
    base: Url,
    http: reqwest::Client,
    auth: ClientAuth,
}

impl RegistryClient {
    pub fn new(registry: &Registry) -> RegistryClient {
        RegistryClient::from_url(&registry.url())
    }

    /// A client for any registry at `url` ("http://host:port").
    pub fn from_url(url: &str) -> RegistryClient {
        crate::support::registry::install_crypto_provider();
        let http = reqwest::Client::builder()
            // Only loopback registries here; never go through a proxy from the environment.
            .no_proxy()
            // The test bed's TLS registries use throwaway self-signed certificates.
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("building an HTTP client");
        let base = Url::parse(url).unwrap_or_else(|e| panic!("registry URL {url:?}: {e}"));
        RegistryClient { base, http, auth: ClientAuth::None }
    }

    pub fn with_auth(mut self, auth: ClientAuth) -> RegistryClient {
        self.auth = auth;
        self
    }

    pub fn with_basic_auth(self, user: &str, password: &str) -> RegistryClient {
        self.with_auth(ClientAuth::Basic { user: user.to_owned(), password: password.to_owned() })
    }

    pub fn with_bearer_token(self, token: &str) -> RegistryClient {
        self.with_auth(ClientAuth::Bearer(token.to_owned()))
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).unwrap_or_else(|e| panic!("joining {path:?} to {}: {e}", self.base))
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            ClientAuth::None => request,
            ClientAuth::Basic { user, password } => request.basic_auth(user, Some(password)),
            ClientAuth::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends a request and turns anything but `expected` into a RegistryError.
    ///
    /// Debian's docker-registry (filesystem driver) answers 500 now and then
    /// when the same blob is pushed to several repositories at once (critest's
    /// images share layers): a HEAD or PUT that can be sent again is, a few
    /// times, before its answer counts.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<reqwest::Response, RegistryError> {
        let request = request.build().expect("building a registry request");
        let description = format!("{} {}", request.method(), request.url());
        let (mut current, mut retries) = (request, 0u32);
        loop {
            let copy = if retries < 4 { current.try_clone() } else { None };
            let response = self
                .http
                .execute(current)
                .await
                .unwrap_or_else(|e| panic!("{description}: no answer from the registry: {e}"));
            if response.status() == expected {
                return Ok(response);
            }
            match copy {
                Some(copy) if response.status().is_server_error() => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(50 << retries)).await;
                    current = copy;
                }
                _ => return Err(RegistryError::read(description, response).await),
            }
        }
    }

    /// GET `path` (e.g. "/v2/") with this client's credentials, whatever the answer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let url = self.url(path);
        self.request(Method::GET, url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: no answer from the registry: {e}"))
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        match self.send(self.request(Method::HEAD, url), StatusCode::OK).await {
            Ok(_) => true,
            Err(e) if e.status == StatusCode::NOT_FOUND => false,
            Err(e) => panic!("checking whether blob {digest} exists: {e}"),
        }
    }

    /// Uploads `bytes` unless the repository already has them; returns their digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        if !self.blob_exists(repo, &digest).await {
            self.try_upload_blob(repo, bytes, &digest)
                .await
                .unwrap_or_else(|e| panic!("uploading blob {digest} to {repo}: {e}"));
        }
        digest
    }

    /// Uploads `bytes` claiming they have `digest` (which the registry checks),
    /// in one monolithic PUT.
    pub async fn try_upload_blob(&self, repo: &str, bytes: &[u8], digest: &str) -> Result<(), RegistryError> {
        let start = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let response = self.send(self.request(Method::POST, start), StatusCode::ACCEPTED).await?;
        let location = response
            .headers()
            .get("Location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_else(|| panic!("starting an upload to {repo}: the registry sent no Location header"))
            .to_owned();
        // Location may be absolute or relative, and usually carries its own
        // query (upload state), to which the digest is added.
        let mut url = self.url(&location);
        url.query_pairs_mut().append_pair("digest", digest);
        let put =
            self.request(Method::PUT, url).header("Content-Type", "application/octet-stream").body(bytes.to_vec());
        self.send(put, StatusCode::CREATED).await?;
        Ok(())
    }

    /// PUTs a manifest (or index) as given, under `reference` (a tag or a
    /// digest); returns the digest the registry reported.
    pub async fn push_manifest_raw(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) -> String {
        self.try_push_manifest_raw(repo, reference, media_type, bytes)
            .await
            .unwrap_or_else(|e| panic!("pushing manifest {repo}:{reference}: {e}"))
    }

    pub async fn try_push_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<String, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let put = self.request(Method::PUT, url).header("Content-Type", media_type).body(bytes.to_vec());
        let response = self.send(put, StatusCode::CREATED).await?;
        Ok(docker_content_digest(&response))
    }

    /// Pushes an image's blobs (skipping those already there), then its
    /// manifest under `reference`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, reference: &str, image: &BuiltImage) -> String {
        for (_, bytes) in image.blobs() {
            self.push_blob(repo, bytes).await;
        }
        let digest = self.push_manifest_raw(repo, reference, image.manifest_media_type, &image.manifest).await;
        assert_eq!(
            digest, image.manifest_digest,
            "the registry's digest for {repo}:{reference} differs from the built manifest's"
        );
        digest
    }

    /// Pushes every image of the index by digest, then the index under `tag`;
    /// returns the index digest.
    pub async fn push_index(&self, repo: &str, tag: &str, index: &BuiltIndex) -> String {
        for image in &index.images {
            self.push_image(repo, &image.manifest_digest, image).await;
        }
        let digest = self.push_manifest_raw(repo, tag, index.media_type, &index.bytes).await;
        assert_eq!(digest, index.digest, "the registry's digest for {repo}:{tag} differs from the built index's");
        digest
    }

    /// GETs a manifest by tag or digest, accepting the given media types,
    /// whatever the answer (for tests of refusals).
    pub async fn get_manifest_response(&self, repo: &str, reference: &str, accept: &[&str]) -> reqwest::Response {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        self.request(Method::GET, url.clone())
            .header("Accept", accept.join(", "))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: no answer from the registry: {e}"))
    }

    /// GETs a manifest by tag or digest, accepting the given media types.
    pub async fn get_manifest(&self, repo: &str, reference: &str, accept: &[&str]) -> FetchedManifest {
        let response = self.get_manifest_response(repo, reference, accept).await;
        if response.status() != StatusCode::OK {
            let error = RegistryError::read(format!("GET {}", response.url()), response).await;
            panic!("fetching manifest {repo}:{reference}: {error}");
        }
        let digest = docker_content_digest(&response);
        let media_type =
            response.headers().get("Content-Type").and_then(|t| t.to_str().ok()).unwrap_or_default().to_owned();
        let bytes = response.bytes().await.expect("reading a manifest body").to_vec();
        FetchedManifest { digest, media_type, bytes }
    }

    pub async fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let response = self
            .send(self.request(Method::GET, url), StatusCode::OK)
            .await
            .unwrap_or_else(|e| panic!("fetching blob {repo}@{digest}: {e}"));
        response.bytes().await.expect("reading a blob body").to_vec()
    }
}

fn docker_content_digest(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|d| d.to_str().ok())
        .unwrap_or_else(|| panic!("{} answered without a Docker-Content-Digest header", response.url()))
        .to_owned()
}

/// [`RegistryClient::push_blob`] without credentials.
pub async fn push_blob(registry: &Registry, repo: &str, bytes: &[u8]) -> String {
    RegistryClient::new(registry).push_blob(repo, bytes).await
}

/// [`RegistryClient::push_manifest_raw`] without credentials.
pub async fn push_manifest_raw(
    registry: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> String {
    RegistryClient::new(registry).push_manifest_raw(repo, reference, media_type, bytes).await
}
