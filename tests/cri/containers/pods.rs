//! A pod's containers go with it: StopPodSandbox stops them, RemovePodSandbox
//! removes them with everything they had on the host; a container is in its
//! pod's network, IPC and UTS namespaces.

use std::time::{Duration, Instant};

use berth::cri::v1::{
    ContainerFilter, ContainerState, PodSandboxStatusRequest, RemovePodSandboxRequest, StopPodSandboxRequest,
};
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{
    Bed, WAIT, log_lines, mounts_mentioning, pod_network_options, process_alive, security_context, sh, wait_for_line,
    wait_gone,
};

#[tokio::test]
async fn stopping_a_pod_stops_its_containers_and_removing_it_removes_them() {
    let bed = Bed::new().await;
    let pod = bed.pod("doomed").await;
    let other = bed.pod("bystander").await;
    let first = bed.run(&pod, sh("first", &bed.busybox, "sleep 1000")).await;
    // Ignores SIGTERM: the pod's stop must not hang on it.
    let second = bed.run(&pod, sh("second", &bed.busybox, "trap '' TERM; while :; do sleep 1; done")).await;
    let created = bed.create(&pod, sh("created", &bed.busybox, "sleep 1000")).await.unwrap();
    let bystander = bed.run(&other, sh("bystander", &bed.busybox, "sleep 1000")).await;
    let pids = [bed.pid(&first).await, bed.pid(&second).await];
    let bystander_pid = bed.pid(&bystander).await;

    let request = StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    bed.berth.runtime().await.stop_pod_sandbox(request).await.unwrap();
    for id in [&first, &second] {
        let status = bed.status(id).await;
        assert_eq!(status.state(), ContainerState::ContainerExited, "{status:?}");
        assert!(status.finished_at > 0, "{status:?}");
    }
    for pid in pids {
        wait_gone(pid).await;
    }
    assert!(process_alive(bystander_pid), "another pod's container was stopped");
    assert_eq!(bed.status(&bystander).await.state(), ContainerState::ContainerRunning);

    let request = RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    bed.berth.runtime().await.remove_pod_sandbox(request).await.unwrap();
    let in_pod = ContainerFilter { pod_sandbox_id: pod.id.clone(), ..Default::default() };
    assert!(bed.list(in_pod).await.is_empty(), "the pod's containers are not listed");
    for id in [&first, &second, &created] {
        let err = bed.try_status(id).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{id}: {err:?}");
        assert!(!bed.runc_containers().contains(id), "runc still has {id}");
        assert!(mounts_mentioning(id).is_empty(), "{id}'s rootfs is still mounted: {:?}", mounts_mentioning(id));
        assert!(!bed.berth.paths.run_root.join("containers").join(id).exists(), "{id}'s bundle is left");
        assert!(!bed.berth.paths.state_root.join("containers").join(id).exists(), "{id}'s layer is left");
    }
    assert_eq!(bed.runc_containers(), vec![bystander.clone()]);
    assert_eq!(bed.list_all().await.len(), 1);
}

#[tokio::test]
async fn removing_a_ready_pod_removes_its_running_containers() {
    let bed = Bed::new().await;
    let pod = bed.pod("removed").await;
    let id = bed.run(&pod, sh("main", &bed.busybox, "sleep 1000")).await;
    let pid = bed.pid(&id).await;
    // kubelet always stops first, but RemovePodSandbox must stand on its own.
    let request = RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    bed.berth.runtime().await.remove_pod_sandbox(request).await.unwrap();
    wait_gone(pid).await;
    assert!(bed.list_all().await.is_empty());
    assert!(bed.runc_containers().is_empty());
    assert!(mounts_mentioning(&id).is_empty(), "{:?}", mounts_mentioning(&id));
}

#[tokio::test]
async fn a_container_joins_its_pods_network_and_hostname() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let mut pod_config = crate::support::pods::pod_config("netpod");
    pod_config.hostname = "net-pod-0".into();
    let pod = bed.pod_with(pod_config, "").await.unwrap();
    let request = PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: true };
    let reply = bed.berth.runtime().await.pod_sandbox_status(request).await.unwrap().into_inner();
    let ip = reply.status.unwrap().network.expect("a pod IP").ip;
    let pod_info: serde_json::Value = serde_json::from_str(&reply.info["info"]).unwrap();

    let script = "hostname; ip -o -4 addr show eth0; echo ready; echo hello from the container | nc -l -p 8080";
    let mut config = sh("server", &bed.busybox, script);
    security_context(&mut config).namespace_options = Some(pod_network_options());
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;
    let lines = log_lines(&log);
    assert_eq!(lines[0], "net-pod-0", "the pod's hostname: {lines:?}");
    assert!(lines[1].contains(&format!("inet {ip}/")), "the pod's address on eth0: {lines:?}");

    use std::os::unix::fs::MetadataExt;
    let inode = |path: &str| std::fs::metadata(path).unwrap().ino();
    let pid = bed.pid(&id).await;
    for kind in ["net", "ipc", "uts"] {
        let pin = pod_info["namespaces"][kind].as_str().unwrap_or_else(|| panic!("no {kind} pin: {pod_info}"));
        assert_eq!(inode(&format!("/proc/{pid}/ns/{kind}")), inode(pin), "the pod's {kind} namespace");
    }

    // Reachable at the pod's IP from the host, through the bridge.
    let deadline = Instant::now() + WAIT;
    let answer = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect((ip.as_str(), 8080)) {
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
            break answer;
        }
        assert!(Instant::now() < deadline, "nothing listens on {ip}:8080");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answer, "hello from the container\n");
    assert_eq!(bed.wait_exited(&id).await.exit_code, 0);
    let request = RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
    bed.berth.runtime().await.remove_pod_sandbox(request).await.unwrap();
    assert_eq!(network.veths(), 0);
}
