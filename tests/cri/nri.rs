//! NRI: a plugin on berth's NRI socket is synchronised with what exists, then
//! sees every pod and container event in berth's order; its adjustments reach
//! the container, and two plugins adjusting one thing conflict; a plugin that
//! refuses fails the call and leaves nothing behind; one that hangs or
//! crashes is dropped and berth goes on.

use berth::cri::v1::{RemovePodSandboxRequest, StopPodSandboxRequest};
use berth::nri::api;
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::containers::{Bed, Pod, container, host_pod_config, log_lines, mounts_mentioning, sh};
use crate::support::nri_plugin::{Behaviour, Seen, TestPlugin};

async fn stop_and_remove_pod(bed: &Bed, pod: &Pod) {
    let mut runtime = bed.berth.runtime().await;
    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.unwrap();
    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await.unwrap();
}

/// The plugin's events up to and including `last` for `container` (or the pod).
async fn events_until(plugin: &mut TestPlugin, last: &str, id: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let Seen { method, pod, container } = plugin.next().await;
        let named = if container.is_empty() { pod } else { container };
        let done = method == last && named == id;
        seen.push((method, named));
        if done {
            return seen;
        }
    }
}

fn events(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(method, id)| (method.to_string(), id.to_string())).collect()
}

#[tokio::test]
async fn a_plugin_is_synchronised_then_sees_every_event_in_order() {
    let bed = Bed::new().await;
    let earlier_pod = bed.pod("nri-earlier").await;
    let earlier = bed.run(&earlier_pod, sh("earlier", &bed.busybox, "exec sleep 1000")).await;

    let mut plugin = TestPlugin::connect(&bed.berth.paths.nri_socket, "watcher", "05", Behaviour::Accept).await;
    let sync = plugin.synchronized.lock().unwrap().clone().unwrap();
    assert!(sync.pods.iter().any(|p| p.id == earlier_pod.id && p.name == "nri-earlier"), "{sync:?}");
    let listed = sync.containers.iter().find(|c| c.id == earlier).expect("the running container is in the sync");
    assert_eq!((listed.name.as_str(), listed.state), ("earlier", api::ContainerState::ContainerRunning as i32));

    let pod = bed.pod("nri").await;
    let app = bed.run(&pod, sh("app", &bed.busybox, "exec sleep 1000")).await;
    bed.stop(&app, 0).await.unwrap();
    bed.remove(&app).await.unwrap();
    // One that ends by itself: its exit is its StopContainer, sent once.
    let quitter = bed.run(&pod, sh("quitter", &bed.busybox, "exit 3")).await;
    bed.wait_exited(&quitter).await;
    bed.stop(&quitter, 0).await.unwrap();
    bed.remove(&quitter).await.unwrap();
    stop_and_remove_pod(&bed, &pod).await;
    let p = pod.id.as_str();
    assert_eq!(
        events_until(&mut plugin, "RemovePodSandbox", p).await,
        events(&[
            ("RunPodSandbox", p),
            ("CreateContainer", &app),
            ("PostCreateContainer", &app),
            ("StartContainer", &app),
            ("PostStartContainer", &app),
            ("StopContainer", &app),
            ("RemoveContainer", &app),
            ("CreateContainer", &quitter),
            ("PostCreateContainer", &quitter),
            ("StartContainer", &quitter),
            ("PostStartContainer", &quitter),
            ("StopContainer", &quitter),
            ("RemoveContainer", &quitter),
            ("StopPodSandbox", p),
            ("RemovePodSandbox", p),
        ])
    );
    // A second StopPodSandbox is no event.
    let mut runtime = bed.berth.runtime().await;
    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: earlier_pod.id.clone() }).await.unwrap();
    runtime.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: earlier_pod.id.clone() }).await.unwrap();
    let stops: Vec<Seen> = events_until(&mut plugin, "StopPodSandbox", &earlier_pod.id)
        .await
        .into_iter()
        .map(|(method, id)| Seen { method, pod: id, container: String::new() })
        .collect();
    assert_eq!(stops.iter().filter(|s| s.method == "StopContainer").count(), 1, "{stops:?}");
    runtime.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: earlier_pod.id.clone() }).await.unwrap();
    let after: Vec<String> = events_until(&mut plugin, "RemovePodSandbox", &earlier_pod.id).await.into_iter().map(|e| e.0).collect();
    assert!(!after.contains(&"StopPodSandbox".to_string()), "the second stop said nothing: {after:?}");
}

