//! deploy/kubernetes/ against the Kubernetes API, offline: `manifest-check`
//! (tests/support/manifest-check) decodes each object strictly and runs the
//! API server's own create validation on it.

use std::path::PathBuf;
use std::process::Command;

use crate::support::tools;

fn manifests() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_manifest_is_valid_for_the_api_server() {
    let files = manifests();
    assert!(files.len() >= 5, "{files:?}");
    let output = Command::new(tools::manifest_check()).args(&files).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(!report.contains("warning"), "{report}");
    for object in [
        "Namespace/berth-system",
        "DaemonSet/berth-install",
        "DaemonSet/berth-switch-kubelet",
        "DaemonSet/berth-cleanup",
        "RuntimeClass/runc",
        "RuntimeClass/berth-internal",
        "RuntimeClass/crun",
        "RuntimeClass/kata",
    ] {
        assert!(report.contains(&format!("{object}: ok")), "{object} in:\n{report}");
    }
}

/// The check is worth something only if it fails what the API server refuses.
#[test]
fn a_misspelled_field_and_a_mismatched_selector_are_refused() {
    let install =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/berth-install.yaml"))
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let misspelled = dir.path().join("misspelled.yaml");
    std::fs::write(&misspelled, install.replace("hostPID: true", "hostPid: true")).unwrap();
    let mismatched = dir.path().join("mismatched.yaml");
    std::fs::write(
        &mismatched,
        install.replace(
            "    matchLabels:\n      app.kubernetes.io/name: berth-install",
            "    matchLabels:\n      app.kubernetes.io/name: other",
        ),
    )
    .unwrap();
    let output = Command::new(tools::manifest_check()).arg(&misspelled).arg(&mismatched).output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("spec.template.spec.hostPid: unknown field"), "{report}");
    assert!(report.contains("mismatched.yaml: DaemonSet/berth-install: spec.template.metadata.labels"), "{report}");
}
