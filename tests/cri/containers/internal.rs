//! berth's internal runtime (a handler of `type = "internal"`: youki's
//! libcontainer, in the per-container monitor), driven through the CRI like the
//! runc handler: a container's output, exit code, limits, stop and removal.

use berth::runtime::ContainerStatus;
use berth::cri::v1::{ContainerState, LinuxContainerResources, UpdateContainerResourcesRequest};

use crate::support::berth::Berth;
use crate::support::footprint::CgroupParent;
use crate::support::containers::{
    Bed, cgroup_file, host_pod_config, log_lines, log_lines_of, process_alive, read_trimmed, sh, wait_for_line, wait_gone,
};

const INTERNAL: &str = "[runtime.handlers.berth]\ntype = \"internal\"\n";

async fn bed() -> (Bed, crate::support::containers::Pod) {
    let bed = Bed::with(Berth::builder().config(INTERNAL)).await;
    let pod = bed.pod_with(host_pod_config("internal"), "berth").await.expect("a pod on the internal handler");
    (bed, pod)
}

#[tokio::test]
async fn a_container_runs_logs_and_exits_through_the_internal_runtime() {
    let (bed, pod) = bed().await;
    let config = sh("hello", &bed.busybox, "echo hello from libcontainer; echo to stderr >&2; exit 3");
    let log = pod.log_path(&config);
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.exit_code, 3, "{exited:?}");
    assert_eq!(log_lines(&log), ["hello from libcontainer"]);
    assert_eq!(log_lines_of(&log, "stderr"), ["to stderr"]);
    let state = bed.berth.paths.run_root.join("runtimes/berth");
    assert!(state.is_dir(), "libcontainer keeps its state under the handler's root");
    assert!(bed.runc_containers().is_empty(), "runc ran nothing");
}

#[tokio::test]
async fn limits_stop_and_removal_through_the_internal_runtime() {
    let (bed, pod) = bed().await;
    let config = sh("sleeper", &bed.busybox, "echo ready; sleep 1000");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;
    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerRunning);
    let pid = bed.pid(&id).await;
    // The signals the monitor blocks (SIGCHLD) and ignores (SIGPIPE) are not the
    // container's; busybox sh itself ignores SIGQUIT for what it runs, as under runc.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let mask = |name: &str| {
        let hex = status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{status}");
    assert_eq!(mask("SigIgn:"), 1 << (3 - 1), "only SIGQUIT: {status}");

    let request = UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources { memory_limit_in_bytes: 96 << 20, ..Default::default() }),
        ..Default::default()
    };
    bed.berth.runtime().await.update_container_resources(request).await.expect("UpdateContainerResources");
    let path = bed.cgroups_path(&id).await;
    assert_eq!(read_trimmed(&cgroup_file(&path, "memory.limit_in_bytes")), (96u64 << 20).to_string());

    bed.stop(&id, 1).await.expect("StopContainer");
    let stopped = bed.wait_exited(&id).await;
    assert_eq!(stopped.exit_code, 137, "sh ignores SIGTERM as PID 1, so SIGKILL ends it: {stopped:?}");
    wait_gone(pid).await;
    bed.remove(&id).await.expect("RemoveContainer");
    assert!(!bed.berth.paths.run_root.join("runtimes/berth").join(&id).exists(), "its state is deleted");
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn exec_sync_through_the_internal_runtime() {
    let (bed, pod) = bed().await;
    let id = bed.run(&pod, sh("sleeper", &bed.busybox, "sleep 1000")).await;
    let reply = bed.exec(&id, &["sh", "-c", "echo out; echo err >&2; grep SigIgn /proc/self/status; exit 4"], 10).await;
    let reply = reply.expect("ExecSync");
    assert_eq!(reply.exit_code, 4, "{reply:?}");
    let stdout = String::from_utf8_lossy(&reply.stdout);
    assert!(stdout.starts_with("out\n"), "{stdout}");
    assert!(stdout.contains("SigIgn:\t0000000000000000"), "nothing ignored: {stdout}");
    assert_eq!(String::from_utf8_lossy(&reply.stderr), "err\n");

    // A process that outlives its deadline is killed, and the call says so.
    let late = bed.exec(&id, &["sleep", "1000"], 1).await.expect_err("past its deadline");
    assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late:?}");
    let missing = bed.exec(&id, &["no-such-command"], 10).await;
    assert!(missing.is_err() || missing.as_ref().is_ok_and(|r| r.exit_code != 0), "{missing:?}");
}

