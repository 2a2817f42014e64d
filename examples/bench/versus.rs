//! `bench versus`: berth and Debian's containerd side by side, in one run, on
//! the same machine, driven by the same CRI client code (`shared::Bench`, one
//! connection each, as kubelet keeps one): the pod lifecycle and the container
//! lifecycle per RPC, with the bare floor of the same work (the CNI plugins and
//! runc run by hand) and berth's own breakdown of each RPC into its steps
//! (`steps.rs`); the container lifecycle on berth's internal runtime too; 50
//! concurrent RunPodSandbox calls; the List calls kubelet makes with 100 pods;
//! a cold pull through PullImage; and each daemon's memory idle, with 50 and
//! 100 pods and after 200 more pod cycles, with its per-pod helpers (berth's
//! monitors; containerd's shims).
//!
//! Both pull the same images from the same loopback registry, attach pods to
//! the same bridge, and get the same cgroup parent per pod (as kubelet gives
//! one); containerd's sandbox image is the suite's pause look-alike (berth
//! runs no infra process for these pods: their PID namespace is per
//! container, as kubelet asks by default).

use std::path::Path;
use std::time::{Duration, Instant};

use berth::cri::v1::image_service_client::ImageServiceClient;
use berth::cri::v1::{
    ImageSpec, ListContainerStatsRequest, ListContainersRequest, ListPodSandboxStatsRequest, PodSandboxStatusRequest,
    PullImageRequest, RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

use super::containerd::CriContainerd;
use super::containers::{FLOOR_STEPS, RuncFloor};
use super::shared::{
    BERTH_STEPS, Bench, BenchCgroups, Stage, machine_note, mib, monitor_pids, reap_zombie_children, rollup_kib,
};
use super::steps::{Scrape, print_breakdown, scrape};
use crate::support::critest_images::helper;
use crate::support::image::{Compression, ImageBuilder, Layer};
use crate::{Bare, median, percentile, status_kib};

const SAMPLES: usize = 50;
const WARMUP: usize = 3;
const CONCURRENT: usize = 50;
const RUNNING: usize = 50;
/// The node the List calls are timed on.
const LISTED: usize = 100;
const LIST_CALLS: usize = 20;
/// Pod cycles after which the daemon's memory should be back near idle.
const CYCLES: usize = 200;
/// How long a daemon is left alone before its memory is read.
const SETTLE: Duration = Duration::from_secs(3);
/// Cold pulls of the big image, each runtime in turn, the image removed between.
const PULLS: usize = 3;
/// Layers of the cold-pull image, each of this many random (incompressible) bytes.
const PULL_LAYERS: u64 = 4;
const PULL_LAYER_BYTES: u64 = 64 << 20;

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
    idle: Memory,
    loaded: Memory,
    /// Per helper: its PSS, and of it the anonymous pages and the private
    /// dirty pages of its executable's mapping (what the loader relocated).
    helpers: Vec<[u64; 3]>,
    /// With LISTED pods, each running a container: ListContainers,
    /// ListContainerStats, ListPodSandboxStats.
    lists: [Vec<Duration>; 3],
    list_errors: Vec<String>,
    listed: Memory,
    /// After CYCLES more pod lifecycles, with nothing running.
    cycled: Memory,
    /// berth's metrics around the measured pod lifecycles and container
    /// lifecycles (none for containerd).
    pod_steps: Option<(Scrape, Scrape)>,
    container_steps: Option<(Scrape, Scrape)>,
    cold_pulls: Vec<Duration>,
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
    eprintln!("bench: building the cold-pull image ({PULL_LAYERS} x {} MiB random layers)...", PULL_LAYER_BYTES >> 20);
    let mut big = ImageBuilder::new();
    for seed in 0..PULL_LAYERS {
        big = big.layer(Layer::random(PULL_LAYER_BYTES, seed), Compression::Gzip);
    }
    big.cmd(["sh"]).build().push(&stage.registry, "bench/big", "latest").await;
    let big = format!("{}/bench/big:latest", stage.registry.host());
    let containerd = CriContainerd::start(&stage.registry.host(), &stage.network.conflist(), &sandbox_image).await;
    let mut images = containerd.images().await;
    for image in [&stage.reference, &sandbox_image] {
        pull(&mut images, image).await;
    }
    // Dropped after both runtimes removed their pods: runc left each pod's parent.
    let cgroups = BenchCgroups::new();
    eprintln!("bench: berth and containerd ready; {SAMPLES} samples of each lifecycle, each runtime in turn...");

    let mut berth = stage.bench().await.with_cgroup_parent(&cgroups);
    let monitors = || monitor_pids(&stage.berth.paths.run_root);
    let berth_figures = measure(&mut berth, stage.berth_pid(), monitors, &keep, Some(&stage.metrics)).await;
    let mut internal = stage.bench_on("internal").await.with_cgroup_parent(&cgroups);
    let internal_container = container_cycles(&mut internal, &keep).await;
    let logs = containerd.dir().join("pod-logs");
    let mut reference =
        Bench::new(containerd.runtime().await, stage.reference.clone(), logs).with_cgroup_parent(&cgroups);
    let mut keep_both = keep.to_vec();
    keep_both.push(containerd.pid());
    let mut containerd_figures =
        measure(&mut reference, containerd.pid(), || containerd.shim_pids(), &keep_both, None).await;

    eprintln!("bench: the floor: the CNI plugins and runc by hand...");
    let bare = Bare::new(&stage.network.conflist());
    let mut bare_cycles = Vec::new();
    for i in 0..WARMUP + SAMPLES {
        let cycle = bare.cycle().await;
        if i >= WARMUP {
            bare_cycles.push(cycle);
        }
    }
    let floor = RuncFloor::new(&stage.image);
    let mut runc_cycles = Vec::new();
    for i in 0..WARMUP + SAMPLES {
        let cycle = floor.cycle(&format!("versus-{i}")).await;
        if i >= WARMUP {
            runc_cycles.push(cycle);
        }
        reap_zombie_children(&keep_both);
    }
    drop(floor);

    eprintln!("bench: {PULLS} cold pulls of {big} on each...");
    let mut berth_images = stage.berth.images().await;
    let mut berth_pulls = Vec::new();
    for _ in 0..PULLS {
        berth_pulls.push(cold_pull(&mut berth_images, &big).await);
        containerd_figures.cold_pulls.push(cold_pull(&mut images, &big).await);
    }
    settle().await;
    let pulled = (Memory::of(stage.berth_pid()), Memory::of(containerd.pid()));

    println!("{}", machine_note());
    println!("berth vs containerd {}, same CRI client, one connection each", containerd_version());
    print_rpcs("pod lifecycle (ms)", &POD_RPCS, &berth_figures.pod, &containerd_figures.pod);
    print_row("  whole pod lifecycle", &berth_figures.pod_total, &containerd_figures.pod_total);
    let bare_column = |pick: fn(&crate::BareCycle) -> Duration| bare_cycles.iter().map(pick).collect::<Vec<_>>();
    print_floor("  floor: CNI ADD of lo and the list, by hand", &bare_column(|c| c.up));
    print_floor("  floor: CNI DEL of the list and lo, by hand", &bare_column(|c| c.down));
    print_floor("  floor: the whole, netns pin included", &bare_column(|c| c.total));
    print_rpcs(
        "container lifecycle, a pod around it (ms)",
        &BERTH_STEPS,
        &berth_figures.container,
        &containerd_figures.container,
    );
    print_row("  whole container lifecycle", &berth_figures.container_total, &containerd_figures.container_total);
    for (step, name) in FLOOR_STEPS.iter().enumerate() {
        print_floor(&format!("  floor: {name}"), &runc_cycles.iter().map(|c| c[step]).collect::<Vec<_>>());
    }
    let (internal_rpcs, internal_total) = internal_container;
    print_rpcs(
        "the same on berth's internal runtime (ms)",
        &BERTH_STEPS,
        &internal_rpcs,
        &containerd_figures.container,
    );
    print_row("  whole container lifecycle", &internal_total, &containerd_figures.container_total);
    println!();
    print_row(
        &format!("cold pull, {PULL_LAYERS} x {} MiB gzip layers (ms)", PULL_LAYER_BYTES >> 20),
        &berth_pulls,
        &containerd_figures.cold_pulls,
    );
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
    let memory_rows = |name: &str, b: &Memory, c: &Memory| {
        row(&format!("daemon RSS {name}"), mib(b.rss_kib), mib(c.rss_kib));
        row("  of it anonymous (heap, stacks)", mib(b.anon_kib), mib(c.anon_kib));
    };
    memory_rows("idle", &berth_figures.idle, &containerd_figures.idle);
    memory_rows(&format!("with {RUNNING} pods"), &berth_figures.loaded, &containerd_figures.loaded);
    memory_rows(&format!("with {LISTED} pods"), &berth_figures.listed, &containerd_figures.listed);
    memory_rows(&format!("after {CYCLES} more pod cycles"), &berth_figures.cycled, &containerd_figures.cycled);
    memory_rows(&format!("after the {PULLS} cold pulls"), &pulled.0, &pulled.1);
    let mean = |helpers: &[[u64; 3]], i: usize| {
        mib(helpers.iter().map(|figures| figures[i]).sum::<u64>() / helpers.len().max(1) as u64)
    };
    let (b, c) = (&berth_figures.helpers, &containerd_figures.helpers);
    row("per-pod helper PSS (monitor | shim)", mean(b, 0), mean(c, 0));
    row("  of it anonymous", mean(b, 1), mean(c, 1));
    row("  of it the binary's relocated pages", mean(b, 2), mean(c, 2));
    if let Some((before, after)) = &berth_figures.pod_steps {
        print_breakdown("where berth's pod lifecycle goes", &POD_RPCS, before, after);
    }
    if let Some((before, after)) = &berth_figures.container_steps {
        print_breakdown("where berth's container lifecycle goes (runc)", &BERTH_STEPS, before, after);
    }
    drop(containerd);
    reap_zombie_children(&keep);
    drop(cgroups);
}

