//! The uid, gid and supplementary groups of the container's process.
//!
//! From the security context (`run_as_username` / `run_as_user`, `run_as_group`)
//! or else the image's `User` (`uid`, `uid:gid`, `name`, `name:group`), looked
//! up in the image's own `/etc/passwd` and `/etc/group`, as containerd does:
//! a numeric uid missing from passwd is fine (gid 0), a name is not.

use std::path::Path;

use crate::cri::v1::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, User};

use super::SpecError;
use super::regular_file::{Refused, read_regular};

const RUN_AS_USER: &str = "linux.security_context.run_as_user";
const RUN_AS_USERNAME: &str = "linux.security_context.run_as_username";
const RUN_AS_GROUP: &str = "linux.security_context.run_as_group";
const SUPPLEMENTAL_GROUPS: &str = "linux.security_context.supplemental_groups";
/// Errors about the image's `User` name the CRI field that chose the image.
const IMAGE: &str = "image";

/// A user or group as asked for: a number, or a name to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Numeric(u32),
    Name(String),
}

impl Id {
    fn parse(text: &str) -> Id {
        text.parse().map_or_else(|_| Id::Name(text.to_string()), Id::Numeric)
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    user: Id,
    group: Option<Id>,
    /// The CRI field the request came from, for errors.
    field: &'static str,
}

/// `name:x:uid:gid:...` of `/etc/passwd`.
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// `name:x:gid:member,member` of `/etc/group`.
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

pub(super) fn resolve(
    sc: Option<&LinuxContainerSecurityContext>,
    image_user: Option<&str>,
    rootfs: &Path,
) -> Result<User, SpecError> {
    let request = match requested_by_config(sc)? {
        Some(request) => request,
        None => parse_image_user(image_user.unwrap_or_default())?,
    };
    let passwd = parse_passwd(&read_in_rootfs(rootfs, "/etc/passwd")?);
    let groups = parse_group(&read_in_rootfs(rootfs, "/etc/group")?);

    let (uid, passwd_gid, name) = resolve_user(&request, &passwd)?;
    let gid = match &request.group {
        Some(group) => resolve_group(group, request.field, &groups)?,
        None => passwd_gid,
    };
    let strict = sc.is_some_and(|sc| sc.supplemental_groups_policy == SupplementalGroupsPolicy::Strict as i32);
    let image_groups = if strict { Vec::new() } else { memberships(name.as_deref(), &groups) };
    let config_groups = supplemental_groups(sc)?;

    let mut user = User::default();
    user.set_uid(uid).set_gid(gid).set_additional_gids(Some(additional_gids(gid, &image_groups, &config_groups)));
    Ok(user)
}

/// The security context's user, if it names one. A group without a user is
/// refused, as the CRI requires.
fn requested_by_config(sc: Option<&LinuxContainerSecurityContext>) -> Result<Option<Request>, SpecError> {
    let Some(sc) = sc else { return Ok(None) };
    let group = sc.run_as_group.as_ref().map(|g| to_id(g.value, RUN_AS_GROUP)).transpose()?.map(Id::Numeric);
    // containerd lets the name win when both are set; kubelet sends one.
    let (user, field) = if !sc.run_as_username.is_empty() {
        (Id::Name(sc.run_as_username.clone()), RUN_AS_USERNAME)
    } else if let Some(uid) = &sc.run_as_user {
        (Id::Numeric(to_id(uid.value, RUN_AS_USER)?), RUN_AS_USER)
    } else if group.is_some() {
        return Err(SpecError::invalid(RUN_AS_GROUP, "set without run_as_user or run_as_username"));
    } else {
        return Ok(None);
    };
    Ok(Some(Request { user, group, field }))
}

fn to_id(value: i64, field: &str) -> Result<u32, SpecError> {
    u32::try_from(value).map_err(|_| SpecError::invalid(field, format!("{value} is not a valid id")))
}

/// The image config's `User`: `uid`, `uid:gid`, `name`, `name:group`; empty is root.
fn parse_image_user(text: &str) -> Result<Request, SpecError> {
    if text.is_empty() {
        return Ok(Request { user: Id::Numeric(0), group: None, field: IMAGE });
    }
    let (user, group) = match text.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (text, None),
    };
    if user.is_empty() || group.is_some_and(str::is_empty) {
        return Err(SpecError::invalid(IMAGE, format!("the image's User {text:?} is malformed")));
    }
    Ok(Request { user: Id::parse(user), group: group.map(Id::parse), field: IMAGE })
}

