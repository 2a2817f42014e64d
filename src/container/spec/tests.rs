//! `build_spec` end to end: the parts put together, and what only the whole shows.

use std::path::{Path, PathBuf};

use crate::cri::v1::{
    ContainerConfig, Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, NamespaceMode as CriMode, NamespaceOption,
};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};
use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Spec};

use super::{HostFacts, SpecError, SpecInput, build_spec, fixtures};
use crate::error::{Classify, ErrorKind};
use crate::sandbox::{NamespaceMode, SandboxRecord};

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
        .unwrap();
    std::fs::write(dir.path().join("etc/group"), "root:x:0:\napp:x:1000:\nextra:x:2000:app\n").unwrap();
    dir
}

fn image() -> ImageConfiguration {
    let config = ConfigBuilder::default()
        .entrypoint(vec!["/bin/server".to_string()])
        .cmd(vec!["--port=80".to_string()])
        .env(vec!["LANG=C.UTF-8".to_string()])
        .user("app".to_string())
        .working_dir("/srv".to_string())
        .build()
        .unwrap();
    ImageConfigurationBuilder::default().config(config).build().unwrap()
}

fn security_context(sc: LinuxContainerSecurityContext) -> Option<LinuxContainerConfig> {
    let pid = NamespaceOption { pid: CriMode::Container as i32, ..Default::default() };
    Some(LinuxContainerConfig {
        resources: None,
        security_context: Some(LinuxContainerSecurityContext { namespace_options: Some(pid), ..sc }),
    })
}

fn spec_for(config: &ContainerConfig, sandbox: &SandboxRecord) -> Result<Spec, SpecError> {
    let root = rootfs();
    let image = image();
    let host = fixtures::host();
    build(config, sandbox, &image, root.path(), &host)
}

fn build(
    config: &ContainerConfig,
    sandbox: &SandboxRecord,
    image: &ImageConfiguration,
    rootfs: &Path,
    host: &HostFacts,
) -> Result<Spec, SpecError> {
    let features = crate::runtime::RuntimeFeatures::default();
    let staged = Default::default();
    let run_dir = Path::new("/nonexistent");
    build_spec(&SpecInput {
        container_id: "c1",
        config,
        sandbox,
        image,
        rootfs,
        host,
        features,
        staged: &staged,
        user_namespace: None,
        run_dir,
    })
}

fn namespace_kinds(spec: &Spec) -> Vec<LinuxNamespaceType> {
    let linux = spec.linux().as_ref().unwrap();
    linux.namespaces().iter().flatten().map(|ns| ns.typ()).collect()
}

#[test]
fn a_plain_container_gets_a_complete_spec() {
    let root = rootfs();
    let config = ContainerConfig {
        args: vec!["--port=8080".into()],
        envs: vec![KeyValue { key: "MODE".into(), value: "test".into() }],
        tty: true,
        linux: security_context(LinuxContainerSecurityContext::default()),
        ..Default::default()
    };
    let spec = build(&config, &fixtures::sandbox(), &image(), root.path(), &fixtures::host()).unwrap();

    let root_entry = spec.root().as_ref().unwrap();
    assert_eq!((root_entry.path().as_path(), root_entry.readonly()), (root.path(), Some(false)));
    assert_eq!(spec.hostname().as_deref(), Some("pod-host"));

    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_deref(), Some(&["/bin/server".to_string(), "--port=8080".to_string()][..]));
    let env = process.env().clone().unwrap();
    assert!(env.contains(&"HOSTNAME=pod-host".to_string()) && env.contains(&"MODE=test".to_string()), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=/usr/local/sbin")), "{env:?}");
    assert_eq!(process.cwd(), &PathBuf::from("/srv"));
    assert_eq!(process.terminal(), Some(true));
    let user = process.user();
    assert_eq!((user.uid(), user.gid(), user.additional_gids().clone()), (1000, 1000, Some(vec![1000, 2000])));
    let rlimits = process.rlimits().clone().unwrap();
    assert_eq!(rlimits.len(), 1);
    assert_eq!(
        (rlimits[0].typ(), rlimits[0].soft(), rlimits[0].hard()),
        (PosixRlimitType::RlimitNofile, 1 << 20, 1 << 20)
    );
    assert_eq!(process.oom_score_adj(), None);

    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.cgroups_path().as_deref(), Some(Path::new("/kubepods/burstable/pod1/berth-c1")));
    assert_eq!(linux.sysctl(), &None);
    assert_eq!(
        namespace_kinds(&spec),
        [
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Cgroup
        ]
    );
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["ociVersion"], oci_spec::runtime::VERSION);
    assert_eq!(json["linux"]["resources"]["devices"][0]["allow"], false);
}

#[test]
fn readonly_rootfs_makes_root_and_pod_files_readonly() {
    let sc = LinuxContainerSecurityContext { readonly_rootfs: true, ..Default::default() };
    let config = ContainerConfig { linux: security_context(sc), ..Default::default() };
    let spec = spec_for(&config, &fixtures::sandbox()).unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let hostname = spec.mounts().iter().flatten().find(|m| m.destination() == Path::new("/etc/hostname")).unwrap();
    assert!(hostname.options().iter().flatten().any(|o| o == "ro"));
}

#[test]
fn host_network_pod_has_no_hostname_to_set() {
    let mut sandbox = fixtures::sandbox();
    sandbox.namespace_modes.network = NamespaceMode::Node;
    sandbox.namespaces.net = None;
    sandbox.namespaces.uts = None;
    let config = ContainerConfig { linux: security_context(Default::default()), ..Default::default() };
    let spec = spec_for(&config, &sandbox).unwrap();
    assert_eq!(spec.hostname(), &None);
    let kinds = namespace_kinds(&spec);
    assert!(!kinds.contains(&LinuxNamespaceType::Network) && !kinds.contains(&LinuxNamespaceType::Uts), "{kinds:?}");
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert!(env.contains(&"HOSTNAME=pod-host".to_string()));
}

#[test]
fn resources_reach_the_spec_and_oom_score_adj_is_clamped() {
    let resources = LinuxContainerResources { cpu_shares: 256, oom_score_adj: -998, ..Default::default() };
    let config = ContainerConfig {
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            ..security_context(Default::default()).unwrap()
        }),
        ..Default::default()
    };
    let root = rootfs();
    let host = HostFacts { min_oom_score_adj: -500, ..fixtures::host() };
    let spec = build(&config, &fixtures::sandbox(), &image(), root.path(), &host).unwrap();
    assert_eq!(spec.process().as_ref().unwrap().oom_score_adj(), Some(-500));
    let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(resources.cpu().as_ref().unwrap().shares(), Some(256));
}

#[test]
fn errors_carry_their_kind_and_field() {
    let sc = LinuxContainerSecurityContext { run_as_group: Some(Int64Value { value: 1 }), ..Default::default() };
    let config = ContainerConfig { linux: security_context(sc), ..Default::default() };
    let err = spec_for(&config, &fixtures::sandbox()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().starts_with("linux.security_context.run_as_group: "), "{err}");

    let mut sandbox = fixtures::sandbox();
    sandbox.namespaces.ipc = None;
    let config = ContainerConfig { linux: security_context(Default::default()), ..Default::default() };
    assert_eq!(spec_for(&config, &sandbox).unwrap_err().kind(), ErrorKind::NotFound);
}
