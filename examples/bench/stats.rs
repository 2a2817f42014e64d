//! `bench stats`: the stats RPCs kubelet polls, with many pods running. With
//! `PODS` pods on a private bridge running a busybox `sleep 3600` each, the
//! latency of ListContainerStats and ListPodSandboxStats (no filter) and of
//! ContainerStats for one container, `CALLS` each, interleaved on the one
//! connection kubelet would keep; berth's CPU time over those calls and its
//! RSS after them.
//!
//! berth keeps a writable layer's measured size for 10 s: the first call after
//! a container starts walks the layer (a stat per file), later ones reuse the
//! figure until it is 10 s old. That first call is timed on its own.

use std::time::{Duration, Instant};

use berth::cri::v1::{
    ContainerStats, ContainerStatsRequest, ListContainerStatsRequest, ListPodSandboxMetricsRequest,
    ListPodSandboxStatsRequest, PodSandboxStats,
};
use prost::Message;

use super::shared::{Stage, machine_note, mib, reap_zombie_children, report_leftovers};
use super::{median, ms, percentile, status_kib};

/// Pods (one container each) running while the stats are asked for.
const PODS: usize = 50;
/// Measured calls of each RPC.
const CALLS: usize = 100;
/// berth's writable layer size cache (`LAYER_USAGE_TTL` in src/container/stats.rs).
const LAYER_TTL: Duration = Duration::from_secs(10);

