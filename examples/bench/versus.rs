//! `bench versus`: berth and Debian's containerd side by side, in one run, on
//! the same machine, driven by the same CRI client code (`shared::Bench`, one
//! connection each, as kubelet keeps one): the pod lifecycle and the container
//! lifecycle per RPC, 50 concurrent RunPodSandbox calls, the List calls
//! kubelet makes with 100 pods, and each daemon's memory idle, with 50 and 100
//! pods and after 200 more pod cycles, with its per-pod helpers (berth's
//! monitors; containerd's shims).
//!
//! Both pull the same busybox from the same loopback registry and attach pods
//! to the same bridge; containerd's sandbox image is the suite's pause
//! look-alike (berth runs no infra process for these pods: their PID
//! namespace is per container, as kubelet asks by default).

use std::time::{Duration, Instant};

use berth::cri::v1::image_service_client::ImageServiceClient;
use berth::cri::v1::{
    ImageSpec, ListContainerStatsRequest, ListContainersRequest, ListPodSandboxStatsRequest, PodSandboxStatusRequest,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

use super::containerd::CriContainerd;
use super::shared::{BERTH_STEPS, Bench, Stage, machine_note, mib, monitor_pids, reap_zombie_children, rollup_kib};
use crate::support::critest_images::helper;
use crate::support::image::{Compression, ImageBuilder, Layer};
use crate::support::pods::pod_config;
use crate::{median, percentile, status_kib};

const SAMPLES: usize = 50;
const WARMUP: usize = 3;
const CONCURRENT: usize = 50;
const RUNNING: usize = 50;
/// The node the List calls are timed on.
const LISTED: usize = 100;
const LIST_CALLS: usize = 20;
/// Pod cycles after which the daemon's memory should be back near idle.
const CYCLES: usize = 200;

/// One runtime's figures.
#[derive(Default)]
struct Figures {
    /// Per RPC of the pod lifecycle: RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox.
    pod: [Vec<Duration>; 4],
    pod_total: Vec<Duration>,
    /// Per RPC of the container lifecycle (a pod around each).
    container: [Vec<Duration>; 7],
    container_total: Vec<Duration>,
    concurrent_pods_per_second: f64,
    idle_rss_kib: u64,
    loaded_rss_kib: u64,
    helper_pss_kib: Vec<u64>,
    /// With LISTED pods, each running a container: ListContainers,
    /// ListContainerStats, ListPodSandboxStats.
    lists: [Vec<Duration>; 3],
    list_errors: Vec<String>,
    listed_rss_kib: u64,
    /// After CYCLES more pod lifecycles, with nothing running.
    cycled_rss_kib: u64,
}

const LIST_RPCS: [&str; 3] = ["ListContainers", "ListContainerStats", "ListPodSandboxStats"];

const POD_RPCS: [&str; 4] = ["RunPodSandbox", "PodSandboxStatus", "StopPodSandbox", "RemovePodSandbox"];

pub(crate) async fn versus() {
    let stage = Stage::start().await;
    let keep = stage.keep();
    let pause = ImageBuilder::new()
        .layer(Layer::new().file("/pause", helper("pause"), 0o755), Compression::Gzip)
        .entrypoint(["/pause"])
        .user("65535:65535")
        .build();
    pause.push(&stage.registry, "bench/pause", "3.10").await;
    let sandbox_image = format!("{}/bench/pause:3.10", stage.registry.host());
    let containerd = CriContainerd::start(&stage.registry.host(), &stage.network.conflist(), &sandbox_image).await;
    let mut images = containerd.images().await;
    for image in [&stage.reference, &sandbox_image] {
        pull(&mut images, image).await;
    }
    eprintln!("bench: berth and containerd ready; {SAMPLES} samples of each lifecycle, each runtime in turn...");

    let mut berth = stage.bench().await;
    let berth_figures =
        measure(&mut berth, stage.berth_pid(), || monitor_pids(&stage.berth.paths.run_root), &keep).await;
    let logs = containerd.dir().join("pod-logs");
    let mut reference = Bench::new(containerd.runtime().await, stage.reference.clone(), logs);
    let mut keep_both = keep.to_vec();
    keep_both.push(containerd.pid());
    let containerd_figures = measure(&mut reference, containerd.pid(), || containerd.shim_pids(), &keep_both).await;

    println!("{}", machine_note());
    println!("berth vs containerd {}, same CRI client, one connection each", containerd_version());
    print_rpcs("pod lifecycle (ms)", &POD_RPCS, &berth_figures.pod, &containerd_figures.pod);
    print_row("  whole pod lifecycle", &berth_figures.pod_total, &containerd_figures.pod_total);
    print_rpcs(
        "container lifecycle, a pod around it (ms)",
        &BERTH_STEPS,
        &berth_figures.container,
        &containerd_figures.container,
    );
    print_row("  whole container lifecycle", &berth_figures.container_total, &containerd_figures.container_total);
    print_rpcs(
        &format!("List calls with {LISTED} pods running a container each (ms)"),
        &LIST_RPCS,
        &berth_figures.lists,
        &containerd_figures.lists,
    );
    for (runtime, errors) in [("berth", &berth_figures.list_errors), ("containerd", &containerd_figures.list_errors)] {
        for error in errors.iter().take(1) {
            println!("  ({runtime} refused {error})");
        }
    }
    println!();
    println!("{CONCURRENT} concurrent RunPodSandbox calls (pods per second)");
    let (b, c) = (berth_figures.concurrent_pods_per_second, containerd_figures.concurrent_pods_per_second);
    println!("  {:<34} {b:>10.1} {c:>22.1} {:>10.2}x", "pods per second", b / c);
    println!();
    println!("memory (MiB)");
    let row = |name: &str, b: f64, c: f64| println!("  {name:<34} {b:>10.1} {c:>22.1} {:>10.2}", b / c);
    row("daemon RSS idle", mib(berth_figures.idle_rss_kib), mib(containerd_figures.idle_rss_kib));
    row(
        &format!("daemon RSS, {RUNNING} pods"),
        mib(berth_figures.loaded_rss_kib),
        mib(containerd_figures.loaded_rss_kib),
    );
    row(
        &format!("daemon RSS, {LISTED} pods"),
        mib(berth_figures.listed_rss_kib),
        mib(containerd_figures.listed_rss_kib),
    );
    row(
        &format!("daemon RSS after {CYCLES} more pod cycles"),
        mib(berth_figures.cycled_rss_kib),
        mib(containerd_figures.cycled_rss_kib),
    );
    let mean = |pss: &[u64]| mib(pss.iter().sum::<u64>() / pss.len().max(1) as u64);
    row(
        "per-pod helper PSS (monitor | shim)",
        mean(&berth_figures.helper_pss_kib),
        mean(&containerd_figures.helper_pss_kib),
    );
    drop(containerd);
    reap_zombie_children(&keep);
}

/// Everything for one runtime, in the order the figures are printed.
async fn measure(bench: &mut Bench, daemon: u32, helpers: impl Fn() -> Vec<u32>, keep: &[u32]) -> Figures {
    let mut figures = Figures::default();
    for i in 0..WARMUP + SAMPLES {
        let times = pod_cycle(bench, &format!("vp{i}")).await;
        if i >= WARMUP {
            for (rpc, time) in times.iter().enumerate() {
                figures.pod[rpc].push(*time);
            }
            figures.pod_total.push(times.iter().sum());
        }
        reap_zombie_children(keep);
    }
    for i in 0..WARMUP + SAMPLES {
        let times = bench.cycle(&format!("vc{i}")).await;
        if i >= WARMUP {
            for (rpc, time) in times.iter().enumerate() {
                figures.container[rpc].push(*time);
            }
            figures.container_total.push(times.iter().sum());
        }
        reap_zombie_children(keep);
    }
    figures.idle_rss_kib = status_kib(daemon, "VmRSS");
    figures.concurrent_pods_per_second = concurrent_pods(bench).await;
    reap_zombie_children(keep);

    let mut running = Vec::new();
    for i in 0..RUNNING {
        running.push(bench.start(&format!("vr{i}")).await.0);
    }
    figures.loaded_rss_kib = status_kib(daemon, "VmRSS");
    figures.helper_pss_kib = helpers().into_iter().map(|pid| rollup_kib(pid, "Pss")).collect();
    for i in RUNNING..LISTED {
        running.push(bench.start(&format!("vr{i}")).await.0);
    }
    figures.listed_rss_kib = status_kib(daemon, "VmRSS");
    (figures.lists, figures.list_errors) = list_calls(bench).await;
    for ids in running {
        bench.end(ids).await;
    }
    reap_zombie_children(keep);
    for i in 0..CYCLES {
        pod_cycle(bench, &format!("vy{i}")).await;
        reap_zombie_children(keep);
    }
    figures.cycled_rss_kib = status_kib(daemon, "VmRSS");
    figures
}

/// LIST_CALLS of each List call that kubelet makes every few seconds. A call
/// the runtime refuses is left out, and its error printed under the table
/// (containerd 1.6 refuses ListPodSandboxStats for pods without a cgroup
/// parent, which kubelet always gives but this bench does not).
async fn list_calls(bench: &mut Bench) -> ([Vec<Duration>; 3], Vec<String>) {
    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut errors = Vec::new();
    for _ in 0..LIST_CALLS {
        let started = Instant::now();
        let listed = bench.client.list_containers(ListContainersRequest::default()).await.expect("ListContainers");
        assert!(listed.into_inner().containers.len() >= LISTED);
        times[0].push(started.elapsed());
        let started = Instant::now();
        match bench.client.list_container_stats(ListContainerStatsRequest::default()).await {
            Ok(_) => times[1].push(started.elapsed()),
            Err(e) => errors.push(format!("ListContainerStats: {}", e.message())),
        }
        let started = Instant::now();
        match bench.client.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default()).await {
            Ok(_) => times[2].push(started.elapsed()),
            Err(e) => errors.push(format!("ListPodSandboxStats: {}", e.message())),
        }
    }
    errors.dedup();
    (times, errors)
}

/// RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox.
async fn pod_cycle(bench: &mut Bench, name: &str) -> [Duration; 4] {
    let started = Instant::now();
    let request = RunPodSandboxRequest { config: Some(pod_config(name)), runtime_handler: String::new() };
    let id = bench.client.run_pod_sandbox(request).await.expect("RunPodSandbox").into_inner().pod_sandbox_id;
    let ran = Instant::now();
    let request = PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false };
    bench.client.pod_sandbox_status(request).await.expect("PodSandboxStatus");
    let statused = Instant::now();
    let request = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
    bench.client.stop_pod_sandbox(request).await.expect("StopPodSandbox");
    let stopped = Instant::now();
    bench.client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }).await.expect("RemovePodSandbox");
    let removed = Instant::now();
    [ran - started, statused - ran, stopped - statused, removed - stopped]
}

/// Pods per second of CONCURRENT RunPodSandbox calls sent at once on the
/// bench's connection; the pods are removed afterwards, untimed.
async fn concurrent_pods(bench: &mut Bench) -> f64 {
    let started = Instant::now();
    let calls = (0..CONCURRENT).map(|i| {
        let mut client = bench.client.clone();
        async move {
            let request =
                RunPodSandboxRequest { config: Some(pod_config(&format!("vx{i}"))), runtime_handler: String::new() };
            client.run_pod_sandbox(request).await.expect("concurrent RunPodSandbox").into_inner().pod_sandbox_id
        }
    });
    let ids = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    for id in ids {
        let request = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
        bench.client.stop_pod_sandbox(request).await.expect("StopPodSandbox");
        bench
            .client
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .expect("RemovePodSandbox");
    }
    CONCURRENT as f64 / elapsed.as_secs_f64()
}

