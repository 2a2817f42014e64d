//! Unpacking one layer tar into a snapshot directory, in overlayfs "upper dir" form.
//!
//! Each layer lives in its own directory; the directories of a chain are later stacked as overlay
//! lowerdirs. So OCI whiteouts are converted on the way in: `dir/.wh.name` becomes a 0/0 character
//! device at `dir/name`, and `dir/.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on `dir`.
//!
//! A layer comes from a registry and is hostile until proven otherwise. Every entry path is
//! normalised lexically (we never follow symlinks, so that is exact), must stay under the layer
//! root, and every parent on the way must be a real directory inside it: nothing outside `dest` is
//! ever created, modified or followed. We do the creation ourselves instead of using `tar`'s
//! `unpack`, so these rules are ours and each refusal names the entry.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::libc;
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{Entry, EntryType};

/// Prefix of an OCI whiteout: `.wh.name` deletes `name` from the layers below.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of aufs metadata (`.wh..wh.plnk`, ...), meaningless for overlay.
const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
/// Marks its directory as opaque: nothing of the layers below shows through.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Overlay's private xattrs: only this module may set them (see `set_xattrs`).
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
/// PAX records carrying an xattr, as written by GNU tar, bsdtar and the Go archive/tar package.
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
const PAX_SPARSE_PREFIX: &[u8] = b"GNU.sparse.";
const PAX_MTIME: &[u8] = b"mtime";
/// Mode of the parent directories a layer uses without listing them.
const IMPLICIT_DIR_MODE: u32 = 0o755;
/// Copy buffer: big enough for few syscalls, small enough that memory stays bounded.
const COPY_BUFFER_SIZE: usize = 128 * 1024;

/// What one layer contained.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive members read (GNU long names and PAX records count with the member they describe).
    pub entries: u64,
    /// Whiteouts and opaque markers converted to overlay form.
    pub whiteouts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The entry would reach outside the layer directory, or is otherwise not allowed.
    #[error("layer entry {path:?}{} is unsafe: {reason}", link_suffix(.link.as_deref()))]
    Unsafe { path: String, link: Option<String>, reason: &'static str },
    #[error("layer entry {path:?} has an unsupported type: {kind}")]
    Unsupported { path: String, kind: String },
    #[error("layer entry {path:?} has a malformed header: {source}")]
    BadHeader { path: String, source: io::Error },
    /// Writing into the layer directory failed; `path` is the file on disk.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The archive itself is malformed or truncated, or reading it failed.
    #[error("reading the layer archive: {0}")]
    Tar(io::Error),
}

fn link_suffix(link: Option<&str>) -> String {
    link.map(|link| format!(" (link to {link:?})")).unwrap_or_default()
}

/// Unpacks the uncompressed layer tar `reader` into `dest`, an existing empty directory.
///
/// Memory stays bounded whatever the layer size. The reader is read to its end, past the archive's
/// end-of-archive marker, because the caller hashes everything that flows through it.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(reader);
    let mut unpacker = Unpacker::new(dest);
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        unpacker.unpack_entry(&mut entry)?;
    }
    let stats = unpacker.finish()?;
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(UnpackError::Tar)?;
    Ok(stats)
}

/// The kinds of entry we create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

enum Classified {
    Create(Kind),
    /// Carries no file (a global PAX header).
    Skip,
    Unsupported(String),
}

fn classify(entry_type: EntryType, raw_path: &[u8]) -> Classified {
    match entry_type {
        // Pre-POSIX archives mark directories as regular files whose name ends in a slash.
        EntryType::Regular if raw_path.ends_with(b"/") => Classified::Create(Kind::Dir),
        EntryType::Regular | EntryType::Continuous => Classified::Create(Kind::File),
        EntryType::Directory => Classified::Create(Kind::Dir),
        EntryType::Symlink => Classified::Create(Kind::Symlink),
        EntryType::Link => Classified::Create(Kind::Hardlink),
        EntryType::Char => Classified::Create(Kind::CharDevice),
        EntryType::Block => Classified::Create(Kind::BlockDevice),
        EntryType::Fifo => Classified::Create(Kind::Fifo),
        EntryType::XGlobalHeader => Classified::Skip,
        EntryType::GNUSparse => Classified::Unsupported("GNU sparse file".to_owned()),
        other => Classified::Unsupported(format!("type flag {:?}", char::from(other.as_byte()))),
    }
}