/// uid, passwd gid (0 for a uid passwd does not know) and name, if known.
fn resolve_user(request: &Request, passwd: &[PasswdEntry]) -> Result<(u32, u32, Option<String>), SpecError> {
    match &request.user {
        Id::Numeric(uid) => {
            let entry = passwd.iter().find(|entry| entry.uid == *uid);
            Ok((*uid, entry.map_or(0, |entry| entry.gid), entry.map(|entry| entry.name.clone())))
        }
        Id::Name(name) => passwd
            .iter()
            .find(|entry| entry.name == *name)
            .map(|entry| (entry.uid, entry.gid, Some(entry.name.clone())))
            .ok_or_else(|| {
                SpecError::invalid(request.field, format!("user {name:?} is not in the image's /etc/passwd"))
            }),
    }
}

fn resolve_group(group: &Id, field: &str, groups: &[GroupEntry]) -> Result<u32, SpecError> {
    match group {
        Id::Numeric(gid) => Ok(*gid),
        Id::Name(name) => groups
            .iter()
            .find(|entry| entry.name == *name)
            .map(|entry| entry.gid)
            .ok_or_else(|| SpecError::invalid(field, format!("group {name:?} is not in the image's /etc/group"))),
    }
}

/// The groups of `/etc/group` that list the user as a member.
fn memberships(name: Option<&str>, groups: &[GroupEntry]) -> Vec<u32> {
    let Some(name) = name else { return Vec::new() };
    groups.iter().filter(|group| group.members.iter().any(|member| member == name)).map(|group| group.gid).collect()
}

fn supplemental_groups(sc: Option<&LinuxContainerSecurityContext>) -> Result<Vec<u32>, SpecError> {
    let groups = sc.map(|sc| sc.supplemental_groups.as_slice()).unwrap_or_default();
    groups.iter().map(|gid| to_id(*gid, SUPPLEMENTAL_GROUPS)).collect()
}

/// The primary gid first (containerd lists it too, so `id -G` matches), then
/// the image's groups, then the config's; each once.
fn additional_gids(gid: u32, image_groups: &[u32], config_groups: &[u32]) -> Vec<u32> {
    let mut gids = vec![gid];
    for gid in image_groups.iter().chain(config_groups) {
        if !gids.contains(gid) {
            gids.push(*gid);
        }
    }
    gids
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    database_lines(text)
        .filter_map(|fields| {
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    database_lines(text)
        .filter_map(|fields| {
            let members = fields.get(3).map_or_else(Vec::new, |list| {
                list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_string).collect()
            });
            Some(GroupEntry { name: fields.first()?.to_string(), gid: fields.get(2)?.parse().ok()?, members })
        })
        .collect()
}

/// The colon-separated fields of each entry, skipping blanks, comments and
/// NIS `+`/`-` lines (as libc does without NIS).
fn database_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '+', '-']))
        .map(|line| line.split(':').collect())
}

/// Far above any real passwd or group file, far below what would strain berth.
const MAX_IMAGE_FILE: u64 = 4 << 20;

/// A file of the image, read with symlinks resolved inside the rootfs: an
/// image's `/etc/passwd -> /host/...` must not read the node's files. A
/// missing file reads as empty (scratch images have none). The image may hold
/// anything there: only a regular file of at most [`MAX_IMAGE_FILE`] is read,
/// and nothing else is even opened for reading (a FIFO would block the open, a
/// device could be read without end).
fn read_in_rootfs(rootfs: &Path, path: &str) -> Result<String, SpecError> {
    let resolved =
        crate::in_root::host_path(rootfs, Path::new(path)).map_err(|e| SpecError::io(format!("the image's {path}"), e))?;
    match read_regular(&resolved, MAX_IMAGE_FILE) {
        // libc reads these files as bytes; a name that is not UTF-8 matches nothing.
        Ok(bytes) => Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()),
        Err(Refused::Io(e)) => Err(SpecError::io(format!("the image's {path}"), e)),
        Err(problem) => Err(SpecError::ImageFile { path: path.to_string(), problem: problem.to_string() }),
    }
}

/// uid or gid mappings as the OCI spec has them.
type Mappings = Option<Vec<LinuxIdMapping>>;