/// Everything for one runtime, in the order the figures are printed.
/// `metrics`: berth's endpoint, for its steps.
async fn measure(
    bench: &mut Bench,
    daemon: u32,
    helpers: impl Fn() -> Vec<u32>,
    keep: &[u32],
    metrics: Option<&str>,
) -> Figures {
    let mut figures = Figures::default();
    let mut before = None;
    for i in 0..WARMUP + SAMPLES {
        if i == WARMUP {
            before = metrics.map(scrape);
        }
        let times = pod_cycle(bench, &format!("vp{i}")).await;
        if i >= WARMUP {
            for (rpc, time) in times.iter().enumerate() {
                figures.pod[rpc].push(*time);
            }
            figures.pod_total.push(times.iter().sum());
        }
        reap_zombie_children(keep);
    }
    figures.pod_steps = before.zip(metrics.map(scrape));
    let before = metrics.map(scrape);
    (figures.container, figures.container_total) = container_cycles(bench, keep).await;
    figures.container_steps = before.zip(metrics.map(scrape));
    settle().await;
    figures.idle = Memory::of(daemon);
    figures.concurrent_pods_per_second = concurrent_pods(bench).await;
    reap_zombie_children(keep);

    let mut running = Vec::new();
    for i in 0..RUNNING {
        running.push(bench.start(&format!("vr{i}")).await.0);
    }
    settle().await;
    figures.loaded = Memory::of(daemon);
    figures.helpers = helpers().into_iter().map(helper_memory).collect();
    for i in RUNNING..LISTED {
        running.push(bench.start(&format!("vr{i}")).await.0);
    }
    settle().await;
    figures.listed = Memory::of(daemon);
    (figures.lists, figures.list_errors) = list_calls(bench).await;
    for ids in running {
        bench.end(ids).await;
    }
    reap_zombie_children(keep);
    for i in 0..CYCLES {
        pod_cycle(bench, &format!("vy{i}")).await;
        reap_zombie_children(keep);
    }
    settle().await;
    figures.cycled = Memory::of(daemon);
    figures
}

