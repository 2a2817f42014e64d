//! The bundle's config.json as libcontainer 0.7 reads it. berth writes one spec
//! for every runtime, in the form runc takes; where libcontainer reads the same
//! field differently, the spec is rewritten here, before create.

use std::path::Path;

use oci_spec::runtime::{Mount, Spec};

use super::{cgroup_v1, in_root, propagation};

use crate::runtime::error::{Call, RuntimeError};

/// What create takes out of the spec or needs from it.
pub(super) struct Adapted {
    /// libcontainer would write it to its caller's own oom_score_adj; create
    /// gives it to the init instead.
    pub oom_score_adj: Option<i32>,
    pub cgroups_path: String,
}

pub(super) fn adapt(call: &Call, bundle: &Path) -> Result<Adapted, RuntimeError> {
    let path = bundle.join("config.json");
    let bad = |e: oci_spec::OciSpecError| RuntimeError::io(call, "rewriting config.json", std::io::Error::other(e));
    let mut spec = Spec::load(&path).map_err(bad)?;
    let (oom_score_adj, mut changed) = adapt_spec(&mut spec);
    changed |= cgroup_v1::systemd_path_as_directory(&mut spec);
    let cgroups_path = cgroups_path_of(&spec);
    cgroup_v1::prepare(&cgroups_path).map_err(|e| RuntimeError::io(call, "making the container's cgroups", e))?;
    changed |= cgroup_v1::replace_cgroup_mounts(&mut spec, &cgroups_path);
    let rootfs = spec.root().as_ref().map(|root| bundle.join(root.path()));
    if let Some(rootfs) = rootfs {
        changed |= resolve_bind_destinations(&mut spec, &rootfs)
            .map_err(|e| RuntimeError::io(call, "resolving mount destinations in the rootfs", e))?;
        changed |= propagation::plan(&mut spec, &rootfs, is_bind);
    }
    if changed {
        spec.save(&path).map_err(bad)?;
    }
    Ok(Adapted { oom_score_adj, cgroups_path })
}

/// Returns the oomScoreAdj taken out, and whether anything changed.
fn adapt_spec(spec: &mut Spec) -> (Option<i32>, bool) {
    let mut changed = false;
    let mut oom_score_adj = None;
    if let Some(process) = spec.process_mut() {
        oom_score_adj = process.oom_score_adj();
        changed |= oom_score_adj.is_some();
        process.set_oom_score_adj(None);
        // libcontainer tells "unset" from "set" by presence, not value: an explicit
        // false made it load seccomp after dropping CAP_SYS_ADMIN, where the kernel
        // refuses a filter to a process without no_new_privs.
        if process.no_new_privileges() == Some(false) {
            process.set_no_new_privileges(None);
            changed = true;
        }
    }
    (oom_score_adj, changed)
}

/// Bind destinations with the image's links followed inside the rootfs (see
/// in_root.rs). proc and sysfs are left alone: libcontainer refuses those on a
/// link, as runc does, and must go on doing so.
fn resolve_bind_destinations(spec: &mut Spec, rootfs: &Path) -> std::io::Result<bool> {
    let mut changed = false;
    for mount in spec.mounts_mut().iter_mut().flatten().filter(|mount| is_bind(mount)) {
        let resolved = in_root::resolve(rootfs, mount.destination())?;
        if resolved != *mount.destination() {
            mount.set_destination(resolved);
            changed = true;
        }
    }
    Ok(changed)
}

fn is_bind(mount: &Mount) -> bool {
    mount.typ().as_deref() == Some("bind")
        || mount.options().iter().flatten().any(|option| option == "bind" || option == "rbind")
}

pub(super) fn cgroups_path_of(spec: &Spec) -> String {
    let path = spec.linux().as_ref().and_then(|linux| linux.cgroups_path().clone());
    path.map(|path| path.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{ProcessBuilder, SpecBuilder};

    use super::*;

    fn spec(no_new_privileges: Option<bool>, oom: Option<i32>) -> Spec {
        let mut process = ProcessBuilder::default().build().unwrap();
        process.set_no_new_privileges(no_new_privileges).set_oom_score_adj(oom);
        SpecBuilder::default().process(process).build().unwrap()
    }

    #[test]
    fn runc_forms_become_libcontainer_forms() {
        let mut given = spec(Some(false), Some(500));
        assert_eq!(adapt_spec(&mut given), (Some(500), true));
        let process = given.process().as_ref().unwrap();
        assert_eq!((process.no_new_privileges(), process.oom_score_adj()), (None, None));
    }

    #[test]
    fn a_spec_libcontainer_reads_alike_is_left_as_written() {
        let mut given = spec(Some(true), None);
        let before = given.clone();
        assert_eq!(adapt_spec(&mut given), (None, false));
        assert_eq!(given, before);
    }
}
