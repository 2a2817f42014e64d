//! A path inside a container's rootfs with its links followed as the container
//! would follow them: an absolute target restarts at the rootfs, `..` stops at
//! it, so an image's `/etc/passwd -> /host/...` never reaches the node's files.
//! Components that do not exist yet are kept as written (a mount destination
//! the runtime will create). berth reads the image's passwd and group files
//! through it, and the internal runtime resolves bind destinations with it as
//! runc does (libcontainer refuses a destination whose own name is a link).
//!
//! Only for a rootfs no process runs in yet: the image's links are input, but
//! nothing changes them while this walks.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on links followed in one lookup.
const MAX_LINKS: usize = 40;

/// `path` as the container would find it, as an absolute path inside the
/// rootfs (`rootfs.join` of it, without its leading `/`, is where it is on the host).
pub fn resolve(rootfs: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = names(path).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let here: PathBuf = resolved.iter().chain(std::iter::once(&name)).collect();
        let is_link = std::fs::symlink_metadata(rootfs.join(&here)).is_ok_and(|meta| meta.is_symlink());
        if !is_link {
            resolved.push(name);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(std::io::Error::from_raw_os_error(nix::libc::ELOOP));
        }
        let target = std::fs::read_link(rootfs.join(&here))?;
        if target.is_absolute() {
            resolved.clear();
        }
        for (i, part) in names(&target).enumerate() {
            pending.insert(i, part);
        }
    }
    Ok(Path::new("/").join(resolved.iter().collect::<PathBuf>()))
}

/// Where `path` is on the host: [`resolve`]d, under `rootfs`.
pub fn host_path(rootfs: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let inside = resolve(rootfs, path)?;
    Ok(rootfs.join(inside.strip_prefix("/").unwrap_or(&inside)))
}

/// The names and `..`s of a path; `/` and `.` change nothing.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|component| match component {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_are_followed_inside_the_rootfs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("/node/secret", r.join("abs")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("../../../../..", r.join("usr/up")).unwrap();
        symlink("../lib/x", r.join("usr/rel")).unwrap();
        let got = |p: &str| resolve(r, Path::new(p)).unwrap();
        assert_eq!(got("/abs"), Path::new("/node/secret"), "an absolute target starts at the rootfs");
        assert_eq!(got("/abs/below"), Path::new("/node/secret/below"));
        assert_eq!(got("/lib/a"), Path::new("/usr/lib/a"));
        assert_eq!(got("/usr/rel"), Path::new("/usr/lib/x"), "relative to the link's own directory");
        assert_eq!(got("/usr/up/etc"), Path::new("/etc"), "`..` stops at the rootfs");
        assert_eq!(got("/../../x/./y"), Path::new("/x/y"));
        assert_eq!(got("/"), Path::new("/"));
        assert_eq!(host_path(r, Path::new("/lib/a")).unwrap(), r.join("usr/lib/a"));
    }

    #[test]
    fn a_link_loop_is_refused() {
        let root = tempfile::tempdir().unwrap();
        symlink("b", root.path().join("a")).unwrap();
        symlink("a", root.path().join("b")).unwrap();
        let error = resolve(root.path(), Path::new("/a/c")).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(nix::libc::ELOOP));
    }
}