/// A daemon's resident memory, and the anonymous part of it (what it
/// allocated; the rest is its code and libraries, shared page cache).
#[derive(Default)]
struct Memory {
    rss_kib: u64,
    anon_kib: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        Memory { rss_kib: status_kib(pid, "VmRSS"), anon_kib: status_kib(pid, "RssAnon") }
    }
}

/// A helper's PSS, its anonymous PSS, and the private dirty pages of the
/// mappings of its own executable (the loader's relocations of a PIE binary).
fn helper_memory(pid: u32) -> [u64; 3] {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let (mut in_exe, mut relocated) = (false, 0);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Private_Dirty:") if in_exe => relocated += words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
            Some(first) if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
                in_exe = line.split_whitespace().nth(5).is_some_and(|path| Path::new(path) == exe);
            }
            _ => {}
        }
    }
    [rollup_kib(pid, "Pss"), rollup_kib(pid, "Pss_Anon"), relocated]
}

/// Lets a daemon settle before its memory is read, as a node does between
/// bursts of calls: berth hands free memory back a second after the last call
/// that freed much, Go's scavenger returns memory in the background.
async fn settle() {
    tokio::time::sleep(SETTLE).await;
}

/// The container lifecycle, WARMUP + SAMPLES times: each RPC's times and the whole's.
async fn container_cycles(bench: &mut Bench, keep: &[u32]) -> ([Vec<Duration>; 7], Vec<Duration>) {
    let (mut rpcs, mut total): ([Vec<Duration>; 7], Vec<Duration>) = Default::default();
    for i in 0..WARMUP + SAMPLES {
        let times = bench.cycle(&format!("vc{i}")).await;
        if i >= WARMUP {
            for (rpc, time) in times.iter().enumerate() {
                rpcs[rpc].push(*time);
            }
            total.push(times.iter().sum());
        }
        reap_zombie_children(keep);
    }
    (rpcs, total)
}