/// Why a path is refused. Worded per [`Role`] by [`Role::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Absolute,
    Climbs,
    IsRoot,
    ThroughSymlink,
    ParentNotDir,
    Missing,
    IsDir,
    InvalidWhiteout,
}

/// Whose path is being checked: the entry's own, or the target of a hardlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Entry,
    LinkTarget,
}

impl Role {
    fn reason(self, problem: Problem) -> &'static str {
        match (self, problem) {
            (Role::Entry, Problem::Absolute) => "absolute path",
            (Role::Entry, Problem::Climbs) => "climbs above the layer root",
            (Role::Entry, Problem::IsRoot) => "would replace the layer root",
            (Role::Entry, Problem::ThroughSymlink) => "goes through a symlink",
            (Role::Entry, Problem::ParentNotDir) => "a parent is not a directory",
            (Role::Entry, Problem::Missing) => "a parent does not exist",
            (Role::Entry, Problem::IsDir) => "is a directory",
            (_, Problem::InvalidWhiteout) => "whiteout of an invalid name",
            (Role::LinkTarget, Problem::Absolute) => "link target is an absolute path",
            (Role::LinkTarget, Problem::Climbs) => "link target climbs above the layer root",
            (Role::LinkTarget, Problem::IsRoot) => "link target is the layer root",
            (Role::LinkTarget, Problem::ThroughSymlink) => "link target goes through a symlink",
            (Role::LinkTarget, Problem::ParentNotDir) => "link target's parent is not a directory",
            (Role::LinkTarget, Problem::Missing) => "link target does not exist in this layer",
            (Role::LinkTarget, Problem::IsDir) => "link target is a directory",
        }
    }
}

/// The entry as named in errors.
struct Subject {
    path: String,
    link: Option<String>,
}

impl Subject {
    fn refuse(&self, role: Role, problem: Problem) -> UnpackError {
        UnpackError::Unsafe { path: self.path.clone(), link: self.link.clone(), reason: role.reason(problem) }
    }

    fn bad_header(&self, source: io::Error) -> UnpackError {
        UnpackError::BadHeader { path: self.path.clone(), source }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io { path: path.to_path_buf(), source }
}

/// Normalises `path` lexically into components relative to the layer root. `.` vanishes, `..`
/// removes the previous component; climbing above the root or starting at `/` is refused.
fn normalise(path: &Path) -> Result<Vec<OsString>, Problem> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => parts.push(name.to_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or(Problem::Climbs)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(Problem::Absolute),
        }
    }
    Ok(parts)
}

