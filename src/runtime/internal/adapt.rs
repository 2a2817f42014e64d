//! The spec as libcontainer 0.7 reads it. berth builds one spec for every
//! runtime, in the form runc takes; where libcontainer reads a field
//! differently, or falls short of runc, the spec is rewritten here, in the
//! daemon, before it is written to the bundle. The monitor's create then reads
//! back only the little it needs itself ([`Prepared`]).

use std::path::Path;

use oci_spec::runtime::{Mount, Spec};

use super::{cgroup_v1, propagation};
use crate::in_root;

use crate::runtime::error::{Call, Refusal, RuntimeError};

/// Where the spec's oomScoreAdj goes instead (see [`prepare`]).
const OOM_SCORE_ADJ_ANNOTATION: &str = "io.berth.internal.oom-score-adj";

/// Rewrites berth's spec for libcontainer, before it is written to the bundle.
pub(super) fn prepare(call: &Call, spec: &mut Spec, bundle: &Path) -> Result<(), RuntimeError> {
    refuse_selinux_labels(call, spec)?;
    if let Some(score) = adapt_spec(spec) {
        let mut annotations = spec.annotations().clone().unwrap_or_default();
        annotations.insert(OOM_SCORE_ADJ_ANNOTATION.into(), score.to_string());
        spec.set_annotations(Some(annotations));
    }
    cgroup_v1::systemd_path_as_directory(spec);
    cgroup_v1::replace_cgroup_mounts(spec, &cgroups_path_of(spec));
    if let Some(rootfs) = spec.root().as_ref().map(|root| bundle.join(root.path())) {
        resolve_bind_destinations(spec, &rootfs)
            .map_err(|e| RuntimeError::io(call, "resolving mount destinations in the rootfs", e))?;
        propagation::plan(spec, &rootfs, is_bind);
    }
    Ok(())
}

/// What create needs from the bundle's config.json beside libcontainer; read
/// without the rest of the spec.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Prepared {
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
    #[serde(default)]
    linux: PreparedLinux,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PreparedLinux {
    #[serde(default, rename = "cgroupsPath")]
    cgroups_path: String,
}

impl Prepared {
    pub(super) fn read(call: &Call, bundle: &Path) -> Result<Prepared, RuntimeError> {
        let bytes = std::fs::read(bundle.join("config.json")).map_err(|e| RuntimeError::io(call, "reading config.json", e))?;
        serde_json::from_slice(&bytes).map_err(|e| RuntimeError::json(call, "reading config.json", e))
    }

    /// The oomScoreAdj [`prepare`] took out of the spec, for create to give the init.
    pub(super) fn oom_score_adj(&self) -> Option<i32> {
        self.annotations.get(OOM_SCORE_ADJ_ANNOTATION)?.parse().ok()
    }

    pub(super) fn cgroups_path(&self) -> &str {
        &self.linux.cgroups_path
    }
}

/// libcontainer has no SELinux support: a label berth asks for (only on a host
/// with SELinux enabled) would silently not be applied.
fn refuse_selinux_labels(call: &Call, spec: &Spec) -> Result<(), RuntimeError> {
    let process_label = spec.process().as_ref().and_then(|process| process.selinux_label().clone());
    let mount_label = spec.linux().as_ref().and_then(|linux| linux.mount_label().clone());
    if process_label.into_iter().chain(mount_label).any(|label| !label.is_empty()) {
        return Err(RuntimeError::Failed {
            call: call.clone(),
            refusal: Refusal::Unsupported,
            message: "the internal runtime cannot apply SELinux labels (libcontainer has no SELinux support); \
                      run this pod on a runc handler"
                .into(),
        });
    }
    Ok(())
}

/// Returns the oomScoreAdj taken out.
fn adapt_spec(spec: &mut Spec) -> Option<i32> {
    let mut oom_score_adj = None;
    if let Some(process) = spec.process_mut() {
        // libcontainer would write it to its caller's (the monitor's) own.
        oom_score_adj = process.oom_score_adj();
        process.set_oom_score_adj(None);
        // libcontainer tells "unset" from "set" by presence, not value: an explicit
        // false made it load seccomp after dropping CAP_SYS_ADMIN, where the kernel
        // refuses a filter to a process without no_new_privs.
        if process.no_new_privileges() == Some(false) {
            process.set_no_new_privileges(None);
        }
    }
    oom_score_adj
}

/// Bind destinations with the image's links followed inside the rootfs (see
/// in_root.rs). proc and sysfs are left alone: libcontainer refuses those on a
/// link, as runc does, and must go on doing so.
fn resolve_bind_destinations(spec: &mut Spec, rootfs: &Path) -> std::io::Result<()> {
    for mount in spec.mounts_mut().iter_mut().flatten().filter(|mount| is_bind(mount)) {
        let resolved = in_root::resolve(rootfs, mount.destination())?;
        mount.set_destination(resolved);
    }
    Ok(())
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
        assert_eq!(adapt_spec(&mut given), Some(500));
        let process = given.process().as_ref().unwrap();
        assert_eq!((process.no_new_privileges(), process.oom_score_adj()), (None, None));
    }

    #[test]
    fn a_spec_libcontainer_reads_alike_is_left_as_written() {
        let mut given = spec(Some(true), None);
        let before = given.clone();
        assert_eq!(adapt_spec(&mut given), None);
        assert_eq!(given, before);
    }

    #[test]
    fn what_create_needs_is_read_back_from_the_prepared_spec() {
        let mut given = spec(Some(false), Some(300));
        given.set_linux(Some(oci_spec::runtime::LinuxBuilder::default().cgroups_path("/pod/c").build().unwrap()));
        prepare(&Call::new("berth", "create", "c"), &mut given, Path::new("/nonexistent")).unwrap();
        let json = serde_json::to_vec(&given).unwrap();
        let prepared: Prepared = serde_json::from_slice(&json).unwrap();
        assert_eq!((prepared.oom_score_adj(), prepared.cgroups_path()), (Some(300), "/pod/c"));
        assert_eq!(given.process().as_ref().unwrap().oom_score_adj(), None, "not left for libcontainer");
    }

    #[test]
    fn selinux_labels_are_refused_not_dropped() {
        let mut given = spec(None, None);
        given.process_mut().as_mut().unwrap().set_selinux_label(Some("system_u:system_r:container_t:s0".into()));
        let err = prepare(&Call::new("berth", "create", "c"), &mut given, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, RuntimeError::Failed { refusal: Refusal::Unsupported, .. }), "{err:?}");
        assert!(err.to_string().contains("SELinux"), "{err}");
    }
}
