//! Pods in a user namespace of their own (kubelet's `hostUsers: false`): the
//! pod's root is an unprivileged host user, yet owns its rootfs, its shared
//! memory and its network, and kubelet's mounts come ID-mapped into it.

use std::os::unix::fs::MetadataExt;

use berth::cri::v1::{
    IdMapping, Mount, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxStatusRequest,
    RemovePodSandboxRequest, StatusRequest, StopPodSandboxRequest, UserNamespace,
};
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, log_lines, mounts_mentioning, security_context, sh, wait_for_line};
use crate::support::pods::pod_config;

/// Far above any user of the test VM, as kubelet's ranges are.
const HOST_ROOT: u32 = 300_000;
const LENGTH: u32 = 65_536;

fn mappings() -> Vec<IdMapping> {
    vec![IdMapping { container_id: 0, host_id: HOST_ROOT, length: LENGTH }]
}

fn userns_options(pid: NamespaceMode, userns: UserNamespace) -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        pid: pid as i32,
        userns_options: Some(userns),
        ..Default::default()
    }
}

async fn remove_pod(bed: &Bed, id: &str) {
    let mut runtime = bed.berth.runtime().await;
    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

fn pod_userns() -> UserNamespace {
    UserNamespace { mode: NamespaceMode::Pod as i32, uids: mappings(), gids: mappings() }
}

fn userns_pod(name: &str, options: NamespaceOption) -> PodSandboxConfig {
    let mut config = pod_config(name);
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).namespace_options = Some(options);
    config
}

#[tokio::test]
async fn the_pods_root_is_an_unprivileged_host_user_that_owns_its_files() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let handlers = bed.berth.runtime().await.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert!(
        handlers.runtime_handlers.iter().all(|h| h.features.is_some_and(|f| f.user_namespaces)),
        "every handler says it can: {:?}",
        handlers.runtime_handlers
    );

    let options = userns_options(NamespaceMode::Container, pod_userns());
    let pod = bed.pod_with(userns_pod("userns", options.clone()), "").await.unwrap();
    let status = PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false };
    let status = bed.berth.runtime().await.pod_sandbox_status(status).await.unwrap().into_inner().status.unwrap();
    let reported = status.linux.and_then(|l| l.namespaces).and_then(|n| n.options).and_then(|o| o.userns_options);
    assert_eq!(reported, Some(pod_userns()), "PodSandboxStatus tells kubelet what it runs in");

    // A volume as kubelet sends it for such a pod: the pod's mappings on it.
    let volume = bed.berth.dir().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("from-the-host"), "hello\n").unwrap();
    let script = "cat /proc/self/uid_map; id -u; \
        stat -c %u /bin/busybox; touch /written && echo rootfs-writable; \
        stat -c %u /volume/from-the-host; echo made > /volume/by-the-pod && echo volume-writable; \
        stat -c %u /image/bin/busybox; \
        echo x > /dev/shm/x && echo shm-writable; \
        test -e /sys/class/net/eth0 && echo sysfs-of-the-pod; \
        hostname; echo done; exec sleep 1000";
    let mut config = sh("userns", &bed.busybox, script);
    security_context(&mut config).namespace_options = Some(options);
    let image = berth::cri::v1::ImageSpec { image: bed.busybox.clone(), ..Default::default() };
    config.mounts = vec![
        Mount {
            container_path: "/volume".into(),
            host_path: volume.display().to_string(),
            uid_mappings: mappings(),
            gid_mappings: mappings(),
            ..Default::default()
        },
        Mount {
            container_path: "/image".into(),
            image: Some(image),
            readonly: true,
            uid_mappings: mappings(),
            gid_mappings: mappings(),
            ..Default::default()
        },
    ];
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "done").await;
    let lines = log_lines(&log);
    let uid_map: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(uid_map, ["0", &HOST_ROOT.to_string(), &LENGTH.to_string()], "{lines:?}");
    assert_eq!(
        lines[1..],
        [
            "0",
            "0",
            "rootfs-writable",
            "0",
            "volume-writable",
            "0",
            "shm-writable",
            "sysfs-of-the-pod",
            "userns",
            "done"
        ],
        "root in the pod; the image's, the volume's and the image volume's root-owned files are root's there"
    );
    let host_pid = bed.pid(&id).await;
    let host_uid = std::fs::metadata(format!("/proc/{host_pid}")).unwrap().uid();
    assert_eq!(host_uid, HOST_ROOT, "on the host, the pod's root is an unprivileged user");
    let info = bed.info(&id).await;
    let upper = std::path::Path::new(info["rootfs"].as_str().unwrap()).parent().unwrap().to_path_buf();
    let written = bed.berth.dir().join("state/containers").join(&id).join("upper/written");
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), HOST_ROOT, "{upper:?}: the rootfs's writes are the pod's");
    assert_eq!(std::fs::metadata(volume.join("by-the-pod")).unwrap().uid(), 0, "ID-mapped: the pod's root writes as root");

    // An exec'd process is the pod's root too, with the init's capabilities
    // (libcontainer's exec does not join user namespaces: see exec_finish.rs).
    let script = "cat /proc/self/uid_map; id -u; grep CapEff /proc/self/status; grep CapEff /proc/1/status";
    let exec = bed.exec(&id, &["sh", "-c", script], 10).await.unwrap();
    let out = String::from_utf8_lossy(&exec.stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains(&HOST_ROOT.to_string()) && lines[1] == "0", "{out}");
    assert_eq!(lines[2], lines[3], "{out}");

    bed.stop(&id, 0).await.unwrap();
    bed.remove(&id).await.unwrap();
    assert!(mounts_mentioning(&id).is_empty(), "the ID-mapped rootfs and volume are gone with the container");
    remove_pod(&bed, &pod.id).await;
    assert!(mounts_mentioning(&pod.id).is_empty(), "the user namespace's pin is gone with the pod");
}