/// What an entry's last component says about whiteouts.
enum Whiteout<'a> {
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.name`: `name` is deleted.
    Remove(&'a OsStr),
    /// Other `.wh..wh.*` names: aufs bookkeeping, ignored.
    AufsMeta,
}

impl<'a> Whiteout<'a> {
    fn parse(name: &'a OsStr) -> Option<Self> {
        let bytes = name.as_bytes();
        if bytes == OPAQUE_MARKER {
            Some(Whiteout::Opaque)
        } else if bytes.starts_with(AUFS_META_PREFIX) {
            Some(Whiteout::AufsMeta)
        } else {
            bytes.strip_prefix(WHITEOUT_PREFIX).map(|rest| Whiteout::Remove(OsStr::from_bytes(rest)))
        }
    }
}

/// The metadata of an entry, from its header and PAX records.
struct Meta {
    /// Permission bits including setuid, setgid and sticky.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
    /// PAX-format sparse files look like regular files; writing them as such would corrupt them.
    pax_sparse: bool,
}

impl Meta {
    fn read<R: Read>(entry: &mut Entry<'_, R>) -> io::Result<Self> {
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        // The tar crate has already applied PAX `uid`/`gid` records to the header.
        let uid = id_from_header(header.uid()?, "uid")?;
        let gid = id_from_header(header.gid()?, "gid")?;
        let seconds = i64::try_from(header.mtime()?).unwrap_or(i64::MAX);
        let mut meta = Meta { mode, uid, gid, mtime: TimeSpec::new(seconds, 0), xattrs: Vec::new(), pax_sparse: false };
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                meta.apply_pax_record(extension.key_bytes(), extension.value_bytes());
            }
        }
        Ok(meta)
    }

    fn apply_pax_record(&mut self, key: &[u8], value: &[u8]) {
        if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
            self.xattrs.push((OsStr::from_bytes(name).to_owned(), value.to_vec()));
        } else if key == PAX_MTIME {
            // The PAX mtime carries sub-second precision the header lacks; an unparsable one is
            // ignored rather than failing the layer, the header value is still meaningful.
            if let Some(mtime) = parse_pax_time(value) {
                self.mtime = mtime;
            }
        } else if key.starts_with(PAX_SPARSE_PREFIX) {
            self.pax_sparse = true;
        }
    }
}

fn id_from_header(id: u64, what: &str) -> io::Result<u32> {
    u32::try_from(id).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("{what} {id} is too large")))
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5`.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;
    let text = std::str::from_utf8(value).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let mut seconds: i64 = whole.parse().ok()?;
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &fraction[..fraction.len().min(9)];
    let mut nanos: i64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    nanos *= 10_i64.pow(9 - digits.len() as u32);
    // "-1.5" is one and a half seconds before the epoch: -2 s + 0.5 s.
    if whole.starts_with('-') && nanos > 0 {
        seconds = seconds.checked_sub(1)?;
        nanos = NANOS_PER_SECOND - nanos;
    }
    Some(TimeSpec::new(seconds, nanos))
}

/// Unpacking state across the entries of one layer.
struct Unpacker<'a> {
    dest: &'a Path,
    stats: UnpackStats,
    /// Directory mtimes, applied last: creating children changes them.
    dir_times: BTreeMap<PathBuf, TimeSpec>,
    buffer: Vec<u8>,
}

impl<'a> Unpacker<'a> {
    fn new(dest: &'a Path) -> Self {
        Unpacker { dest, stats: UnpackStats::default(), dir_times: BTreeMap::new(), buffer: vec![0; COPY_BUFFER_SIZE] }
    }

