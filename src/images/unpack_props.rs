//! Property tests of layer unpacking with generated tar streams: every entry
//! type, whiteouts, hostile names (`..`, absolute, over NAME_MAX, junk bytes),
//! links pointing out of the layer, lying headers, PAX records, and archives
//! mutated byte by byte. Whatever the archive, unpacking must not panic, must
//! end in Ok or an error naming the entry (or a file inside the layer), and
//! must leave everything outside the layer directory exactly as it was.
//!
//! Needs root, as unpacking does (chown, mknod, trusted xattrs).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;
use tar::{EntryType, Header};

use super::unpack::{UnpackError, unpack_layer};

/// A failure is kept as a named regression test rather than in a file beside
/// the sources; shrinking is bounded since each case touches the disk.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 1024, ..ProptestConfig::default() }
}

// ---- the sandbox --------------------------------------------------------------------------------

/// `<temp>/g1/../g5/outer/layer` is the target. Everything else under `<temp>` must not change.
/// The guard directories keep a bug that climbs a few levels above the layer (the generated names
/// never climb more than five) inside the temp dir, where it is seen, instead of in /tmp or /.
struct Sandbox {
    temp: tempfile::TempDir,
    outer: PathBuf,
    dest: PathBuf,
}

const GUARDS: usize = 5;

impl Sandbox {
    fn new() -> Self {
        assert!(nix::unistd::geteuid().is_root(), "unpacking layers needs root: run the suite as root (hack/test.sh)");
        let temp = tempfile::tempdir().unwrap();
        let mut outer = temp.path().to_path_buf();
        for level in 1..=GUARDS {
            outer.push(format!("g{level}"));
            fs::create_dir(&outer).unwrap();
            fs::write(outer.join("canary"), b"canary").unwrap();
        }
        outer.push("outer");
        fs::create_dir(&outer).unwrap();
        fs::write(outer.join("canary"), b"canary").unwrap();
        fs::create_dir(outer.join("sibling")).unwrap();
        fs::write(outer.join("sibling/canary"), b"canary").unwrap();
        let dest = outer.join("layer");
        fs::create_dir(&dest).unwrap();
        Sandbox { temp, outer, dest }
    }

    /// Everything but the layer: type, mode, owner, size, inode, link count, mtime, contents,
    /// link target and xattrs. A hard link made to a file out here changes its link count.
    fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut found = BTreeMap::new();
        describe(self.temp.path(), &self.dest, &mut found);
        found
    }
}