pub async fn stats() {
    let stage = Stage::start().await;
    let pid = stage.berth_pid();
    let keep = stage.keep();
    let mut bench = stage.bench().await;

    eprintln!(
        "bench: {PODS} pods with one container each on bridge {} ({})...",
        stage.network.bridge, stage.network.subnet
    );
    let mut running = Vec::new();
    for i in 0..PODS {
        let (ids, _) = bench.start(&format!("stats-{i}")).await;
        running.push(ids);
    }
    reap_zombie_children(&keep);
    let one = running[0].container.clone();

    eprintln!(
        "bench: {CALLS} calls each of ListContainerStats, ListPodSandboxStats, ContainerStats and \
         ListPodSandboxMetrics, interleaved..."
    );
    let client = &mut bench.client;
    let list_containers = ListContainerStatsRequest { filter: None };
    let list_pods = ListPodSandboxStatsRequest { filter: None };
    let container = ContainerStatsRequest { container_id: one.clone() };
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let first = client.list_container_stats(list_containers.clone()).await.expect("ListContainerStats").into_inner();
    let first_call = started.elapsed();
    check_containers(&first.stats, "the first ListContainerStats");
    let (mut containers_runs, mut pods_runs, mut one_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut metrics_runs = Vec::new();
    let (mut containers_bytes, mut pods_bytes, mut metrics_bytes) = (0, 0, 0);
    let mut last_one = None;
    for _ in 0..CALLS {
        let at = Instant::now();
        let listed =
            client.list_container_stats(list_containers.clone()).await.expect("ListContainerStats").into_inner();
        containers_runs.push(at.elapsed());
        let at = Instant::now();
        let pods = client.list_pod_sandbox_stats(list_pods.clone()).await.expect("ListPodSandboxStats").into_inner();
        pods_runs.push(at.elapsed());
        let at = Instant::now();
        let stats = client.container_stats(container.clone()).await.expect("ContainerStats").into_inner().stats;
        one_runs.push(at.elapsed());
        let at = Instant::now();
        let metrics = client
            .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
            .await
            .expect("ListPodSandboxMetrics")
            .into_inner();
        metrics_runs.push(at.elapsed());
        // Outside the timed calls: each answer lists what is running.
        assert_eq!(listed.stats.len(), PODS, "ListContainerStats lists every running container");
        assert_eq!(pods.stats.len(), PODS, "ListPodSandboxStats lists every ready pod");
        assert_eq!(metrics.pod_metrics.len(), PODS, "ListPodSandboxMetrics lists every ready pod");
        (containers_bytes, pods_bytes, metrics_bytes) =
            (listed.encoded_len(), pods.encoded_len(), metrics.encoded_len());
        last_one = Some((listed, pods, stats.expect("ContainerStats has stats")));
    }
    let span = started.elapsed();
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
    let (rss_kib, peak_kib) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    let (listed, pods, one_stats) = last_one.expect("calls made");
    check_containers(&listed.stats, "the last ListContainerStats");
    check_pods(&pods.stats);

    for ids in running {
        bench.end(ids).await;
    }
    reap_zombie_children(&keep);
    report_leftovers(&stage.berth, &stage.network, None);

    println!(
        "stats RPCs: {PODS} pods on a private bridge ({} {}), each running one busybox `sleep 3600`; \
         {CALLS} calls of each RPC, interleaved, on one connection",
        stage.network.bridge, stage.network.subnet
    );
    println!(
        "note: berth caches a writable layer's size for {} s; the first call after a container starts walks its \
         layer (one stat per file), timed on its own below",
        LAYER_TTL.as_secs()
    );
    if span >= LAYER_TTL {
        println!(
            "note: the calls took {:.1} s, past the cache's {} s: the calls after that walked every layer again",
            span.as_secs_f64(),
            LAYER_TTL.as_secs()
        );
    }
    println!("{}", machine_note());
    println!("{:<48} {:>10} {:>10} {:>10}", "", "median ms", "p95 ms", "reply KiB");
    println!(
        "{:<48} {:>10.2} {:>10} {:>10}",
        format!("first ListContainerStats (walks {PODS} layers)"),
        ms(first_call),
        "-",
        "-"
    );
    let row = |name: &str, runs: Vec<Duration>, bytes: usize| {
        let (median, p95) = (median(runs.clone()), percentile(runs, 95.0));
        println!("{name:<48} {:>10.2} {:>10.2} {:>10.1}", ms(median), ms(p95), bytes as f64 / 1024.0);
    };
    row(&format!("ListContainerStats ({PODS} containers)"), containers_runs, containers_bytes);
    row(&format!("ListPodSandboxStats ({PODS} pods)"), pods_runs, pods_bytes);
    row("ContainerStats (one container)", one_runs, one_stats.encoded_len());
    row(&format!("ListPodSandboxMetrics ({PODS} pods)"), metrics_runs, metrics_bytes);
    let calls = 4 * CALLS + 1;
    let cpu_ms = cpu as f64 * 1000.0 / clock_ticks_per_second() as f64;
    println!(
        "berth CPU (user + system) over the {calls} calls {cpu_ms:.0} ms ({:.2} ms a call), wall {:.2} s",
        cpu_ms / calls as f64,
        span.as_secs_f64()
    );
    println!("berth VmRSS after the calls {:.1} MiB, peak (VmHWM) {:.1} MiB", mib(rss_kib), mib(peak_kib));
}

/// Warns about the running containers' stats that lack a figure berth should give.
fn check_containers(stats: &[ContainerStats], what: &str) {
    let lacking = |has: fn(&ContainerStats) -> bool| stats.iter().filter(|s| !has(s)).count();
    let cpu = lacking(|s| s.cpu.as_ref().is_some_and(|c| c.usage_core_nano_seconds.is_some()));
    let memory = lacking(|s| s.memory.as_ref().is_some_and(|m| m.working_set_bytes.is_some()));
    let layer = lacking(|s| s.writable_layer.as_ref().is_some_and(|l| l.used_bytes.is_some()));
    if cpu + memory + layer > 0 {
        eprintln!(
            "bench: WARNING: in {what} of {} containers, {cpu} have no CPU usage, {memory} no working set, \
             {layer} no writable layer size",
            stats.len()
        );
    }
}

/// Warns about the ready pods' stats that lack a figure or their container.
fn check_pods(stats: &[PodSandboxStats]) {
    let lacking = |has: fn(&PodSandboxStats) -> bool| stats.iter().filter(|s| !has(s)).count();
    let cpu = lacking(|s| s.linux.as_ref().and_then(|l| l.cpu.as_ref()).is_some());
    let memory = lacking(|s| s.linux.as_ref().and_then(|l| l.memory.as_ref()).is_some());
    let network = lacking(|s| s.linux.as_ref().and_then(|l| l.network.as_ref()).is_some());
    let container = lacking(|s| s.linux.as_ref().is_some_and(|l| l.containers.len() == 1));
    if cpu + memory + network + container > 0 {
        eprintln!(
            "bench: WARNING: in the last ListPodSandboxStats of {} pods, {cpu} have no CPU usage, {memory} no \
             memory, {network} no network, {container} not exactly their one container",
            stats.len()
        );
    }
}

/// The user + system CPU time `pid` has used, in clock ticks (`/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    berth::procfs::stat(pid as i32).map_or(0, |stat| stat.cpu_ticks)
}

/// USER_HZ, the unit of `/proc/<pid>/stat`'s times: `getconf CLK_TCK` (100 on Linux).
fn clock_ticks_per_second() -> u64 {
    let output = std::process::Command::new("getconf").arg("CLK_TCK").output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&output).trim().parse().unwrap_or(100)
}