    fn unpack_entry<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), UnpackError> {
        self.stats.entries += 1;
        let raw_path = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let link = entry.link_name().map_err(UnpackError::Tar)?.map(|link| link.into_owned());
        let subject = Subject {
            path: raw_path.to_string_lossy().into_owned(),
            link: link.as_ref().map(|link| link.to_string_lossy().into_owned()),
        };
        let kind = match classify(entry.header().entry_type(), &entry.path_bytes()) {
            Classified::Create(kind) => kind,
            Classified::Skip => return Ok(()),
            Classified::Unsupported(kind) => return Err(UnpackError::Unsupported { path: subject.path, kind }),
        };
        let meta = Meta::read(entry).map_err(|e| subject.bad_header(e))?;
        if meta.pax_sparse {
            let kind = "GNU sparse file (PAX format)".to_owned();
            return Err(UnpackError::Unsupported { path: subject.path, kind });
        }

        let parts = normalise(&raw_path).map_err(|problem| subject.refuse(Role::Entry, problem))?;
        let Some((name, parents)) = parts.split_last() else {
            // The layer root (`./`): `dest` exists already and its metadata is the snapshotter's.
            return if kind == Kind::Dir { Ok(()) } else { Err(subject.refuse(Role::Entry, Problem::IsRoot)) };
        };
        if parents.iter().any(|part| part.as_bytes().starts_with(AUFS_META_PREFIX)) {
            // Inside an aufs metadata directory such as `.wh..wh.plnk/`: bookkeeping, not content.
            return Ok(());
        }
        if let Some(whiteout) = Whiteout::parse(name) {
            return self.whiteout(whiteout, parents, &meta, &subject);
        }
        match kind {
            Kind::Hardlink => {
                let link = link.as_deref().ok_or_else(|| subject.bad_header(missing_field("hardlink has no target")))?;
                self.hardlink(link, parents, name, &subject)
            }
            Kind::Dir => {
                let target = self.entry_target(parents, name, &subject)?;
                self.directory(&target, &meta)
            }
            Kind::File => {
                let target = self.entry_target(parents, name, &subject)?;
                self.regular_file(entry, &target, &meta)
            }
            Kind::Symlink => {
                let link = link.as_deref().ok_or_else(|| subject.bad_header(missing_field("symlink has no target")))?;
                let target = self.entry_target(parents, name, &subject)?;
                self.symlink(link, &target, &meta)
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let device = device_number(entry, kind).map_err(|e| subject.bad_header(e))?;
                let target = self.entry_target(parents, name, &subject)?;
                self.special_file(kind, device, &target, &meta)
            }
        }
    }

    /// Applies the directory mtimes now that nothing more is created inside them.
    fn finish(self) -> Result<UnpackStats, UnpackError> {
        for (path, mtime) in &self.dir_times {
            set_times(path, *mtime)?;
        }
        Ok(self.stats)
    }

    /// Walks `dirs` down from the layer root; each must be a real directory (never a symlink).
    /// Missing ones are created, 0755 and owned by root, when `create` is set. Returns the path of
    /// the last one.
    fn walk_dirs(&self, dirs: &[OsString], role: Role, subject: &Subject, create: bool) -> Result<PathBuf, UnpackError> {
        let mut path = self.dest.to_path_buf();
        for name in dirs {
            path.push(name);
            match fs::symlink_metadata(&path) {
                Ok(found) if found.is_dir() => {}
                Ok(found) if found.file_type().is_symlink() => {
                    return Err(subject.refuse(role, Problem::ThroughSymlink));
                }
                Ok(_) => return Err(subject.refuse(role, Problem::ParentNotDir)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => create_implicit_dir(&path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(subject.refuse(role, Problem::Missing)),
                Err(e) => return Err(io_at(&path)(e)),
            }
        }
        Ok(path)
    }

    /// The on-disk path of an entry, after checking (and creating) its parents.
    fn entry_target(&self, parents: &[OsString], name: &OsStr, subject: &Subject) -> Result<PathBuf, UnpackError> {
        Ok(self.walk_dirs(parents, Role::Entry, subject, true)?.join(name))
    }

    /// Finds what a hardlink points at: an existing non-directory of this layer, reached without
    /// any symlink. Like entry paths, the target is relative to the layer root.
    fn resolve_link_source(&self, link: &Path, subject: &Subject) -> Result<PathBuf, UnpackError> {
        let parts = normalise(link).map_err(|problem| subject.refuse(Role::LinkTarget, problem))?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(subject.refuse(Role::LinkTarget, Problem::IsRoot));
        };
        let source = self.walk_dirs(parents, Role::LinkTarget, subject, false)?.join(name);
        match fs::symlink_metadata(&source) {
            // A symlink is fine: link(2) without AT_SYMLINK_FOLLOW links the symlink itself.
            Ok(found) if !found.is_dir() => Ok(source),
            Ok(_) => Err(subject.refuse(Role::LinkTarget, Problem::IsDir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(subject.refuse(Role::LinkTarget, Problem::Missing)),
            Err(e) => Err(io_at(&source)(e)),
        }
    }

    /// Clears the way for a new entry at `target`: a later entry replaces an earlier one. Returns
    /// true when a directory is already there and `keep_dir` asked to keep it (a directory entry
    /// over a directory only updates its metadata).
    fn clear(&mut self, target: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        match fs::symlink_metadata(target) {
            Ok(found) if found.is_dir() && keep_dir => Ok(true),
            Ok(found) if found.is_dir() => {
                // remove_dir_all does not follow symlinks inside the tree.
                fs::remove_dir_all(target).map_err(io_at(target))?;
                self.dir_times.retain(|dir, _| !dir.starts_with(target));
                Ok(false)
            }
            // unlink(2) removes a symlink itself, never what it points to.
            Ok(_) => fs::remove_file(target).map(|()| false).map_err(io_at(target)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(target)(e)),
        }
    }

    fn whiteout(
        &mut self,
        whiteout: Whiteout<'_>,
        parents: &[OsString],
        meta: &Meta,
        subject: &Subject,
    ) -> Result<(), UnpackError> {
        match whiteout {
            Whiteout::AufsMeta => Ok(()),
            Whiteout::Opaque => {
                let dir = self.walk_dirs(parents, Role::Entry, subject, true)?;
                xattr::set(&dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(io_at(&dir))?;
                self.stats.whiteouts += 1;
                Ok(())
            }
            Whiteout::Remove(name) => {
                if name.is_empty() || name == "." || name == ".." {
                    return Err(subject.refuse(Role::Entry, Problem::InvalidWhiteout));
                }
                let target = self.walk_dirs(parents, Role::Entry, subject, true)?.join(name);
                self.clear(&target, false)?;
                // Overlay's whiteout: a character device with device number 0/0.
                stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| io_at(&target)(e.into()))?;
                std::os::unix::fs::lchown(&target, Some(meta.uid), Some(meta.gid)).map_err(io_at(&target))?;
                self.stats.whiteouts += 1;
                Ok(())
            }
        }
    }

    fn hardlink(
        &mut self,
        link: &Path,
        parents: &[OsString],
        name: &OsStr,
        subject: &Subject,
    ) -> Result<(), UnpackError> {
        // The source is checked before anything is created for the entry itself.
        let source = self.resolve_link_source(link, subject)?;
        let target = self.entry_target(parents, name, subject)?;
        if source == target {
            return Ok(());
        }
        self.clear(&target, false)?;
        // linkat(2) without AT_SYMLINK_FOLLOW: a symlink source is linked, not followed. The link
        // shares the source's inode, so there is no metadata of its own to apply.
        fs::hard_link(&source, &target).map_err(io_at(&target))
    }

    fn directory(&mut self, target: &Path, meta: &Meta) -> Result<(), UnpackError> {
        if !self.clear(target, true)? {
            DirBuilder::new().mode(0o700).create(target).map_err(io_at(target))?;
        }
        apply_meta(target, meta, Kind::Dir)?;
        self.dir_times.insert(target.to_path_buf(), meta.mtime);
        Ok(())
    }

    fn regular_file<R: Read>(&mut self, entry: &mut Entry<'_, R>, target: &Path, meta: &Meta) -> Result<(), UnpackError> {
        self.clear(target, false)?;
        // O_EXCL after clearing: we never write through whatever might sit at `target`.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)
            .map_err(io_at(target))?;
        let written = self.copy_contents(entry, &mut file, target)?;
        if written != entry.size() {
            let message = format!("archive ends inside {:?} after {written} of {} bytes", target, entry.size());
            return Err(UnpackError::Tar(io::Error::new(io::ErrorKind::UnexpectedEof, message)));
        }
        drop(file);
        apply_meta(target, meta, Kind::File)
    }

    /// Streams the entry's data into `file` through a fixed buffer. A hand-rolled io::copy, so
    /// that a read failure (the archive) and a write failure (the disk) get different errors.
    fn copy_contents(&mut self, entry: &mut impl Read, file: &mut File, target: &Path) -> Result<u64, UnpackError> {
        let mut written = 0;
        loop {
            let read = match entry.read(&mut self.buffer) {
                Ok(0) => return Ok(written),
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Tar(e)),
            };
            file.write_all(&self.buffer[..read]).map_err(io_at(target))?;
            written += read as u64;
        }
    }

    fn symlink(&mut self, link: &Path, target: &Path, meta: &Meta) -> Result<(), UnpackError> {
        self.clear(target, false)?;
        // Any target is fine, absolute ones included: it is resolved inside the container.
        std::os::unix::fs::symlink(link, target).map_err(io_at(target))?;
        apply_meta(target, meta, Kind::Symlink)
    }

    fn special_file(&mut self, kind: Kind, device: u64, target: &Path, meta: &Meta) -> Result<(), UnpackError> {
        self.clear(target, false)?;
        let file_type = match kind {
            Kind::CharDevice => SFlag::S_IFCHR,
            Kind::BlockDevice => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        stat::mknod(target, file_type, Mode::S_IRUSR | Mode::S_IWUSR, device).map_err(|e| io_at(target)(e.into()))?;
        apply_meta(target, meta, kind)
    }
}

fn missing_field(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn device_number<R: Read>(entry: &Entry<'_, R>, kind: Kind) -> io::Result<u64> {
    if kind == Kind::Fifo {
        return Ok(0);
    }
    let header = entry.header();
    match (header.device_major()?, header.device_minor()?) {
        (Some(major), Some(minor)) => Ok(stat::makedev(major.into(), minor.into())),
        _ => Err(missing_field("device entry without major/minor numbers")),
    }
}

/// A parent directory the layer uses without listing it: 0755 root:root, like other unpackers.
fn create_implicit_dir(path: &Path) -> Result<(), UnpackError> {
    DirBuilder::new().mode(IMPLICIT_DIR_MODE).create(path).map_err(io_at(path))?;
    // Explicit, because the umask narrows the mode and a setgid parent passes on its group.
    std::os::unix::fs::lchown(path, Some(0), Some(0)).map_err(io_at(path))?;
    fs::set_permissions(path, Permissions::from_mode(IMPLICIT_DIR_MODE)).map_err(io_at(path))
}

/// Applies ownership, mode, xattrs and (except for directories, see `Unpacker::finish`) mtime to
/// an object just created at `path`.
fn apply_meta(path: &Path, meta: &Meta, kind: Kind) -> Result<(), UnpackError> {
    // Numeric ids only: names in the header mean nothing on this host.
    std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid)).map_err(io_at(path))?;
    if kind != Kind::Symlink {
        // After chown, which clears setuid/setgid. chmod follows symlinks, but `path` is one we
        // just created and know is not one; symlinks have no mode of their own on Linux.
        fs::set_permissions(path, Permissions::from_mode(meta.mode)).map_err(io_at(path))?;
    }
    // After chown too, which clears security.capability.
    set_xattrs(path, &meta.xattrs, kind)?;
    if kind != Kind::Dir {
        set_times(path, meta.mtime)?;
    }
    Ok(())
}

/// Sets the entry's xattrs with lsetxattr(2) (`xattr::set` does not follow symlinks).
fn set_xattrs(path: &Path, xattrs: &[(OsString, Vec<u8>)], kind: Kind) -> Result<(), UnpackError> {
    for (name, value) in xattrs {
        if name.as_bytes().starts_with(OVERLAY_XATTR_PREFIX) {
            // Overlay reads these from every lowerdir (opaque, redirect, metacopy, origin, ...):
            // a layer states deletions with whiteouts, it must not steer overlay directly.
            tracing::warn!(path = %path.display(), xattr = ?name, "ignoring overlay xattr in layer");
            continue;
        }
        match xattr::set(path, name, value) {
            Ok(()) => {}
            Err(e) if xattr_not_storable(&e, name, kind) => {
                tracing::warn!(path = %path.display(), xattr = ?name, error = %e, "cannot store xattr, skipping it");
            }
            Err(e) => return Err(io_at(path)(e)),
        }
    }
    Ok(())
}

/// The host filesystem cannot hold this xattr (no xattr support, or Linux refusing `user.*` on
/// symlinks and special files): losing it is better than refusing the image.
fn xattr_not_storable(error: &io::Error, name: &OsStr, kind: Kind) -> bool {
    let special = !matches!(kind, Kind::File | Kind::Dir);
    match error.raw_os_error() {
        Some(libc::ENOTSUP) => true,
        Some(libc::EPERM) => special && name.as_bytes().starts_with(b"user."),
        _ => false,
    }
}

/// Sets atime and mtime of `path` itself, never of a symlink's target.
fn set_times(path: &Path, mtime: TimeSpec) -> Result<(), UnpackError> {
    stat::utimensat(None, path, &mtime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(|e| io_at(path)(e.into()))
}
