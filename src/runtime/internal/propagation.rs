//! Bind mounts with the propagation their options ask for.
//!
//! libcontainer 0.7 clones each bind's source (open_tree) and ignores the
//! propagation options (`rprivate`, `rslave`, `rshared`); a clone keeps the
//! propagation its source has in the container's mount namespace, which is
//! whatever the rootfs propagation step (`MS_REC` from `/`) just gave every
//! mount there. So:
//! - when the spec sets no rootfs propagation and every bind asks for the same
//!   one (kubelet's binds are all `rprivate` unless a volume says otherwise),
//!   the rootfs propagation is set to that, and the clones come out right;
//! - otherwise the binds that differ are set right by a createContainer hook
//!   (`berth internal-propagation`), which the OCI spec runs in the
//!   container's namespaces after its mounts, before pivot_root. It costs an
//!   exec, so only pods that mix propagations pay it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use oci_spec::runtime::{Hook, Mount, Spec};

/// A few mount(2) calls; the runtime kills the hook past this.
const HOOK_TIMEOUT_SECONDS: i64 = 10;

/// A propagation as the rootfs and mount options name it, without the `r`
/// (libcontainer always applies the rootfs one recursively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Private,
    Slave,
    Shared,
    Unbindable,
}

impl Kind {
    /// The kind, and whether the word asks for it recursively (`r…`).
    fn parse(word: &str) -> Option<(Kind, bool)> {
        let base = |word: &str| match word {
            "private" => Some(Kind::Private),
            "slave" => Some(Kind::Slave),
            "shared" => Some(Kind::Shared),
            "unbindable" => Some(Kind::Unbindable),
            _ => None,
        };
        match base(word) {
            Some(kind) => Some((kind, false)),
            None => base(word.strip_prefix('r')?).map(|kind| (kind, true)),
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Private => "private",
            Kind::Slave => "slave",
            Kind::Shared => "shared",
            Kind::Unbindable => "unbindable",
        }
    }

    fn flag(self) -> MsFlags {
        match self {
            Kind::Private => MsFlags::MS_PRIVATE,
            Kind::Slave => MsFlags::MS_SLAVE,
            Kind::Shared => MsFlags::MS_SHARED,
            Kind::Unbindable => MsFlags::MS_UNBINDABLE,
        }
    }
}

/// The propagation a mount's options ask for, if any (the last one wins).
fn asked(mount: &Mount) -> Option<(Kind, bool)> {
    mount.options().iter().flatten().filter_map(|option| Kind::parse(option)).next_back()
}

/// Sets the rootfs propagation libcontainer reads (its short names) and adds
/// the hook when some binds need another; returns whether the spec changed.
pub(super) fn plan(spec: &mut Spec, rootfs: &Path, is_bind: impl Fn(&Mount) -> bool) -> bool {
    let binds: Vec<(PathBuf, Kind, bool)> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|mount| is_bind(mount))
        .filter_map(|mount| asked(mount).map(|(kind, recursive)| (mount.destination().clone(), kind, recursive)))
        .collect();
    let Some(linux) = spec.linux_mut() else { return false };
    let set = linux.rootfs_propagation().as_deref().and_then(Kind::parse).map(|(kind, _)| kind);
    let rootfs_kind = match (set, binds.first()) {
        (Some(kind), _) => kind,
        (None, Some((_, first, _))) if binds.iter().all(|(_, kind, _)| kind == first) => *first,
        // libcontainer's default, as runc's.
        (None, _) => Kind::Slave,
    };
    let mut changed = linux.rootfs_propagation().as_deref() != Some(rootfs_kind.word());
    linux.set_rootfs_propagation(Some(rootfs_kind.word().to_string()));

    let fixes: Vec<String> = binds
        .iter()
        .filter(|(_, kind, _)| *kind != rootfs_kind)
        .map(|(destination, kind, recursive)| {
            format!("{}{}:{}", if *recursive { "r" } else { "" }, kind.word(), destination.display())
        })
        .collect();
    if !fixes.is_empty() {
        let mut args = vec!["berth".to_string(), "internal-propagation".into(), "--rootfs".into()];
        args.push(rootfs.display().to_string());
        args.extend(fixes);
        // The hook runs before pivot_root, where the host's /proc is still
        // mounted: /proc/self/exe is the binary that creates the container,
        // berth or the `berth-monitor` beside it, and both serve the hook.
        let mut hook = Hook::default();
        hook.set_path(PathBuf::from("/proc/self/exe")).set_args(Some(args)).set_timeout(Some(HOOK_TIMEOUT_SECONDS));
        add_create_container_hook(spec, hook);
        changed = true;
    }
    changed
}