/// Each path under `path` but `skip` with what a change to it would alter (the
/// unpack unit tests check the same).
pub(super) fn describe(path: &Path, skip: &Path, found: &mut BTreeMap<PathBuf, String>) {
    if path == skip {
        return;
    }
    let meta = fs::symlink_metadata(path).unwrap();
    let mut description = format!(
        "{:?} {:o} {}:{} {} ino={} nlink={} {}.{}",
        meta.file_type(),
        meta.mode(),
        meta.uid(),
        meta.gid(),
        meta.len(),
        meta.ino(),
        meta.nlink(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    if meta.is_file() {
        description += &format!(" {:?}", fs::read(path).unwrap());
    }
    if meta.file_type().is_symlink() {
        description += &format!(" -> {:?}", fs::read_link(path).unwrap());
    }
    for name in xattr::list(path).unwrap() {
        description += &format!(" {name:?}={:?}", xattr::get(path, &name).unwrap());
    }
    found.insert(path.to_path_buf(), description);
    if meta.is_dir() {
        for child in fs::read_dir(path).unwrap() {
            describe(&child.unwrap().path(), skip, found);
        }
    }
}

// ---- generated archives -------------------------------------------------------------------------

/// An entry's path. Absolute ones are made under the sandbox (`AbsoluteOuter`) so that a bug that
/// honoured them would write where it is seen, never into the real root.
#[derive(Debug, Clone)]
enum Name {
    Relative {
        dot_slash: bool,
        parts: Vec<Vec<u8>>,
        trailing_slash: bool,
    },
    AbsoluteOuter(Vec<Vec<u8>>),
    /// Near or over PATH_MAX.
    VeryLong(usize),
    Empty,
}

/// Where a link points.
#[derive(Debug, Clone)]
enum Target {
    Inside(Name),
    /// Climbs to `outer` (by as many `..` as it takes from where the link is), then `then`.
    Escape(&'static str),
    /// `outer/then`, absolute.
    AbsoluteOuter(&'static str),
    Empty,
}

#[derive(Debug, Clone)]
enum Kind {
    File {
        data: Vec<u8>,
        declared_extra: u64,
    },
    Dir,
    /// A regular file entry whose name ends in `/`: a directory in pre-POSIX archives.
    OldStyleDir,
    Symlink(Target),
    Hardlink(Target),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// Another type flag: GNU sparse, long-name records out of place, global PAX, vendor ones.
    Other(u8),
}

#[derive(Debug, Clone)]
struct Entry {
    name: Name,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    pax: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone)]
enum Ending {
    ZeroBlocks,
    Nothing,
    Junk(Vec<u8>),
}

fn component() -> impl Strategy<Value = Vec<u8>> + Clone {
    let fixed = |bytes: &'static [u8]| Just(bytes.to_vec());
    prop_oneof![
        12 => "[abc]{1,2}".prop_map(String::into_bytes),
        2 => fixed(b"."),
        3 => fixed(b".."),
        3 => "\\.wh\\.[abc.]{0,2}".prop_map(String::into_bytes),
        2 => fixed(b".wh..wh..opq"),
        1 => fixed(b".wh..wh.plnk"),
        // Any byte but NUL (which ends a tar name) and `/`.
        2 => vec(prop_oneof![1u8..=46, 48u8..=255], 1..16),
        1 => (250..270usize).prop_map(|len| vec![b'n'; len]),
    ]
}

fn name() -> impl Strategy<Value = Name> {
    let parts = vec(component(), 1..5);
    prop_oneof![
        12 => (any::<bool>(), parts.clone(), prop::bool::weighted(0.2))
            .prop_map(|(dot_slash, parts, trailing_slash)| Name::Relative { dot_slash, parts, trailing_slash }),
        1 => parts.prop_map(Name::AbsoluteOuter),
        1 => (3900..4300usize).prop_map(Name::VeryLong),
        1 => Just(Name::Empty),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    let then = prop::sample::select(vec!["", "sibling", "canary", "sibling/canary", "sibling/new"]);
    prop_oneof![
        6 => name().prop_map(Target::Inside),
        2 => then.clone().prop_map(Target::Escape),
        2 => then.prop_map(Target::AbsoluteOuter),
        1 => Just(Target::Empty),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    let device = (prop_oneof![0..4u32, 0..300u32], prop_oneof![0..4u32, 0..300u32]);
    prop_oneof![
        5 => (vec(any::<u8>(), 0..600), prop_oneof![6 => Just(0u64), 1 => 1..1024u64])
            .prop_map(|(data, declared_extra)| Kind::File { data, declared_extra }),
        4 => Just(Kind::Dir),
        1 => Just(Kind::OldStyleDir),
        3 => target().prop_map(Kind::Symlink),
        3 => target().prop_map(Kind::Hardlink),
        1 => device.clone().prop_map(|(major, minor)| Kind::Char(major, minor)),
        1 => device.prop_map(|(major, minor)| Kind::Block(major, minor)),
        1 => Just(Kind::Fifo),
        1 => prop::sample::select(b"SgKLVMNDAIZ9\x80".to_vec()).prop_map(Kind::Other),
    ]
}

fn pax_record() -> impl Strategy<Value = (String, Vec<u8>)> {
    let junk = vec(any::<u8>(), 0..24);
    let text = |options: Vec<&'static str>| prop::sample::select(options).prop_map(|s| s.as_bytes().to_vec());
    prop_oneof![
        (Just("SCHILY.xattr.user.k".to_string()), junk.clone()),
        (Just("SCHILY.xattr.trusted.overlay.opaque".to_string()), Just(b"y".to_vec())),
        (Just("SCHILY.xattr.trusted.x".to_string()), junk.clone()),
        (Just("SCHILY.xattr.security.capability".to_string()), junk.clone()),
        (Just("SCHILY.xattr.".to_string()), junk),
        (Just("mtime".to_string()), text(vec!["1.5", "-1.5", "1e9", "abc", "99999999999999999999", ".", "-", ""])),
        (Just("GNU.sparse.size".to_string()), Just(b"1".to_vec())),
        (Just("uid".to_string()), text(vec!["12345678901", "-1", "x", "0"])),
        (Just("path".to_string()), text(vec!["../pax-escape", "/pax-abs", "a/b", "", ".wh..wh..opq"])),
        (Just("linkpath".to_string()), text(vec!["../../canary", "/", "a"])),
        (Just("size".to_string()), text(vec!["0", "9999999", "-1", "x"])),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        name(),
        kind(),
        prop_oneof![Just(0o755u32), Just(0o644), 0..=0o7777u32],
        prop_oneof![4 => Just(0u64), 1 => 0..70_000u64, 1 => Just(u64::from(u32::MAX) + 1)],
        prop_oneof![4 => Just(0u64), 1 => 0..70_000u64],
        prop_oneof![Just(1_600_000_000u64), any::<u64>()],
        prop_oneof![5 => Just(Vec::new()), 1 => vec(pax_record(), 1..3)],
    )
        .prop_map(|(name, kind, mode, uid, gid, mtime, pax)| Entry { name, kind, mode, uid, gid, mtime, pax })
}

fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        4 => Just(Ending::ZeroBlocks),
        1 => Just(Ending::Nothing),
        1 => vec(any::<u8>(), 1..700).prop_map(Ending::Junk),
    ]
}

/// Writes archives byte by byte: `tar::Builder` refuses the hostile names generated here.
struct Writer<'a> {
    outer: &'a Path,
    out: Vec<u8>,
    /// Every name an entry was given, as unpacking reports it.
    names: Vec<String>,
}

impl Writer<'_> {
    fn render_name(&self, name: &Name) -> Vec<u8> {
        match name {
            Name::Relative { dot_slash, parts, trailing_slash } => {
                let mut bytes = if *dot_slash { b"./".to_vec() } else { Vec::new() };
                bytes.extend(parts.join(&b'/'));
                if *trailing_slash {
                    bytes.push(b'/');
                }
                bytes
            }
            Name::AbsoluteOuter(parts) => {
                let mut bytes = self.outer.as_os_str().as_bytes().to_vec();
                bytes.push(b'/');
                bytes.extend(parts.join(&b'/'));
                bytes
            }
            // Long components rather than deep nesting: each level costs a lookup of every level
            // above it, and thousands of levels would make a case take seconds.
            Name::VeryLong(len) => [vec![b'd'; 199], vec![b'/']].concat().into_iter().cycle().take(*len).collect(),
            Name::Empty => Vec::new(),
        }
    }

    /// How many directories the entry sits below the layer root, lexically.
    fn depth(entry: &[u8]) -> usize {
        let mut depth: isize = 0;
        let parts: Vec<&[u8]> = entry.split(|b| *b == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            depth += if *part == b".." { -1 } else { 1 };
        }
        depth.max(0) as usize
    }

    fn render_target(&self, target: &Target, entry: &[u8], hardlink: bool) -> Vec<u8> {
        match target {
            Target::Inside(name) => self.render_name(name),
            Target::Escape(then) => {
                // A hard link's target is relative to the layer root, a symlink's to its directory.
                let ups = if hardlink { 1 } else { Self::depth(entry) + 1 };
                let mut bytes = b"../".repeat(ups);
                bytes.extend_from_slice(then.as_bytes());
                bytes
            }
            Target::AbsoluteOuter(then) => {
                let mut bytes = self.outer.as_os_str().as_bytes().to_vec();
                bytes.push(b'/');
                bytes.extend_from_slice(then.as_bytes());
                bytes
            }
            Target::Empty => Vec::new(),
        }
    }

    fn block(&mut self, header: &mut Header, data: &[u8]) {
        header.set_cksum();
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(data);
        self.out.resize(self.out.len().next_multiple_of(512), 0);
    }

    /// A GNU long name ('L') or long link name ('K') record, for names over 100 bytes.
    fn long_record(&mut self, kind: EntryType, bytes: &[u8]) {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        let mut data = bytes.to_vec();
        data.push(0);
        header.set_size(data.len() as u64);
        self.block(&mut header, &data);
    }

    fn pax(&mut self, records: &[(String, Vec<u8>)]) {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
            // The length counts its own digits.
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len += 1;
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.extend_from_slice(&body);
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.as_old_mut().name[..10].copy_from_slice(b"PaxHeaders");
        header.set_size(data.len() as u64);
        self.block(&mut header, &data);
    }

    fn entry(&mut self, entry: &Entry) {
        let mut name = self.render_name(&entry.name);
        let (kind, link, data, extra) = match &entry.kind {
            Kind::File { data, declared_extra } => (EntryType::Regular, None, data.clone(), *declared_extra),
            Kind::Dir => (EntryType::Directory, None, Vec::new(), 0),
            Kind::OldStyleDir => {
                name.push(b'/');
                (EntryType::Regular, None, Vec::new(), 0)
            }
            Kind::Symlink(target) => {
                (EntryType::Symlink, Some(self.render_target(target, &name, false)), Vec::new(), 0)
            }
            Kind::Hardlink(target) => (EntryType::Link, Some(self.render_target(target, &name, true)), Vec::new(), 0),
            Kind::Char(..) => (EntryType::Char, None, Vec::new(), 0),
            Kind::Block(..) => (EntryType::Block, None, Vec::new(), 0),
            Kind::Fifo => (EntryType::Fifo, None, Vec::new(), 0),
            Kind::Other(flag) => (EntryType::new(*flag), None, Vec::new(), 0),
        };
        if !entry.pax.is_empty() {
            self.pax(&entry.pax);
        }
        if name.len() >= 100 {
            self.long_record(EntryType::GNULongName, &name);
        }
        if let Some(link) = link.as_ref().filter(|link| link.len() >= 100) {
            self.long_record(EntryType::GNULongLink, link);
        }
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64 + extra);
        header.set_mode(entry.mode);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(entry.mtime);
        if let Kind::Char(major, minor) | Kind::Block(major, minor) = entry.kind {
            header.set_device_major(major).unwrap();
            header.set_device_minor(minor).unwrap();
        }
        let short = &name[..name.len().min(99)];
        header.as_old_mut().name[..short.len()].copy_from_slice(short);
        if let Some(link) = &link {
            let short = &link[..link.len().min(99)];
            header.as_old_mut().linkname[..short.len()].copy_from_slice(short);
        }
        self.names.push(String::from_utf8_lossy(&name).into_owned());
        self.block(&mut header, &data);
    }
}