/// LIST_CALLS of each List call that kubelet makes every few seconds. A call
/// the runtime refuses is left out, and its error printed under the table
/// (containerd 1.6 refuses ListPodSandboxStats for pods without a cgroup
/// parent, which kubelet always gives, and so does this bench).
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
    let request = RunPodSandboxRequest { config: Some(bench.pod(name)), runtime_handler: String::new() };
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
        let config = bench.pod(&format!("vx{i}"));
        async move {
            let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
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
    images.pull_image(request).await.unwrap_or_else(|e| panic!("pulling {image}: {e}"));
}

/// One PullImage of `image`, timed, then RemoveImage (untimed), so that the
/// next pull is cold again.
async fn cold_pull(images: &mut ImageServiceClient<Channel>, image: &str) -> Duration {
    let started = Instant::now();
    pull(images, image).await;
    let elapsed = started.elapsed();
    let request = RemoveImageRequest { image: Some(ImageSpec { image: image.to_string(), ..Default::default() }) };
    images.remove_image(request).await.unwrap_or_else(|e| panic!("removing {image}: {e}"));
    elapsed
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

/// A floor figure, in the berth columns (the same work without a runtime).
fn print_floor(name: &str, floor: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{name:<36} {:>10.1} {:>10.1}", ms(median(floor.to_vec())), ms(percentile(floor.to_vec(), 95.0)));
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