async fn pull(images: &mut ImageServiceClient<Channel>, image: &str) {
    let request = PullImageRequest {
        image: Some(ImageSpec { image: image.to_string(), ..Default::default() }),
        ..Default::default()
    };
    images.pull_image(request).await.unwrap_or_else(|e| panic!("containerd pulling {image}: {e}"));
}

fn containerd_version() -> String {
    let output =
        std::process::Command::new("containerd").arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&output).split_whitespace().nth(2).unwrap_or("?").to_string()
}

fn print_rpcs(title: &str, rpcs: &[&str], berth: &[Vec<Duration>], containerd: &[Vec<Duration>]) {
    println!();
    println!("{title:<36} {:>10} {:>10} {:>10} {:>10} {:>10}", "berth p50", "p95", "ctrd p50", "p95", "ratio p50");
    for (i, rpc) in rpcs.iter().enumerate() {
        print_row(&format!("  {rpc}"), &berth[i], &containerd[i]);
    }
}

fn print_row(name: &str, berth: &[Duration], containerd: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if berth.is_empty() || containerd.is_empty() {
        println!("{name:<36} {:>10}", "n/a: refused");
        return;
    }
    let (b50, b95) = (median(berth.to_vec()), percentile(berth.to_vec(), 95.0));
    let (c50, c95) = (median(containerd.to_vec()), percentile(containerd.to_vec(), 95.0));
    println!(
        "{name:<36} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.2}",
        ms(b50),
        ms(b95),
        ms(c50),
        ms(c95),
        b50.as_secs_f64() / c50.as_secs_f64()
    );
}