/// The OCI mappings of a container in its pod's own user namespace (runc
/// wants them even when joining it), after checking that the process's IDs
/// exist there: an unmapped one fails in the runtime with a bare EINVAL.
pub(super) fn namespace_mappings(
    sandbox: &crate::sandbox::SandboxRecord,
    process: &oci_spec::runtime::Process,
) -> Result<(Mappings, Mappings), SpecError> {
    let Some(pod) = sandbox.user_namespace else { return Ok((None, None)) };
    let user = process.user();
    let field = "linux.security_context";
    if pod.uids.to_host(user.uid()).is_none() {
        return Err(SpecError::invalid(
            format!("{field}.run_as_user"),
            format!("uid {} is outside the pod's user namespace ({} IDs from 0)", user.uid(), pod.uids.length),
        ));
    }
    let gids = std::iter::once(user.gid()).chain(user.additional_gids().iter().flatten().copied());
    for gid in gids {
        if pod.gids.to_host(gid).is_none() {
            return Err(SpecError::invalid(
                format!("{field}.supplemental_groups"),
                format!("gid {gid} is outside the pod's user namespace ({} IDs from 0)", pod.gids.length),
            ));
        }
    }
    let oci = |m: crate::idmap::IdMapping| {
        LinuxIdMappingBuilder::default()
            .container_id(m.container_id)
            .host_id(m.host_id)
            .size(m.length)
            .build()
            .map(|mapping| Some(vec![mapping]))
    };
    Ok((oci(pod.uids)?, oci(pod.gids)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::Int64Value;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          alice:x:1000:1000::/home/alice:/bin/sh\n\
                          bob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
                         users:x:100:\n\
                         alice:x:1000:\n\
                         wheel:x:10:alice,bob\n\
                         audio:x:29:alice\n\
                         staff:x:50:\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn ids(user: &User) -> (u32, u32, Vec<u32>) {
        (user.uid(), user.gid(), user.additional_gids().clone().unwrap_or_default())
    }

    fn from_image(user: &str) -> Result<(u32, u32, Vec<u32>), SpecError> {
        let root = rootfs();
        resolve(None, Some(user), root.path()).map(|u| ids(&u))
    }

    #[test]
    fn image_user_forms_resolve_against_the_rootfs() {
        assert_eq!(from_image("").unwrap(), (0, 0, vec![0]));
        assert_eq!(from_image("1000").unwrap(), (1000, 1000, vec![1000, 10, 29]));
        assert_eq!(from_image("1000:50").unwrap(), (1000, 50, vec![50, 10, 29]));
        assert_eq!(from_image("alice").unwrap(), (1000, 1000, vec![1000, 10, 29]));
        assert_eq!(from_image("bob:staff").unwrap(), (1001, 50, vec![50, 10]));
        // A uid the image does not know runs with gid 0 and no groups.
        assert_eq!(from_image("4242").unwrap(), (4242, 0, vec![0]));
    }

    #[test]
    fn unknown_names_are_errors_naming_the_field() {
        for user in ["mallory", "alice:nogroup"] {
            let err = from_image(user).unwrap_err();
            assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == IMAGE), "{user}: {err}");
        }
        let sc = LinuxContainerSecurityContext { run_as_username: "mallory".into(), ..Default::default() };
        let err = resolve(Some(&sc), None, rootfs().path()).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == RUN_AS_USERNAME), "{err}");
    }

    #[test]
    fn security_context_overrides_the_image_user() {
        let root = rootfs();
        let sc = LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1001 }),
            run_as_group: Some(Int64Value { value: 3000 }),
            supplemental_groups: vec![4000, 10],
            ..Default::default()
        };
        let user = resolve(Some(&sc), Some("alice"), root.path()).unwrap();
        assert_eq!(ids(&user), (1001, 3000, vec![3000, 10, 4000]));

        let by_name = LinuxContainerSecurityContext { run_as_username: "alice".into(), ..Default::default() };
        assert_eq!(ids(&resolve(Some(&by_name), Some("bob"), root.path()).unwrap()), (1000, 1000, vec![1000, 10, 29]));
    }

    #[test]
    fn strict_policy_keeps_only_the_configs_groups() {
        let sc = LinuxContainerSecurityContext {
            run_as_username: "alice".into(),
            supplemental_groups: vec![4000],
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict as i32,
            ..Default::default()
        };
        assert_eq!(ids(&resolve(Some(&sc), None, rootfs().path()).unwrap()), (1000, 1000, vec![1000, 4000]));
    }

    #[test]
    fn run_as_group_without_a_user_is_refused() {
        let sc = LinuxContainerSecurityContext { run_as_group: Some(Int64Value { value: 5 }), ..Default::default() };
        let err = resolve(Some(&sc), Some("alice"), rootfs().path()).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == RUN_AS_GROUP), "{err}");
    }

    #[test]
    fn negative_ids_are_refused() {
        let sc = LinuxContainerSecurityContext { run_as_user: Some(Int64Value { value: -1 }), ..Default::default() };
        let err = resolve(Some(&sc), None, rootfs().path()).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == RUN_AS_USER), "{err}");
    }

    #[test]
    fn scratch_image_without_etc_runs_numeric_users() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(ids(&resolve(None, Some("65534"), empty.path()).unwrap()), (65534, 0, vec![0]));
        assert!(resolve(None, Some("nobody"), empty.path()).is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_rootfs() {
        let root = rootfs();
        std::fs::rename(root.path().join("etc"), root.path().join("real-etc")).unwrap();
        // An absolute link restarts at the rootfs, not at the host's `/`.
        std::os::unix::fs::symlink("/real-etc", root.path().join("etc")).unwrap();
        assert_eq!(
            crate::in_root::host_path(root.path(), Path::new("/etc/passwd")).unwrap(),
            root.path().join("real-etc/passwd")
        );
        assert_eq!(ids(&resolve(None, Some("alice"), root.path()).unwrap()).0, 1000);
        // `..` stops at the rootfs.
        std::os::unix::fs::symlink("../../../../etc/hostname", root.path().join("escape")).unwrap();
        assert_eq!(
            crate::in_root::host_path(root.path(), Path::new("escape")).unwrap(),
            root.path().join("real-etc/hostname")
        );
    }

    /// `read_in_rootfs(rootfs, "/etc/passwd")` on a thread: a read that
    /// blocks fails the test instead of hanging it.
    fn read_passwd_bounded(root: &Path) -> Result<String, SpecError> {
        let root = root.to_path_buf();
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(read_in_rootfs(&root, "/etc/passwd"));
        });
        outcome.recv_timeout(std::time::Duration::from_secs(20)).expect("reading /etc/passwd hung")
    }

    fn refused_because(root: &Path) -> String {
        match read_passwd_bounded(root) {
            Err(SpecError::ImageFile { path, problem }) => {
                assert_eq!(path, "/etc/passwd");
                problem
            }
            other => panic!("not refused as an image file: {other:?}"),
        }
    }

    #[test]
    fn special_files_in_the_image_are_refused_without_being_read() {
        use nix::sys::stat::{Mode, SFlag, mknod};
        let root = rootfs();
        let passwd = root.path().join("etc/passwd");
        let mode = Mode::from_bits_truncate(0o644);
        std::fs::remove_file(&passwd).unwrap();
        // A FIFO with no writer: a plain open for reading would wait forever.
        nix::unistd::mkfifo(&passwd, mode).unwrap();
        assert!(refused_because(root.path()).contains("a FIFO"));
        std::fs::remove_file(&passwd).unwrap();
        // /dev/zero's numbers: read as a file, it never ends.
        mknod(&passwd, SFlag::S_IFCHR, mode, nix::sys::stat::makedev(1, 5)).unwrap();
        assert!(refused_because(root.path()).contains("a character device"));
        std::fs::remove_file(&passwd).unwrap();
        mknod(&passwd, SFlag::S_IFBLK, mode, nix::sys::stat::makedev(7, 0)).unwrap();
        assert!(refused_because(root.path()).contains("a block device"));
        std::fs::remove_file(&passwd).unwrap();
        std::fs::create_dir(&passwd).unwrap();
        assert!(refused_because(root.path()).contains("a directory"));
        std::fs::remove_dir(&passwd).unwrap();
        let _socket = std::os::unix::net::UnixListener::bind(&passwd).unwrap();
        assert!(refused_because(root.path()).contains("a socket"));
    }

    #[test]
    fn a_link_to_a_device_inside_the_image_is_refused_too() {
        use nix::sys::stat::{Mode, SFlag, mknod};
        let root = rootfs();
        std::fs::create_dir(root.path().join("dev")).unwrap();
        let zero = root.path().join("dev/zero");
        mknod(&zero, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), nix::sys::stat::makedev(1, 5)).unwrap();
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.path().join("etc/passwd")).unwrap();
        assert!(refused_because(root.path()).contains("a character device"));
        // The whole user resolution fails with it, naming the file.
        let err = resolve(None, Some("alice"), root.path()).unwrap_err();
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
        assert_eq!(crate::error::Classify::kind(&err), crate::error::ErrorKind::FailedPrecondition);
    }

    #[test]
    fn oversize_files_are_refused_before_they_are_read() {
        let root = rootfs();
        // Sparse: 256 MiB long, nothing on disk, nothing read.
        let passwd = std::fs::File::options().write(true).open(root.path().join("etc/passwd")).unwrap();
        passwd.set_len(256 << 20).unwrap();
        assert!(refused_because(root.path()).contains("268435456 bytes"));
        passwd.set_len(MAX_IMAGE_FILE).unwrap();
        assert_eq!(read_passwd_bounded(root.path()).unwrap().len() as u64, MAX_IMAGE_FILE);
    }

    #[test]
    fn link_loops_and_missing_files_are_told_apart() {
        let root = rootfs();
        std::fs::remove_file(root.path().join("etc/group")).unwrap();
        assert_eq!(read_in_rootfs(root.path(), "/etc/group").unwrap(), "", "a scratch image has none");
        std::os::unix::fs::symlink("/etc/loop", root.path().join("etc/loop")).unwrap();
        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/loop", root.path().join("etc/passwd")).unwrap();
        assert!(matches!(read_passwd_bounded(root.path()), Err(SpecError::Io { .. })));
    }
}
