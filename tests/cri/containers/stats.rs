//! ContainerStats, ListContainerStats, PodSandboxStats and ListPodSandboxStats
//! read from the real cgroups, writable layers and pod network.

use std::time::{Duration, Instant};

use berth::cri::v1::{
    ContainerStats, ContainerStatsFilter, ContainerStatsRequest, ListContainerStatsRequest, ListPodSandboxStatsRequest,
    PodSandboxStatsRequest, PodSandboxStatusRequest,
};

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, pod_network_options, security_context, sh, wait_for_line};

const WAIT: Duration = Duration::from_secs(60);

async fn list_stats(bed: &Bed, pod: &str) -> Vec<ContainerStats> {
    let filter = ContainerStatsFilter { pod_sandbox_id: pod.into(), ..Default::default() };
    let request = ListContainerStatsRequest { filter: Some(filter) };
    bed.berth.runtime().await.list_container_stats(request).await.unwrap().into_inner().stats
}

async fn stats_of(bed: &Bed, id: &str) -> ContainerStats {
    let request = ContainerStatsRequest { container_id: id.into() };
    bed.berth.runtime().await.container_stats(request).await.unwrap().into_inner().stats.unwrap()
}

fn cpu_ns(stats: &ContainerStats) -> u64 {
    stats.cpu.as_ref().and_then(|c| c.usage_core_nano_seconds.as_ref()).map(|v| v.value).expect("CPU usage")
}

fn working_set(stats: &ContainerStats) -> u64 {
    stats.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map(|v| v.value).expect("a working set")
}

#[tokio::test]
async fn cpu_rises_for_a_busy_container_only_and_memory_and_layer_follow_what_it_does() {
    let bed = Bed::new().await;
    let pod = bed.pod("stats").await;
    let busy = bed.run(&pod, sh("busy", &bed.busybox, "while :; do :; done")).await;
    let idle = bed.run(&pod, sh("idle", &bed.busybox, "sleep 1000")).await;
    // 24 MiB in the pod's /dev/shm (tmpfs: charged to the writer, never reclaimable
    // as file cache) and 4 MiB written to the writable layer.
    let script = "head -c 4194304 /dev/zero > /big; dd if=/dev/zero of=/dev/shm/fill bs=1048576 count=24; \\
        echo held; sleep 1000";
    let hog_config = sh("hog", &bed.busybox, script);
    let hog_log = pod.log_path(&hog_config);
    let baseline = {
        let quiet = bed.run(&pod, sh("quiet", &bed.busybox, "sleep 1000")).await;
        working_set(&stats_of(&bed, &quiet).await)
    };

    let first = list_stats(&bed, &pod.id).await;
    assert_eq!(first.len(), 3, "every running container of the pod: {first:?}");
    let find = |all: &[ContainerStats], id: &str| {
        all.iter().find(|s| s.attributes.as_ref().unwrap().id == id).cloned().expect("listed")
    };
    let (busy_start, idle_start) = (cpu_ns(&find(&first, &busy)), cpu_ns(&find(&first, &idle)));
    // Until the busy loop has used half a second of CPU, however long that takes here.
    let deadline = Instant::now() + WAIT;
    let later = loop {
        let now = list_stats(&bed, &pod.id).await;
        if cpu_ns(&find(&now, &busy)) - busy_start > 500_000_000 {
            break now;
        }
        assert!(Instant::now() < deadline, "the busy container used no CPU: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let idle_spent = cpu_ns(&find(&later, &idle)) - idle_start;
    assert!(idle_spent < 50_000_000, "a sleeping container stays flat: {idle_spent} ns");
    let rate = find(&later, &busy).cpu.unwrap().usage_nano_cores.expect("a rate from the previous sample").value;
    assert!(rate > 100_000_000, "a busy loop uses a good part of a core: {rate}");

    // Started only now: a writable layer's size is measured at most every 10 s,
    // so its first measurement must come after the writes.
    let hog = bed.run(&pod, hog_config).await;
    wait_for_line(&hog_log, "held").await;
    let hog_stats = stats_of(&bed, &hog).await;
    assert!(working_set(&hog_stats) > baseline + 20 * 1024 * 1024, "{} vs {baseline}", working_set(&hog_stats));
    let layer = hog_stats.writable_layer.unwrap();
    assert!(layer.used_bytes.unwrap().value >= 4 * 1024 * 1024, "{layer:?}");
    assert!(layer.inodes_used.unwrap().value >= 1);

    bed.stop(&busy, 0).await.unwrap();
    let listed = list_stats(&bed, &pod.id).await;
    assert!(listed.iter().all(|s| s.attributes.as_ref().unwrap().id != busy), "exited containers have no stats");
}

async fn pod_stats(bed: &Bed, id: &str) -> berth::cri::v1::PodSandboxStats {
    let request = PodSandboxStatsRequest { pod_sandbox_id: id.into() };
    bed.berth.runtime().await.pod_sandbox_stats(request).await.unwrap().into_inner().stats.unwrap()
}

#[tokio::test]
async fn pod_stats_carry_network_traffic_processes_and_containers() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let pod = bed.pod_with(crate::support::pods::pod_config("netstats"), "").await.unwrap();
    let request = PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false };
    let ip = bed.berth.runtime().await.pod_sandbox_status(request).await.unwrap().into_inner();
    let ip = ip.status.unwrap().network.expect("a pod IP").ip;
    let mut config = sh("server", &bed.busybox, "echo ready; while :; do nc -l -p 8080 > /dev/null; done");
    security_context(&mut config).namespace_options = Some(pod_network_options());
    let log = pod.log_path(&config);
    bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;

    let before = pod_stats(&bed, &pod.id).await;
    let rx = |stats: &berth::cri::v1::PodSandboxStats| {
        let network = stats.linux.as_ref().unwrap().network.as_ref().expect("the pod's network counters");
        let eth0 = network.default_interface.as_ref().unwrap();
        assert_eq!(eth0.name, "eth0");
        eth0.rx_bytes.as_ref().unwrap().value
    };
    let rx_before = rx(&before);
    // 64 KiB into the pod through the bridge.
    crate::support::containers::send_when_listening(&ip, 8080, &[b'x'; 65536]).await;
    let deadline = Instant::now() + WAIT;
    // Counted once the bytes have crossed eth0, whenever that is.
    let after = loop {
        let now = pod_stats(&bed, &pod.id).await;
        if rx(&now) >= rx_before + 65536 {
            break now;
        }
        assert!(Instant::now() < deadline, "{rx_before} then {}: the traffic was not counted", rx(&now));
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let linux = after.linux.unwrap();
    assert_eq!(linux.containers.len(), 1, "the pod's container stats");
    assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
    assert!(linux.memory.unwrap().working_set_bytes.unwrap().value > 0);

    let listed = bed.berth.runtime().await.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default()).await;
    let listed = listed.unwrap().into_inner().stats;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attributes.as_ref().unwrap().id, pod.id);
}
