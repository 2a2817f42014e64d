//! Create, start, stop, remove, and what ContainerStatus says at each step;
//! unknown IDs, prefixes, duplicates and malformed requests.

use berth::cri::v1::{ContainerState, CreateContainerRequest, Mount, StopPodSandboxRequest};
use tonic::Code;

use crate::support::containers::{Bed, container, process_alive, sh, wait_for_line, wait_gone};

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

#[tokio::test]
async fn a_container_is_created_started_stopped_and_removed() {
    let bed = Bed::new().await;
    let pod = bed.pod("life").await;
    // Exits 0 on SIGTERM (the trap runs once the current usleep returns).
    let config = sh("main", &bed.busybox, "echo started; trap 'exit 0' TERM; while :; do usleep 100000; done");
    let log = pod.log_path(&config);
    let before = now_nanos();
    let id = bed.create(&pod, config).await.unwrap();
    assert_eq!(id.len(), 64, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");

    let created = bed.status(&id).await;
    assert_eq!(created.state(), ContainerState::ContainerCreated);
    assert_eq!(created.id, id);
    assert_eq!(created.metadata.as_ref().unwrap().name, "main");
    assert_eq!(created.image.as_ref().unwrap().image, bed.busybox);
    assert!(created.created_at >= before && created.created_at <= now_nanos(), "created_at in ns: {created:?}");
    assert_eq!((created.started_at, created.finished_at), (0, 0));
    assert_eq!(created.log_path, log.display().to_string());
    assert_eq!(created.labels["container"], "main");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!crate::support::containers::log_lines(&log).contains(&"started".to_string()), "ran before start");

    bed.start(&id).await.unwrap();
    let running = bed.status(&id).await;
    assert_eq!(running.state(), ContainerState::ContainerRunning);
    assert!(running.started_at >= created.created_at, "{running:?}");
    assert_eq!(running.finished_at, 0);
    let info = bed.info(&id).await;
    let pid = info["pid"].as_i64().unwrap_or_else(|| panic!("no pid: {info}")) as i32;
    assert!(process_alive(pid), "pid {pid} reported but not running");
    let args = &info["runtimeSpec"]["process"]["args"];
    assert_eq!(args[0], "sh", "the OCI spec is in the verbose info: {info}");
    assert_eq!(info["runtimeSpec"]["ociVersion"].as_str().map(|v| v.starts_with("1.")), Some(true), "{info}");
    wait_for_line(&log, "started").await;

    bed.stop(&id, 10).await.unwrap();
    let exited = bed.status(&id).await;
    assert_eq!(exited.state(), ContainerState::ContainerExited, "stop returns once the container is gone");
    assert_eq!(exited.exit_code, 0);
    assert_eq!(exited.reason, "Completed");
    assert!(exited.finished_at >= running.started_at && exited.finished_at <= now_nanos(), "{exited:?}");
    assert_eq!(exited.started_at, running.started_at);
    wait_gone(pid).await;
    bed.stop(&id, 10).await.expect("stopping an exited container again");

    bed.remove(&id).await.unwrap();
    let err = bed.try_status(&id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(!bed.runc_containers().contains(&id), "runc still has {id}");
    assert!(bed.list_all().await.is_empty());
    bed.remove(&id).await.expect("removing twice");
}

#[tokio::test]
async fn a_failing_process_exits_with_its_code_and_reason_error() {
    let bed = Bed::new().await;
    let pod = bed.pod("fail").await;
    let exited = bed.run_to_exit(&pod, sh("fail", &bed.busybox, "echo bye; exit 3")).await;
    assert_eq!(exited.exit_code, 3);
    assert_eq!(exited.reason, "Error");
    assert!(exited.finished_at >= exited.started_at && exited.started_at >= exited.created_at, "{exited:?}");
    let ok = bed.run_to_exit(&pod, sh("ok", &bed.busybox, "true")).await;
    assert_eq!((ok.exit_code, ok.reason.as_str()), (0, "Completed"));
}

#[tokio::test]
async fn unknown_ids_prefixes_and_duplicate_names() {
    let bed = Bed::new().await;
    let unknown = "f".repeat(64);
    bed.stop(&unknown, 0).await.expect("StopContainer of an unknown ID succeeds");
    bed.remove(&unknown).await.expect("RemoveContainer of an unknown ID succeeds");
    let err = bed.try_status(&unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let pod = bed.pod("names").await;
    let id = bed.create(&pod, sh("dup", &bed.busybox, "sleep 1000")).await.unwrap();
    let by_prefix = bed.try_status(&id[..12]).await.unwrap().status.unwrap();
    assert_eq!(by_prefix.id, id, "a unique prefix names the container");

    let err = bed.create(&pod, sh("dup", &bed.busybox, "sleep 1000")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let mut next = sh("dup", &bed.busybox, "sleep 1000");
    next.metadata.as_mut().unwrap().attempt = 1;
    next.log_path = "dup/1.log".into();
    let second = bed.create(&pod, next).await.expect("the next attempt is another container");
    assert_ne!(second, id);
    // The same name in another pod is another container too.
    let other = bed.pod("names-2").await;
    bed.create(&other, sh("dup", &bed.busybox, "sleep 1000")).await.unwrap();
    assert_eq!(bed.list_all().await.len(), 3);

    // Once removed, the name is free again.
    bed.remove(&id).await.unwrap();
    bed.create(&pod, sh("dup", &bed.busybox, "sleep 1000")).await.expect("name freed by RemoveContainer");
}

#[tokio::test]
async fn a_stopped_pod_and_a_missing_image_refuse_new_containers() {
    let bed = Bed::new().await;
    let pod = bed.pod("stopped").await;
    let request = StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    bed.berth.runtime().await.stop_pod_sandbox(request).await.unwrap();
    let err = bed.create(&pod, sh("late", &bed.busybox, "true")).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let ready = bed.pod("ready").await;
    let missing = format!("{}/test/never-pulled:latest", bed.registry.host());
    let err = bed.create(&ready, container("nopull", &missing)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("never-pulled"), "{}", err.message());
    assert!(bed.list_all().await.is_empty(), "nothing left by refused creates");
}

#[tokio::test]
async fn malformed_requests_name_the_field() {
    let bed = Bed::new().await;
    let pod = bed.pod("bad").await;
    let create = |request: CreateContainerRequest| {
        let bed = &bed;
        async move { bed.berth.runtime().await.create_container(request).await.unwrap_err() }
    };

    let err = create(CreateContainerRequest { config: None, ..pod.create_request(container("x", &bed.busybox)) }).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("config"), "{}", err.message());

    let mut no_metadata = container("x", &bed.busybox);
    no_metadata.metadata = None;
    let err = create(pod.create_request(no_metadata)).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("metadata"), "{}", err.message());

    let err = create(pod.create_request(container("", &bed.busybox))).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("metadata.name"), "{}", err.message());

    let err = create(pod.create_request(container("noimage", ""))).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("image"), "{}", err.message());

    let unknown_pod = CreateContainerRequest {
        pod_sandbox_id: "e".repeat(64),
        ..pod.create_request(container("orphan", &bed.busybox))
    };
    let err = create(unknown_pod).await;
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let mut relative = container("relative", &bed.busybox);
    let host_dir = bed.berth.dir().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    relative.mounts =
        vec![Mount { container_path: "data".into(), host_path: host_dir.display().to_string(), ..Default::default() }];
    let err = create(pod.create_request(relative)).await;
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("mounts[0].container_path"), "{}", err.message());

    assert!(bed.list_all().await.is_empty(), "nothing left by refused creates");
    assert!(bed.runc_containers().is_empty());
}