#[tokio::test]
async fn a_refusing_plugin_fails_the_call_and_nothing_is_left() {
    let bed = Bed::new().await;
    let pod = bed.pod("nri-refused").await;
    let mut refuser =
        TestPlugin::connect(&bed.berth.paths.nri_socket, "refuser", "10", Behaviour::Refuse("CreateContainer")).await;
    let error = bed.create(&pod, container("refused", &bed.busybox)).await.expect_err("refused");
    assert!(error.message().contains("the test plugin refuses CreateContainer"), "{error:?}");
    assert!(error.message().contains("10-refuser"), "names the plugin: {error:?}");
    assert!(bed.list_all().await.is_empty(), "no container was made");
    let seen: Vec<String> = refuser.drain().into_iter().map(|s| s.method).collect();
    assert_eq!(seen, ["CreateContainer", "StopContainer", "RemoveContainer"], "told of the undo");
    assert!(mounts_mentioning(&bed.berth.dir().join("run/containers").display().to_string()).is_empty());

    refuser.crash();
    // With the plugin gone, the same container is made.
    bed.create(&pod, container("refused", &bed.busybox)).await.expect("no plugin left to refuse");

    // A refused RunPodSandbox leaves its name free for the retry.
    let _pod_refuser =
        TestPlugin::connect(&bed.berth.paths.nri_socket, "pods", "30", Behaviour::Refuse("RunPodSandbox")).await;
    let config = host_pod_config("nri-pod-refused");
    let Err(error) = bed.pod_with(config.clone(), "").await else { panic!("the pod was made") };
    assert!(error.message().contains("30-pods"), "{error:?}");
    drop(_pod_refuser);
    bed.pod_with(config, "").await.expect("the retry, once the plugin is gone");
}

#[tokio::test]
async fn a_plugin_that_hangs_or_crashes_is_dropped_and_berth_goes_on() {
    let bed = Bed::with(Berth::builder().nri_config("plugin_request_timeout = \"300ms\"")).await;
    let pod = bed.pod("nri-hung").await;
    let mut hung =
        TestPlugin::connect(&bed.berth.paths.nri_socket, "hung", "10", Behaviour::Hang("CreateContainer")).await;
    let first = bed.create(&pod, container("first", &bed.busybox)).await.expect("made once the plugin is dropped");
    assert_eq!(hung.next().await.method, "CreateContainer");
    bed.start(&first).await.unwrap();
    assert!(hung.drain().is_empty(), "a dropped plugin hears nothing more");

    let mut crashing =
        TestPlugin::connect(&bed.berth.paths.nri_socket, "crashing", "20", Behaviour::Hang("StartContainer")).await;
    let second = bed.create(&pod, sh("second", &bed.busybox, "exec sleep 1000")).await.unwrap();
    let starting = {
        let runtime = bed.berth.runtime().await;
        let id = second.clone();
        tokio::spawn(async move {
            let mut runtime = runtime;
            runtime.start_container(berth::cri::v1::StartContainerRequest { container_id: id }).await
        })
    };
    loop {
        if crashing.next().await.method == "StartContainer" {
            break;
        }
    }
    crashing.crash();
    starting.await.unwrap().expect("the start goes on without the crashed plugin");
    assert_eq!(
        bed.status(&second).await.state(),
        berth::cri::v1::ContainerState::ContainerRunning
    );
}