/// With the systemd cgroup driver on a v1 host (where libcgroups has only its
/// filesystem manager), the container lands in the cgroup systemd would give
/// it, nested in the pod's slice, with its limits. No systemd is needed: the
/// test VMs have none, which is why runc's systemd driver cannot run here.
#[tokio::test]
async fn the_systemd_cgroup_driver_lays_the_cgroup_out_as_systemd_does() {
    let top = format!("berthtest{}", &berth::ids::new_id()[..10]);
    let _cgroups = CgroupParent(format!("/{top}.slice"));
    let config = format!("cgroup_driver = \"systemd\"\n{INTERNAL}");
    let bed = Bed::with(Berth::builder().config(&config)).await;
    let mut pod_config = host_pod_config("systemd-driver");
    pod_config.linux.get_or_insert_with(Default::default).cgroup_parent = format!("{top}-pod.slice");
    let pod = bed.pod_with(pod_config, "berth").await.expect("a pod on the internal handler");
    let mut config = sh("limited", &bed.busybox, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    config.linux.get_or_insert_with(Default::default).resources =
        Some(LinuxContainerResources { memory_limit_in_bytes: 40 << 20, ..Default::default() });
    let log = pod.log_path(&config);
    let id = bed.create(&pod, config).await.expect("CreateContainer");
    let path = bed.cgroups_path(&id).await;
    let expected = format!("/{top}.slice/{top}-pod.slice/berth-{id}.scope");
    assert_eq!(path, expected, "the slice expanded as systemd nests it");
    assert_eq!(read_trimmed(&cgroup_file(&path, "memory.limit_in_bytes")), (40u64 << 20).to_string());
    bed.start(&id).await.expect("StartContainer");
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), [(40u64 << 20).to_string()], "the limit seen from inside");
}

/// The runtime seam's state, list, pause and resume, on a container berth runs
/// through the internal handler (the CRI has no call for pause).
#[tokio::test]
async fn state_list_pause_and_resume_through_the_internal_runtime() {
    let (bed, pod) = bed().await;
    let config = sh("paused", &bed.busybox, "echo up; sleep 1000");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "up").await;
    let handler = berth::runtime::RuntimeHandler {
        name: "berth".into(),
        kind: berth::config::RuntimeKind::Internal,
        binary: Default::default(),
        root: bed.berth.paths.run_root.join("runtimes/berth"),
        systemd_cgroup: false,
        timeout: berth::runtime::DEFAULT_TIMEOUT,
    };
    let runtime = handler.runtime();
    let state = runtime.state(&id).await.expect("state");
    assert_eq!((state.status, state.pid), (ContainerStatus::Running, bed.pid(&id).await));
    let listed: Vec<String> = runtime.list().await.expect("list").into_iter().map(|s| s.id).collect();
    assert_eq!(listed, std::slice::from_ref(&id));

    runtime.pause(&id).await.expect("pause");
    assert_eq!(runtime.state(&id).await.unwrap().status, ContainerStatus::Paused);
    let path = bed.cgroups_path(&id).await;
    let freezer = std::path::Path::new("/sys/fs/cgroup/freezer").join(path.trim_start_matches('/')).join("freezer.state");
    assert_eq!(read_trimmed(&freezer), "FROZEN");
    runtime.resume(&id).await.expect("resume");
    assert_eq!(runtime.state(&id).await.unwrap().status, ContainerStatus::Running);
    assert_eq!(read_trimmed(&freezer), "THAWED");
    let missing = runtime.state(&"0".repeat(64)).await.unwrap_err();
    assert!(missing.is_not_found(), "{missing:?}");
}