fn archive(outer: &Path, entries: &[Entry], ending: &Ending) -> (Vec<u8>, Vec<String>) {
    let mut writer = Writer { outer, out: Vec::new(), names: Vec::new() };
    for entry in entries {
        writer.entry(entry);
    }
    match ending {
        Ending::ZeroBlocks => writer.out.extend_from_slice(&[0; 1024]),
        Ending::Nothing => {}
        Ending::Junk(junk) => writer.out.extend_from_slice(junk),
    }
    (writer.out, writer.names)
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Flip(Index, u8),
    /// Changes a byte and then makes its block's header checksum right again, so that the
    /// change reaches the header parser instead of failing the checksum.
    SetAndFixChecksum(Index, u8),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        1 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        3 => (any::<Index>(), prop_oneof![Just(0u8), Just(b'/'), Just(b'.'), Just(0xff), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::SetAndFixChecksum(at, byte)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        if bytes.is_empty() {
            return;
        }
        match mutation {
            Mutation::Set(at, byte) => {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            Mutation::Flip(at, bit) => {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::SetAndFixChecksum(at, byte) => {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
                let start = i - i % 512;
                if let Some(block) = bytes.get_mut(start..start + 512) {
                    block[148..156].fill(b' ');
                    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
                    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                }
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
}

// ---- the invariants -----------------------------------------------------------------------------

/// The names entries are read under, when the archive cannot make the reader see others: no
/// size that lies (the next header is then read from the middle of data), no record that renames
/// the next entry, no mutation.
fn names_as_read(entries: &[Entry], names: Vec<String>) -> Option<Vec<String>> {
    let renames = |entry: &Entry| {
        matches!(entry.kind, Kind::File { declared_extra, .. } if declared_extra != 0)
            || matches!(entry.kind, Kind::Other(_))
            || entry.pax.iter().any(|(key, _)| ["path", "linkpath", "size"].contains(&key.as_str()))
    };
    (!entries.iter().any(renames)).then_some(names)
}

/// Unpacks `stream` and checks the outcome: outside untouched, and an error, if any, naming an
/// entry of the archive (when `names` are known) or a file inside the layer.
fn unpack_and_check(sandbox: &Sandbox, stream: &[u8], names: Option<&[String]>) -> Result<(), TestCaseError> {
    let before = sandbox.outside();
    let result = unpack_layer(stream, &sandbox.dest);
    let after = sandbox.outside();
    if before != after {
        let changed: Vec<_> = after
            .iter()
            .filter(|(path, description)| before.get(*path) != Some(description))
            .map(|(path, _)| path)
            .chain(before.keys().filter(|path| !after.contains_key(*path)))
            .collect();
        return Err(TestCaseError::fail(format!("outside the layer, changed: {changed:?}; result {result:?}")));
    }
    match result {
        Ok(stats) => prop_assert!(stats.whiteouts <= stats.entries),
        Err(
            UnpackError::Unsafe { path, .. }
            | UnpackError::Unsupported { path, .. }
            | UnpackError::BadHeader { path, .. },
        ) => {
            if let Some(names) = names {
                prop_assert!(names.contains(&path), "the error names {path:?}, no entry of the archive");
            }
        }
        Err(UnpackError::Io { path, source }) => {
            prop_assert!(path.starts_with(&sandbox.dest), "i/o outside the layer: {}: {source}", path.display());
        }
        Err(UnpackError::Tar(_)) => {}
    }
    Ok(())
}

// ---- the properties -----------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_layers_stay_inside_the_target(entries in vec(entry(), 1..12), ending in ending()) {
        let sandbox = Sandbox::new();
        let (stream, names) = archive(&sandbox.outer, &entries, &ending);
        unpack_and_check(&sandbox, &stream, names_as_read(&entries, names).as_deref())?;
    }

    #[test]
    fn mutated_layers_stay_inside_the_target(
        entries in vec(entry(), 1..8),
        mutations in vec(mutation(), 1..6),
    ) {
        let sandbox = Sandbox::new();
        let (mut stream, _) = archive(&sandbox.outer, &entries, &Ending::ZeroBlocks);
        mutate(&mut stream, &mutations);
        unpack_and_check(&sandbox, &stream, None)?;
    }

    /// Links out of the layer followed by entries through them, the classic escape, in bulk.
    #[test]
    fn entries_through_escaping_links_stay_inside(
        link in component(),
        target in prop::sample::select(vec!["", "sibling", "canary"]),
        absolute in any::<bool>(),
        then in vec((name(), kind()), 1..4),
    ) {
        let sandbox = Sandbox::new();
        let link_target = if absolute { Target::AbsoluteOuter(target) } else { Target::Escape(target) };
        let mut entries = vec![Entry {
            name: Name::Relative { dot_slash: false, parts: vec![link.clone()], trailing_slash: false },
            kind: Kind::Symlink(link_target),
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime: 0,
            pax: Vec::new(),
        }];
        for (name, kind) in then {
            let name = match name {
                Name::Relative { dot_slash, mut parts, trailing_slash } => {
                    parts.insert(0, link.clone());
                    Name::Relative { dot_slash, parts, trailing_slash }
                }
                other => other,
            };
            entries.push(Entry { name, kind, mode: 0o644, uid: 0, gid: 0, mtime: 0, pax: Vec::new() });
        }
        let (stream, names) = archive(&sandbox.outer, &entries, &Ending::ZeroBlocks);
        unpack_and_check(&sandbox, &stream, names_as_read(&entries, names).as_deref())?;
    }
}