#[tokio::test]
async fn adjustments_reach_the_container_and_two_plugins_on_one_field_conflict() {
    let bed = Bed::new().await;
    let pod = bed.pod("nri-adjusted").await;
    let shared = bed.berth.dir().join("from-nri");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("file"), "mounted by a plugin\n").unwrap();
    let hooked = bed.berth.dir().join("hook-ran");
    let hook = api::Hook {
        path: "/bin/sh".into(),
        args: vec!["sh".into(), "-c".into(), format!("echo ran > {}", hooked.display())],
        ..Default::default()
    };
    let adjust = api::ContainerAdjustment {
        env: vec![api::KeyValue { key: "FROM_NRI".into(), value: "set by a plugin".into() }],
        hooks: Some(api::Hooks { create_runtime: vec![hook], ..Default::default() }),
        annotations: [("nri.test/by".to_string(), "adjuster".to_string())].into(),
        mounts: vec![api::Mount {
            destination: "/nri".into(),
            source: shared.display().to_string(),
            r#type: "bind".into(),
            options: vec!["rbind".into(), "ro".into()],
        }],
        linux: Some(api::LinuxContainerAdjustment {
            resources: Some(api::LinuxResources {
                pids: Some(api::LinuxPids { limit: 64 }),
                ..Default::default()
            }),
            devices: vec![api::LinuxDevice {
                path: "/dev/fuse".into(),
                r#type: "c".into(),
                major: 10,
                minor: 229,
                file_mode: Some(api::OptionalFileMode { value: 0o666 }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let socket = &bed.berth.paths.nri_socket;
    let adjuster = TestPlugin::connect(socket, "adjuster", "10", Behaviour::Adjust(Box::new(adjust.clone()))).await;
    let script = "echo \"$FROM_NRI\"; cat /nri/file; cat /sys/fs/cgroup/pids/pids.max; \
        test -c /dev/fuse && echo device-there";
    let config = sh("adjusted", &bed.busybox, script);
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), ["set by a plugin", "mounted by a plugin", "64", "device-there"]);
    assert_eq!(std::fs::read_to_string(&hooked).unwrap(), "ran\n", "the plugin's OCI hook ran");
    let spec = bed.info(&id).await["runtimeSpec"].clone();
    assert_eq!(spec["annotations"]["nri.test/by"], "adjuster", "{spec}");

    // A second plugin setting the same variable: the create fails naming both.
    let other = api::ContainerAdjustment {
        env: vec![api::KeyValue { key: "FROM_NRI".into(), value: "another".into() }],
        ..Default::default()
    };
    let _rival = TestPlugin::connect(socket, "rival", "20", Behaviour::Adjust(Box::new(other))).await;
    let error = bed.create(&pod, container("conflicted", &bed.busybox)).await.expect_err("a conflict");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(error.message().contains("10-adjuster") && error.message().contains("20-rival"), "{error:?}");
    assert!(error.message().contains("env[FROM_NRI]"), "{error:?}");
    let left: Vec<String> = bed.list_all().await.into_iter().map(|c| c.id).collect();
    assert_eq!(left, std::slice::from_ref(&id), "the conflicted container left nothing");
    drop(adjuster);

    // What berth cannot apply yet is refused by name, not dropped.
    let cdi = api::ContainerAdjustment {
        cdi_devices: vec![api::CdiDevice { name: "vendor.example/gpu=0".into() }],
        ..Default::default()
    };
    let _cdi = TestPlugin::connect(socket, "cdi", "30", Behaviour::Adjust(Box::new(cdi))).await;
    let error = bed.create(&pod, container("with-cdi", &bed.busybox)).await.expect_err("CDI is not applied yet");
    assert!(error.message().contains("30-cdi") && error.message().contains("CDI_devices"), "{error:?}");
}

#[tokio::test]
async fn plugins_hear_of_updates_and_update_or_evict_containers_themselves() {
    let bed = Bed::new().await;
    let pod = bed.pod("nri-updates").await;
    let mut plugin = TestPlugin::connect(&bed.berth.paths.nri_socket, "resizer", "10", Behaviour::Accept).await;
    let id = bed.run(&pod, sh("resized", &bed.busybox, "exec sleep 1000")).await;
    let cgroup = bed.cgroups_path(&id).await;
    let limit_file = crate::support::containers::cgroup_file(&cgroup, "memory.limit_in_bytes");
    let memory_limit = || crate::support::containers::read_trimmed(&limit_file);

    // kubelet's resize: told, then done, then told it is done.
    let resources = berth::cri::v1::LinuxContainerResources { memory_limit_in_bytes: 96 << 20, ..Default::default() };
    let request = berth::cri::v1::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(resources),
        ..Default::default()
    };
    bed.berth.runtime().await.update_container_resources(request).await.unwrap();
    let told: Vec<String> = events_until(&mut plugin, "PostUpdateContainer", &id).await.into_iter().map(|e| e.0).collect();
    assert!(told.ends_with(&["UpdateContainer".to_string(), "PostUpdateContainer".to_string()]), "{told:?}");
    assert_eq!(memory_limit(), (96u64 << 20).to_string());

    // A pod's resize: told, then told it is done.
    let request = berth::cri::v1::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod.id.clone(),
        resources: Some(berth::cri::v1::LinuxContainerResources { memory_limit_in_bytes: 128 << 20, ..Default::default() }),
        ..Default::default()
    };
    bed.berth.runtime().await.update_pod_sandbox_resources(request).await.unwrap();
    let told: Vec<String> =
        events_until(&mut plugin, "PostUpdatePodSandbox", &pod.id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(told, ["UpdatePodSandbox", "PostUpdatePodSandbox"]);

    // The plugin's own update, and its eviction.
    let update = api::ContainerUpdate {
        container_id: id.clone(),
        linux: Some(api::LinuxContainerUpdate {
            resources: Some(api::LinuxResources {
                memory: Some(api::LinuxMemory { limit: Some(api::OptionalInt64 { value: 80 << 20 }), ..Default::default() }),
                ..Default::default()
            }),
        }),
        ignore_failure: false,
    };
    let missing = api::ContainerUpdate { container_id: "0".repeat(64), ..update.clone() };
    let answer = plugin
        .update_containers(api::UpdateContainersRequest { update: vec![update, missing.clone()], evict: Vec::new() })
        .await;
    assert_eq!(answer.failed.iter().map(|f| f.container_id.clone()).collect::<Vec<_>>(), [missing.container_id]);
    assert_eq!(memory_limit(), (80u64 << 20).to_string());
    let status = bed.status(&id).await;
    assert_eq!(status.resources.and_then(|r| r.linux).map(|l| l.memory_limit_in_bytes), Some(80 << 20));
    let eviction = api::ContainerEviction { container_id: id.clone(), reason: "test".into() };
    plugin.update_containers(api::UpdateContainersRequest { update: Vec::new(), evict: vec![eviction] }).await;
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 137, "killed: {exited:?}");
}

/// A plugin built on NRI's own Go stub, started by berth from its plugin
/// directory with its configuration file: what it adds reaches the container.
#[tokio::test]
async fn a_pre_installed_plugin_is_started_with_its_configuration() {
    let plugin = crate::support::tools::nri_plugin();
    let bed = Bed::with(Berth::builder().nri_plugin("10-launched", &plugin, "hello from the config\n")).await;
    let pod = bed.pod("nri-launched").await;
    let config = sh("told", &bed.busybox, "echo \"$NRI_PLUGIN_SAYS\"");
    let log = pod.log_path(&config);
    // The plugin registers on its own time: until it has, containers are made without it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let _ = std::fs::remove_file(&log);
        let id = bed.run(&pod, config.clone()).await;
        bed.wait_exited(&id).await;
        let lines = log_lines(&log);
        bed.remove(&id).await.unwrap();
        if lines == ["hello from the config"] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the launched plugin never adjusted a container: {lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