fn add_create_container_hook(spec: &mut Spec, hook: Hook) {
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    let mut create = hooks.create_container().clone().unwrap_or_default();
    create.push(hook);
    hooks.set_create_container(Some(create));
    spec.set_hooks(Some(hooks));
}

/// The flags of `berth internal-propagation`.
#[derive(Debug, Clone, clap::Args)]
pub struct PropagationHookArgs {
    /// The container's rootfs, as the host names it.
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// `[r]<private|slave|shared|unbindable>:<destination>`, one per bind.
    pub mounts: Vec<String>,
}

/// Runs the hook in the container's mount namespace; the exit code to leave with.
pub fn run_hook(args: &PropagationHookArgs) -> u8 {
    // The runtime writes the container's state to stdin; read it so that its
    // write never meets a closed pipe.
    let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
    match set_propagations(args) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("berth internal-propagation: {message}");
            1
        }
    }
}

fn set_propagations(args: &PropagationHookArgs) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let root = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
        .open(&args.rootfs)
        .map_err(|e| format!("opening the rootfs {}: {e}", args.rootfs.display()))?;
    for entry in &args.mounts {
        let parsed = entry.split_once(':').and_then(|(word, dest)| Some((Kind::parse(word)?, dest)));
        let Some(((kind, recursive), destination)) = parsed else {
            return Err(format!("not <propagation>:<destination>: {entry}"));
        };
        // Destinations were resolved free of links before create (in_root.rs): a
        // link met now was put there since, by a container of the pod sharing a
        // volume. Refused, never followed out of the rootfs.
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
        let fd = nix::fcntl::openat2(root.as_raw_fd(), destination.trim_start_matches('/'), how)
            .map_err(|e| format!("opening {destination} in the rootfs: {e}"))?;
        // SAFETY: openat2 returned a new descriptor, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let flags = if recursive { kind.flag() | MsFlags::MS_REC } else { kind.flag() };
        nix::mount::mount(None::<&str>, target.as_str(), None::<&str>, flags, None::<&str>)
            .map_err(|e| format!("making {destination} {}: {e}", kind.word()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxBuilder, MountBuilder, SpecBuilder};

    use super::*;

    fn bind(destination: &str, propagation: &str) -> Mount {
        let options = vec!["rbind".to_string(), propagation.to_string(), "rw".into()];
        MountBuilder::default().destination(destination).typ("bind").source("/x").options(options).build().unwrap()
    }

    fn spec(rootfs: Option<&str>, mounts: Vec<Mount>) -> Spec {
        let mut linux = LinuxBuilder::default().build().unwrap();
        linux.set_rootfs_propagation(rootfs.map(str::to_string));
        SpecBuilder::default().linux(linux).mounts(mounts).build().unwrap()
    }

    fn planned(mut spec: Spec) -> (Option<String>, Vec<String>) {
        plan(&mut spec, Path::new("/r"), |mount| mount.typ().as_deref() == Some("bind"));
        let propagation = spec.linux().as_ref().unwrap().rootfs_propagation().clone();
        let hooks = spec.hooks().as_ref().and_then(|hooks| hooks.create_container().clone()).unwrap_or_default();
        (propagation, hooks.iter().flat_map(|hook| hook.args().clone().unwrap_or_default()).collect())
    }

    #[test]
    fn binds_that_agree_set_the_rootfs_propagation_and_need_no_hook() {
        let (propagation, hook) = planned(spec(None, vec![bind("/etc/hosts", "rprivate"), bind("/v", "rprivate")]));
        assert_eq!((propagation.as_deref(), hook.len()), (Some("private"), 0));
    }

    #[test]
    fn binds_that_differ_from_the_rootfs_are_fixed_by_the_hook() {
        let mounts = vec![bind("/etc/hosts", "rprivate"), bind("/v", "rslave")];
        let (propagation, hook) = planned(spec(Some("rslave"), mounts));
        assert_eq!(propagation.as_deref(), Some("slave"));
        assert_eq!(hook, ["berth", "internal-propagation", "--rootfs", "/r", "rprivate:/etc/hosts"]);
    }

    #[test]
    fn read_write_options_are_not_propagations() {
        assert_eq!(Kind::parse("ro"), None);
        assert_eq!(Kind::parse("rw"), None);
        assert_eq!(Kind::parse("rshared"), Some((Kind::Shared, true)));
    }
}
