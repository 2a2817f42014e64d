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
        let mut subject = Subject { path: raw_path.to_string_lossy().into_owned(), link: None };
        let kind = match classify(entry.header().entry_type(), &entry.path_bytes()) {
            Classified::Create(kind) => kind,
            Classified::Skip => return Ok(()),
            Classified::Unsupported(kind) => return Err(UnpackError::Unsupported { path: subject.path, kind }),
        };
        if matches!(kind, Kind::Symlink | Kind::Hardlink) {
            subject.link = link.as_ref().map(|link| link.to_string_lossy().into_owned());
        }
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
                let link =
                    link.as_deref().ok_or_else(|| subject.bad_header(missing_field("hardlink has no target")))?;
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
                let link = link
                    .as_deref()
                    .filter(|link| !link.as_os_str().is_empty())
                    .ok_or_else(|| subject.bad_header(missing_field("symlink has no target")))?;
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
    fn walk_dirs(
        &self,
        dirs: &[OsString],
        role: Role,
        subject: &Subject,
        create: bool,
    ) -> Result<PathBuf, UnpackError> {
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

    fn regular_file<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        target: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
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
            let message = format!("archive ends inside {} after {written} of {} bytes", target.display(), entry.size());
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
            Err(e) => {
                let source = io::Error::new(e.kind(), format!("setting xattr {name:?}: {e}"));
                return Err(io_at(path)(source));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use tar::Header;

    const MTIME: u64 = 1_600_000_000;

    // ---- building layers -------------------------------------------------------------------

    /// A header whose name and link name are written byte for byte: `tar::Builder` refuses the
    /// hostile names these tests need (`..`, absolute paths).
    fn header(kind: EntryType, name: &str, link: &str, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        put(&mut header.as_old_mut().name, name.as_bytes());
        put(&mut header.as_old_mut().linkname, link.as_bytes());
        header
    }

    fn put(field: &mut [u8], bytes: &[u8]) {
        assert!(bytes.len() < field.len(), "name too long for a plain header");
        field[..bytes.len()].copy_from_slice(bytes);
    }

    struct Layer(tar::Builder<Vec<u8>>);

    /// Adds a test case's entries to a layer.
    type Build = fn(&mut Layer);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }

        fn add(&mut self, mut header: Header, data: &[u8]) -> &mut Self {
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.add(header(EntryType::Regular, name, "", data.len() as u64), data)
        }

        fn dir(&mut self, name: &str) -> &mut Self {
            self.add(header(EntryType::Directory, name, "", 0), b"")
        }

        fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.add(header(EntryType::Symlink, name, target, 0), b"")
        }

        fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
            self.add(header(EntryType::Link, name, target, 0), b"")
        }

        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            self.0.append_pax_extensions(records.iter().copied()).unwrap();
            self
        }

        /// The archive, with its two zero blocks of end-of-archive.
        fn finish(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    // ---- sandbox: dest plus canaries outside it ---------------------------------------------

    /// `outer/layer` is dest; `outer/canary` and `outer/sibling/canary` must never change.
    struct Sandbox {
        outer: tempfile::TempDir,
        dest: PathBuf,
    }

    impl Sandbox {
        fn new() -> Self {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("layer");
            fs::create_dir(&dest).unwrap();
            fs::write(outer.path().join("canary"), b"canary").unwrap();
            fs::create_dir(outer.path().join("sibling")).unwrap();
            fs::write(outer.path().join("sibling/canary"), b"canary").unwrap();
            Sandbox { outer, dest }
        }

        fn outer(&self) -> &Path {
            self.outer.path()
        }

        fn unpack(&self, tar: &[u8]) -> Result<UnpackStats, UnpackError> {
            unpack_layer(tar, &self.dest)
        }

        /// Everything outside dest, as the property tests describe it.
        fn outside(&self) -> BTreeMap<PathBuf, String> {
            let mut found = BTreeMap::new();
            crate::images::unpack_props::describe(self.outer(), &self.dest, &mut found);
            found
        }
    }

    fn meta(path: &Path) -> fs::Metadata {
        fs::symlink_metadata(path).unwrap()
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Unpacking needs root (chown, mknod, trusted xattrs); say so instead of failing obscurely.
    macro_rules! require_root {
        () => {
            // A missing prerequisite fails: a skipped test must not pass.
            assert!(is_root(), "unpacking layers needs root: run the suite as root (hack/test.sh)");
        };
    }

    // ---- entry kinds and metadata -----------------------------------------------------------

    #[test]
    fn every_entry_kind_keeps_its_metadata() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.dir("./");

        let mut dir = header(EntryType::Directory, "d/", "", 0);
        dir.set_mode(0o750);
        dir.set_uid(1000);
        dir.set_gid(2000);
        dir.set_mtime(MTIME + 1);
        layer.add(dir, b"");

        let mut sticky = header(EntryType::Directory, "d/tmp/", "", 0);
        sticky.set_mode(0o1777);
        layer.add(sticky, b"");

        layer.pax(&[("SCHILY.xattr.user.foo", b"bar"), ("mtime", b"1600000002.25")]);
        let mut setuid = header(EntryType::Regular, "d/setuid", "", 5);
        setuid.set_mode(0o4755);
        setuid.set_uid(1001);
        setuid.set_gid(1002);
        layer.add(setuid, b"hello");

        let mut setgid = header(EntryType::Regular, "d/setgid", "", 0);
        setgid.set_mode(0o2711);
        setgid.set_gid(50);
        layer.add(setgid, b"");

        layer.add(header(EntryType::Continuous, "d/continuous", "", 3), b"abc");
        let mut old = header(EntryType::new(0), "d/old-style", "", 3);
        old.set_mode(0o600);
        layer.add(old, b"xyz");

        let mut symlink = header(EntryType::Symlink, "d/abs-link", "/etc/passwd", 0);
        symlink.set_uid(1003);
        symlink.set_gid(1004);
        symlink.set_mtime(MTIME + 3);
        layer.add(symlink, b"");
        layer.hardlink("d/hard", "d/setuid");

        let mut char_device = header(EntryType::Char, "dev/null", "", 0);
        char_device.set_device_major(1).unwrap();
        char_device.set_device_minor(3).unwrap();
        char_device.set_mode(0o666);
        char_device.set_mtime(MTIME + 4);
        layer.add(char_device, b"");
        let mut block_device = header(EntryType::Block, "dev/loop0", "", 0);
        block_device.set_device_major(7).unwrap();
        block_device.set_device_minor(0).unwrap();
        block_device.set_mode(0o660);
        block_device.set_gid(6);
        layer.add(block_device, b"");
        let mut fifo = header(EntryType::Fifo, "dev/fifo", "", 0);
        fifo.set_mode(0o620);
        layer.add(fifo, b"");
        layer.file("implicit/parent/file", b"data");

        let stats = sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(stats, UnpackStats { entries: 13, whiteouts: 0 });
        let dest = &sandbox.dest;

        let d = meta(&dest.join("d"));
        assert!(d.is_dir());
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1000, 2000));
        assert_eq!(d.mtime(), MTIME as i64 + 1, "directory mtime is set after its children");
        let tmp = meta(&dest.join("d/tmp"));
        assert_eq!((tmp.mode() & 0o7777, tmp.mtime()), (0o1777, MTIME as i64));

        let file = meta(&dest.join("d/setuid"));
        assert!(file.is_file());
        assert_eq!((file.mode() & 0o7777, file.uid(), file.gid()), (0o4755, 1001, 1002));
        assert_eq!((file.mtime(), file.mtime_nsec()), (MTIME as i64 + 2, 250_000_000), "PAX mtime wins");
        assert_eq!(fs::read(dest.join("d/setuid")).unwrap(), b"hello");
        assert_eq!(xattr::get(dest.join("d/setuid"), "user.foo").unwrap().as_deref(), Some(&b"bar"[..]));
        let setgid = meta(&dest.join("d/setgid"));
        assert_eq!((setgid.mode() & 0o7777, setgid.gid()), (0o2711, 50));
        assert_eq!(fs::read(dest.join("d/continuous")).unwrap(), b"abc");
        let old = meta(&dest.join("d/old-style"));
        assert!(old.is_file());
        assert_eq!(old.mode() & 0o7777, 0o600);

        let link = meta(&dest.join("d/abs-link"));
        assert!(link.file_type().is_symlink());
        assert_eq!(fs::read_link(dest.join("d/abs-link")).unwrap(), Path::new("/etc/passwd"));
        assert_eq!((link.uid(), link.gid(), link.mtime()), (1003, 1004, MTIME as i64 + 3));

        let hard = meta(&dest.join("d/hard"));
        assert_eq!((hard.ino(), hard.nlink()), (file.ino(), 2));

        let null = meta(&dest.join("dev/null"));
        assert!(null.file_type().is_char_device());
        assert_eq!((null.rdev(), null.mode() & 0o7777), (stat::makedev(1, 3), 0o666));
        assert_eq!(null.mtime(), MTIME as i64 + 4);
        let block = meta(&dest.join("dev/loop0"));
        assert!(block.file_type().is_block_device());
        assert_eq!((block.rdev(), block.mode() & 0o7777, block.gid()), (stat::makedev(7, 0), 0o660, 6));
        let fifo = meta(&dest.join("dev/fifo"));
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.mode() & 0o7777, 0o620);

        let implicit = meta(&dest.join("implicit/parent"));
        assert!(implicit.is_dir());
        assert_eq!((implicit.mode() & 0o7777, implicit.uid(), implicit.gid()), (0o755, 0, 0));
        assert_eq!(fs::read(dest.join("implicit/parent/file")).unwrap(), b"data");
    }

    #[test]
    fn dot_dot_that_stays_inside_is_normalised() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.file("a/../b", b"b").file("./c/./d/../e", b"e");
        sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(fs::read(sandbox.dest.join("b")).unwrap(), b"b");
        assert_eq!(fs::read(sandbox.dest.join("c/e")).unwrap(), b"e");
        assert!(!sandbox.dest.join("c/d").exists());
    }

    #[test]
    fn hardlink_to_a_symlink_links_the_symlink_itself() {
        require_root!();
        let sandbox = Sandbox::new();
        let outside = sandbox.outer().join("canary");
        let mut layer = Layer::new();
        layer.symlink("link", outside.to_str().unwrap()).hardlink("hard", "link");
        sandbox.unpack(&layer.finish()).unwrap();
        let hard = meta(&sandbox.dest.join("hard"));
        assert!(hard.file_type().is_symlink());
        assert_eq!(hard.ino(), meta(&sandbox.dest.join("link")).ino());
        assert_eq!(meta(&outside).nlink(), 1);
    }

    #[test]
    fn unsupported_entry_type_names_the_path() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        let mut sparse = header(EntryType::GNUSparse, "sparse", "", 0);
        sparse.as_gnu_mut().unwrap().set_real_size(0);
        layer.add(sparse, b"");
        let err = sandbox.unpack(&layer.finish()).unwrap_err();
        assert!(matches!(&err, UnpackError::Unsupported { path, .. } if path == "sparse"), "{err}");
        assert_eq!(err.to_string(), r#"layer entry "sparse" has an unsupported type: GNU sparse file"#);

        let mut layer = Layer::new();
        layer.pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")]).file("GNUSparseFile.0/f", b"");
        let err = sandbox.unpack(&layer.finish()).unwrap_err();
        assert!(matches!(&err, UnpackError::Unsupported { .. }), "{err}");
    }

    // ---- whiteouts ---------------------------------------------------------------------------

    #[test]
    fn whiteout_becomes_a_0_0_char_device() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.file("a/gone", b"earlier in this layer").file("a/.wh.gone", b"");
        layer.dir("a/subdir/").file("a/subdir/child", b"").file("a/.wh.subdir", b"");
        layer.file("b/.wh.never-existed", b"");
        let stats = sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(stats.whiteouts, 3);
        for path in ["a/gone", "a/subdir", "b/never-existed"] {
            let whiteout = meta(&sandbox.dest.join(path));
            assert!(whiteout.file_type().is_char_device(), "{path}");
            assert_eq!(whiteout.rdev(), 0, "{path}");
        }
        assert!(!sandbox.dest.join("a/.wh.gone").exists());
        assert!(meta(&sandbox.dest.join("b")).is_dir());
    }

    /// Root can set `trusted.*` xattrs on most filesystems, but not on all (e.g. some tmpfs).
    fn trusted_xattrs_supported(dir: &Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, b"").unwrap();
        let supported = xattr::set(&probe, "trusted.berth-probe", b"y").is_ok();
        fs::remove_file(&probe).unwrap();
        supported
    }

    /// Skips the test where `$dir`'s filesystem refuses `trusted.*` xattrs, as `require_root!` does without root.
    macro_rules! require_trusted_xattrs {
        ($dir:expr) => {
            let dir: &Path = $dir;
            if !trusted_xattrs_supported(dir) {
                eprintln!("skipping: {} does not support trusted.* xattrs", dir.display());
                return;
            }
        };
    }

    #[test]
    fn opaque_marker_sets_the_overlay_xattr() {
        require_root!();
        let sandbox = Sandbox::new();
        require_trusted_xattrs!(sandbox.outer());
        let mut layer = Layer::new();
        layer.dir("o/").file("o/.wh..wh..opq", b"").file("p/q/.wh..wh..opq", b"");
        layer.file(".wh..wh.plnk/123.456", b"aufs").file("o/.wh..wh.aufs", b"");
        let stats = sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(stats.whiteouts, 2);
        for dir in ["o", "p/q"] {
            let value = xattr::get(sandbox.dest.join(dir), OVERLAY_OPAQUE_XATTR).unwrap();
            assert_eq!(value.as_deref(), Some(&b"y"[..]), "{dir}");
        }
        let mut names: Vec<_> = fs::read_dir(&sandbox.dest).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["o", "p"], "no marker file and no aufs metadata is written");
        assert_eq!(fs::read_dir(sandbox.dest.join("o")).unwrap().count(), 0);
    }

    #[test]
    fn overlay_xattrs_from_the_archive_are_ignored() {
        require_root!();
        let sandbox = Sandbox::new();
        require_trusted_xattrs!(sandbox.outer());
        let mut layer = Layer::new();
        layer.pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")]).dir("d/");
        sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(xattr::get(sandbox.dest.join("d"), "trusted.overlay.redirect").unwrap(), None);
    }

    // ---- replacing earlier entries -----------------------------------------------------------

    #[test]
    fn later_entry_replaces_an_earlier_one() {
        require_root!();
        let sandbox = Sandbox::new();
        let canary = sandbox.outer().join("canary");
        let before = sandbox.outside();
        let mut layer = Layer::new();
        layer.file("f", b"first version, longer").file("f", b"second");
        // A file entry over a symlink to a file outside: the symlink goes, the target stays.
        layer.symlink("s", canary.to_str().unwrap()).file("s", b"replaced");
        layer.file("l", b"").symlink("l", "/new-target");
        sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(fs::read(sandbox.dest.join("f")).unwrap(), b"second");
        assert!(meta(&sandbox.dest.join("s")).is_file());
        assert_eq!(fs::read(sandbox.dest.join("s")).unwrap(), b"replaced");
        assert_eq!(fs::read_link(sandbox.dest.join("l")).unwrap(), Path::new("/new-target"));
        assert_eq!(sandbox.outside(), before);
    }

    #[test]
    fn directory_and_file_replace_each_other() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.dir("x/").file("x/child", b"").file("x", b"now a file");
        layer.file("y", b"").dir("y/").file("y/child", b"child");
        let mut again = header(EntryType::Directory, "z/", "", 0);
        again.set_mode(0o700);
        layer.dir("z/").file("z/kept", b"").add(again, b"");
        sandbox.unpack(&layer.finish()).unwrap();
        assert_eq!(fs::read(sandbox.dest.join("x")).unwrap(), b"now a file");
        assert!(meta(&sandbox.dest.join("y")).is_dir());
        assert_eq!(fs::read(sandbox.dest.join("y/child")).unwrap(), b"child");
        let z = meta(&sandbox.dest.join("z"));
        assert_eq!(z.mode() & 0o7777, 0o700, "directory over directory updates metadata");
        assert!(sandbox.dest.join("z/kept").exists(), "and keeps the contents");
    }

    // ---- reading the whole stream ------------------------------------------------------------

    struct CountingReader<R> {
        inner: R,
        count: u64,
    }

    impl<R: Read> Read for CountingReader<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let read = self.inner.read(buf)?;
            self.count += read as u64;
            Ok(read)
        }
    }

    #[test]
    fn reader_is_consumed_to_eof_past_the_archive_end() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.file("f", b"data");
        let mut stream = layer.finish();
        stream.extend_from_slice(&[0; 10 * 512]);
        stream.extend_from_slice(b"trailing garbage that is not a tar header");
        let mut reader = CountingReader { inner: &stream[..], count: 0 };
        unpack_layer(&mut reader, &sandbox.dest).unwrap();
        assert_eq!(reader.count, stream.len() as u64);
    }

    #[test]
    fn truncated_archive_is_a_tar_error() {
        require_root!();
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        layer.file("f", &[7; 2048]);
        let stream = layer.finish();
        let err = sandbox.unpack(&stream[..512 + 1024]).unwrap_err();
        assert!(matches!(err, UnpackError::Tar(_)), "{err}");
    }

    /// Generates a one-file layer on the fly, so a big file never exists in memory.
    struct GeneratedLayer {
        header: [u8; 512],
        size: u64,
        position: u64,
    }

    const PATTERN_BLOCK: u64 = 64 * 1024;

    /// The byte at `offset` of the generated file: one value per 64 KiB block.
    fn pattern_byte(offset: u64) -> u8 {
        (offset / PATTERN_BLOCK % 251) as u8
    }

    impl GeneratedLayer {
        fn new(name: &str, size: u64) -> Self {
            let mut header = header(EntryType::Regular, name, "", size);
            header.set_cksum();
            GeneratedLayer { header: *header.as_bytes(), size, position: 0 }
        }

        /// Header, data (a multiple of 512 here), then the two zero blocks of end-of-archive.
        fn total(&self) -> u64 {
            512 + self.size + 1024
        }
    }

    impl Read for GeneratedLayer {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let position = self.position;
            let count = if position < 512 {
                let count = buf.len().min((512 - position) as usize);
                buf[..count].copy_from_slice(&self.header[position as usize..position as usize + count]);
                count
            } else if position < 512 + self.size {
                let offset = position - 512;
                let block_left = PATTERN_BLOCK - offset % PATTERN_BLOCK;
                let count = buf.len().min(block_left.min(self.size - offset) as usize);
                buf[..count].fill(pattern_byte(offset));
                count
            } else {
                let count = buf.len().min((self.total() - position) as usize);
                buf[..count].fill(0);
                count
            };
            self.position += count as u64;
            Ok(count)
        }
    }

    /// Peak resident memory of this process, from /proc.
    fn peak_rss_bytes() -> u64 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Set, to the dest dir, only in the process `a_64_mib_file_is_streamed` starts.
    const STREAMING_DEST: &str = "BERTH_TEST_STREAMING_DEST";
    const STREAMED_SIZE: u64 = 64 * 1024 * 1024;

    #[test]
    fn a_64_mib_file_is_streamed() {
        require_root!();
        let sandbox = Sandbox::new();
        // The peak memory of this process is that of every test running beside this one:
        // measure in a process that does nothing else, this test binary again, running
        // only the helper below.
        let module = module_path!().split_once("::").map_or(module_path!(), |(_crate, path)| path);
        let helper = format!("{module}::streaming_in_a_process_of_its_own");
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &helper, "--ignored", "--nocapture", "--test-threads", "1"])
            .env(STREAMING_DEST, &sandbox.dest)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let said = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the unpacking process failed:\n{said}");
        let growth: u64 = stdout
            .lines()
            .find_map(|line| line.split_once("peak growth: ")?.1.trim().parse().ok())
            .unwrap_or_else(|| panic!("the unpacking process reported no peak:\n{said}"));
        assert!(growth < STREAMED_SIZE / 2, "peak memory grew by {growth} bytes: the file was buffered");

        let mut file = File::open(sandbox.dest.join("big")).unwrap();
        assert_eq!(file.metadata().unwrap().len(), STREAMED_SIZE);
        let mut chunk = vec![0; PATTERN_BLOCK as usize];
        for offset in (0..STREAMED_SIZE).step_by(PATTERN_BLOCK as usize) {
            file.read_exact(&mut chunk).unwrap();
            assert!(chunk == vec![pattern_byte(offset); chunk.len()], "content differs in block at {offset}");
        }
    }

    #[test]
    #[ignore = "a helper: a_64_mib_file_is_streamed runs it in a process of its own"]
    fn streaming_in_a_process_of_its_own() {
        let dest = std::env::var_os(STREAMING_DEST).expect("run by a_64_mib_file_is_streamed");
        let peak_before = peak_rss_bytes();
        let mut reader = CountingReader { inner: GeneratedLayer::new("big", STREAMED_SIZE), count: 0 };
        unpack_layer(&mut reader, Path::new(&dest)).unwrap();
        let peak_growth = peak_rss_bytes().saturating_sub(peak_before);
        assert_eq!(reader.count, reader.inner.total());
        println!("peak growth: {peak_growth}");
    }

    // ---- hostile layers ----------------------------------------------------------------------

    /// Unpacks the layer `build` writes and checks it is refused as unsafe, naming the path `build`
    /// returns, for a reason containing `reason`, with nothing outside dest created, modified or
    /// deleted.
    fn assert_refused(build: impl FnOnce(&Sandbox, &mut Layer) -> String, reason: &str) {
        let sandbox = Sandbox::new();
        let mut layer = Layer::new();
        let path = build(&sandbox, &mut layer);
        let before = sandbox.outside();
        let err = sandbox.unpack(&layer.finish()).unwrap_err();
        match &err {
            UnpackError::Unsafe { path: refused, reason: why, .. } => {
                assert_eq!(refused, &path, "{err}");
                assert!(why.contains(reason), "{err}: expected reason {reason:?}");
            }
            other => panic!("expected Unsafe for {path:?}, got {other:?}"),
        }
        assert_eq!(sandbox.outside(), before, "something outside dest changed for {path:?}");
    }

    /// A name at the filesystem root: a broken unpacker would create it there.
    fn at_root(name: &str) -> String {
        format!("/{name}-{}", std::process::id())
    }

    fn text(path: &Path) -> String {
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn unsafe_error_names_the_entry() {
        let err = unpack_layer(&b""[..], Path::new("/nonexistent"));
        assert_eq!(err.unwrap(), UnpackStats::default(), "an empty stream is an empty layer");
        let subject = Subject { path: "../../escape".to_owned(), link: None };
        assert_eq!(
            subject.refuse(Role::Entry, Problem::Climbs).to_string(),
            r#"layer entry "../../escape" is unsafe: climbs above the layer root"#
        );
        let subject = Subject { path: "h".to_owned(), link: Some("../x".to_owned()) };
        assert_eq!(
            subject.refuse(Role::LinkTarget, Problem::Climbs).to_string(),
            r#"layer entry "h" (link to "../x") is unsafe: link target climbs above the layer root"#
        );
    }

    #[test]
    fn absolute_paths_are_refused() {
        require_root!();
        let evil = at_root("berth-unpack-absolute");
        assert_refused(
            |_, layer| {
                layer.file(&evil, b"evil");
                evil.clone()
            },
            "absolute path",
        );
        assert!(!Path::new(&evil).exists());
        assert_refused(
            |sandbox, layer| {
                let canary = text(&sandbox.outer().join("canary"));
                layer.file(&canary, b"overwritten");
                canary
            },
            "absolute path",
        );
        assert_refused(
            |sandbox, layer| {
                let evil = text(&sandbox.outer().join("from-pax"));
                layer.pax(&[("path", evil.as_bytes())]).file("innocent", b"evil");
                evil
            },
            "absolute path",
        );
        assert_refused(
            |sandbox, layer| {
                let evil = text(&sandbox.outer().join("evil-dir/"));
                layer.dir(&evil);
                evil
            },
            "absolute path",
        );
    }

    #[test]
    fn paths_climbing_above_the_root_are_refused() {
        require_root!();
        for name in
            ["../canary", "../../escape", "a/../../x", "../sibling/canary", "./../canary", "a/b/../../../canary"]
        {
            assert_refused(
                |_, layer| {
                    layer.file(name, b"overwritten");
                    name.to_owned()
                },
                "climbs above the layer root",
            );
        }
        let cases: [(&str, Build); 6] = [
            ("../../escape", |layer| {
                layer.pax(&[("path", b"../../escape")]).file("innocent", b"x");
            }),
            ("../escape-dir/", |layer| {
                layer.dir("../escape-dir/");
            }),
            ("../escape-link", |layer| {
                layer.symlink("../escape-link", "/");
            }),
            ("../.wh.canary", |layer| {
                layer.file("../.wh.canary", b"");
            }),
            ("../.wh..wh..opq", |layer| {
                layer.file("../.wh..wh..opq", b"");
            }),
            ("../fifo", |layer| {
                layer.add(header(EntryType::Fifo, "../fifo", "", 0), b"");
            }),
        ];
        for (name, build) in cases {
            assert_refused(
                |_, layer| {
                    build(layer);
                    name.to_owned()
                },
                "climbs above the layer root",
            );
        }
    }

    #[test]
    fn paths_through_symlinks_are_refused() {
        require_root!();
        assert_refused(
            |sandbox, layer| {
                layer.symlink("link", &text(sandbox.outer())).file("link/evil", b"evil");
                "link/evil".to_owned()
            },
            "goes through a symlink",
        );
        assert_refused(
            |sandbox, layer| {
                layer.symlink("link", &text(sandbox.outer())).file("link/canary", b"overwritten");
                "link/canary".to_owned()
            },
            "goes through a symlink",
        );
        assert_refused(
            |_, layer| {
                layer.symlink("link", "../..").file("link/x", b"evil");
                "link/x".to_owned()
            },
            "goes through a symlink",
        );
        let evil = at_root("berth-unpack-through-link");
        assert_refused(
            |_, layer| {
                let name = format!("link{evil}/");
                layer.symlink("link", "/").dir(&name);
                name
            },
            "goes through a symlink",
        );
        assert!(!Path::new(&evil).exists());

        // Every kind of entry, and whiteouts, through a link to the sibling directory.
        let cases: [(&str, Build); 7] = [
            ("d/up/canary", |layer| {
                layer.dir("d/").symlink("d/up", "../../sibling").file("d/up/canary", b"x");
            }),
            ("link/.wh.canary", |layer| {
                layer.file("link/.wh.canary", b"");
            }),
            ("link/.wh..wh..opq", |layer| {
                layer.file("link/.wh..wh..opq", b"");
            }),
            ("link/new-dir/", |layer| {
                layer.dir("link/new-dir/");
            }),
            ("link/s", |layer| {
                layer.symlink("link/s", "/");
            }),
            ("link/h", |layer| {
                layer.file("f", b"").hardlink("link/h", "f");
            }),
            ("link/deep/er/file", |layer| {
                layer.file("link/deep/er/file", b"");
            }),
        ];
        for (name, build) in cases {
            assert_refused(
                |_, layer| {
                    layer.symlink("link", "../sibling");
                    build(layer);
                    name.to_owned()
                },
                "goes through a symlink",
            );
        }
    }

    #[test]
    fn other_unsafe_names_are_refused() {
        require_root!();
        let cases: [(&str, &str, Build); 5] = [
            ("f/x", "a parent is not a directory", |layer| {
                layer.file("f", b"").file("f/x", b"");
            }),
            ("a/.wh...", "whiteout of an invalid name", |layer| {
                layer.file("a/.wh...", b"");
            }),
            (".wh..", "whiteout of an invalid name", |layer| {
                layer.file(".wh..", b"");
            }),
            (".", "would replace the layer root", |layer| {
                layer.symlink(".", "/");
            }),
            ("./", "would replace the layer root", |layer| {
                layer.file("f", b"").hardlink("./", "f");
            }),
        ];
        for (name, reason, build) in cases {
            assert_refused(
                |_, layer| {
                    build(layer);
                    name.to_owned()
                },
                reason,
            );
        }
    }

    #[test]
    fn unsafe_hardlinks_are_refused() {
        require_root!();
        let cases: [(&str, Build); 7] = [
            ("link target climbs above the layer root", |layer| {
                layer.hardlink("h", "../canary");
            }),
            ("link target climbs above the layer root", |layer| {
                layer.hardlink("h", "a/../../sibling/canary");
            }),
            ("link target is an absolute path", |layer| {
                layer.hardlink("h", "/etc/passwd");
            }),
            ("link target climbs above the layer root", |layer| {
                layer.pax(&[("linkpath", b"../../etc/passwd")]).hardlink("h", "innocent");
            }),
            ("link target goes through a symlink", |layer| {
                layer.symlink("link", "../sibling").hardlink("h", "link/canary");
            }),
            ("link target does not exist in this layer", |layer| {
                layer.hardlink("h", "missing");
            }),
            ("link target is a directory", |layer| {
                layer.dir("d/").hardlink("h", "d");
            }),
        ];
        for (reason, build) in cases {
            assert_refused(
                |_, layer| {
                    build(layer);
                    "h".to_owned()
                },
                reason,
            );
        }
        assert_refused(
            |sandbox, layer| {
                layer.hardlink("h", &text(&sandbox.outer().join("canary")));
                "h".to_owned()
            },
            "link target is an absolute path",
        );
        assert_refused(
            |_, layer| {
                layer.hardlink("h", "./");
                "h".to_owned()
            },
            "link target is the layer root",
        );
    }
}