#[tokio::test]
async fn a_shared_pid_namespace_is_the_pods_own_too() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let options = userns_options(NamespaceMode::Pod, pod_userns());
    let pod = bed.pod_with(userns_pod("userns-shared-pid", options.clone()), "").await.unwrap();
    let mut config = sh("ps", &bed.busybox, "ls /proc | grep -c '^[0-9]'; echo $$");
    security_context(&mut config).namespace_options = Some(options);
    let log = pod.log_path(&config);
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.exit_code, 0, "{exited:?} {:?}", log_lines(&log));
    let lines = log_lines(&log);
    assert_ne!(lines[1], "1", "the infra process is PID 1 of the pod's namespace: {lines:?}");
    remove_pod(&bed, &pod.id).await;
}

#[tokio::test]
async fn user_namespaces_berth_cannot_give_are_refused_by_field() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let field = "userns_options";
    let refused = |userns: UserNamespace, network: NamespaceMode, wanted: &'static str| {
        let bed = &bed;
        async move {
            let mut options = userns_options(NamespaceMode::Container, userns);
            options.network = network as i32;
            let Err(error) = bed.pod_with(userns_pod("refused", options), "").await else {
                panic!("{wanted}: the pod ran");
            };
            assert_eq!(error.code(), Code::InvalidArgument, "{wanted}: {error:?}");
            assert!(error.message().contains(wanted), "{wanted}: {error:?}");
        }
    };
    let two = vec![mappings()[0], IdMapping { container_id: 0, host_id: 2_000_000, length: LENGTH }];
    refused(UserNamespace { uids: two.clone(), gids: two, ..pod_userns() }, NamespaceMode::Pod, "uids").await;
    let shifted = vec![IdMapping { container_id: 1, ..mappings()[0] }];
    refused(UserNamespace { uids: shifted.clone(), gids: shifted, ..pod_userns() }, NamespaceMode::Pod, "uids").await;
    let host_root = vec![IdMapping { host_id: 0, ..mappings()[0] }];
    refused(UserNamespace { gids: host_root, ..pod_userns() }, NamespaceMode::Pod, "gids").await;
    for mode in [NamespaceMode::Container, NamespaceMode::Target] {
        refused(UserNamespace { mode: mode as i32, ..Default::default() }, NamespaceMode::Pod, field).await;
    }
    refused(pod_userns(), NamespaceMode::Node, "namespace_options.network").await;

    // A mount whose mappings are not the pod's, in a pod that has one.
    let pod = bed.pod_with(userns_pod("userns-mounts", userns_options(NamespaceMode::Container, pod_userns())), "");
    let pod = pod.await.unwrap();
    let mut config = sh("other-mappings", &bed.busybox, "true");
    security_context(&mut config).namespace_options = Some(userns_options(NamespaceMode::Container, pod_userns()));
    let other = vec![IdMapping { host_id: 1_000_000, ..mappings()[0] }];
    config.mounts = vec![Mount {
        container_path: "/volume".into(),
        host_path: bed.berth.dir().join("other").display().to_string(),
        uid_mappings: other.clone(),
        gid_mappings: other,
        ..Default::default()
    }];
    let error = bed.create(&pod, config).await.expect_err("other mappings");
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("mounts[0].uid_mappings"), "{error:?}");
    remove_pod(&bed, &pod.id).await;

    assert!(mounts_mentioning("/ns/user").iter().all(|m| !m.contains(&bed.berth.dir().display().to_string())));
}
