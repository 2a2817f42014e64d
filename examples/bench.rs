//! `hack/bench.sh` runs this: berth against the floor of doing the same work
//! with the reference tools, in the same run, on the same machine.
//!
//! `bench images`: cold pulls from a loopback registry, berth vs containerd's
//! `ctr images pull --plain-http` (Debian's containerd), and berth's peak RSS.
//!
//! `bench pods`: RunPodSandbox + StopPodSandbox + RemovePodSandbox cycles on a
//! private bridge network, berth vs the bare floor of the same CNI work done by
//! hand (a pinned netns, the conflist's plugins exec'd directly), and berth's RSS.
//!
//! `bench containers`: pod + container cycles of a busybox `sleep 3600` on a
//! private bridge network, berth vs the same container run by bare runc; berth's
//! and its monitors' RSS with 50 pods running a container each
//! (`bench/containers.rs`).
//!
//! `bench stats`: ListContainerStats, ListPodSandboxStats and ContainerStats
//! latency with 50 pods running a busybox `sleep 3600` each, and berth's RSS
//! after them (`bench/stats.rs`). The containers benchmarks share their stage
//! (`bench/shared.rs`).
//!
//! `bench streaming`: exec of `true` through Exec + SPDY against ExecSync and
//! bare `runc exec`, and 256 MiB of exec output through SPDY and WebSocket with
//! berth's RSS (`bench/streaming.rs`).
//!
//! `bench load`: ContainerStatus and ListPodSandbox latency from 20 concurrent
//! clients, idle and while a large pull commits and another image is removed
//! (`bench/load.rs`).
//!
//! `bench versus`: berth and Debian's containerd side by side through the same
//! CRI client: pod and container lifecycles per RPC, 50 concurrent pod starts,
//! daemon RSS and per-pod helper PSS (`bench/versus.rs`).
//!
//! `bench all` runs each in turn. Whatever a benchmark made (containerd, registry,
//! berth, pods' mounts, netns pins, the bridge, containers and their monitors,
//! runc's containers) is undone when it fails midway
//! and on SIGINT / SIGTERM: its future is dropped, and the guards' Drop run.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "bench/containerd.rs"]
mod containerd;
#[path = "bench/containers.rs"]
mod containers;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/shared.rs"]
mod shared;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/steps.rs"]
mod steps;
#[path = "bench/streaming.rs"]
mod streaming;
#[path = "bench/versus.rs"]
mod versus;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth::cri::v1::{
    ImageSpec, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use serde_json::Value;
use support::berth::{Berth, CNI_BIN_DIR, unmount_everything_under};
use support::cni::TestNetwork;
use support::image::{BuiltImage, Compression, ImageBuilder, Layer};
use support::pods::pod_config;
use support::registry::Registry;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

const MIB: f64 = 1024.0 * 1024.0;
const RUNS: usize = 3;
/// Measured pod cycles, each for berth and for the bare floor.
const POD_CYCLES: usize = 30;
/// Cycles run first and not counted: the bridge is created, caches are warm.
const POD_WARMUP: usize = 3;
const BENCHMARKS: [&str; 7] = ["images", "pods", "containers", "stats", "streaming", "load", "versus"];

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "images".into());
    let chosen: Vec<&str> = match what.as_str() {
        "all" => BENCHMARKS.to_vec(),
        one if BENCHMARKS.contains(&one) => vec![one],
        other => {
            eprintln!("bench: unknown benchmark {other:?} (known: {}, all)", BENCHMARKS.join(", "));
            std::process::exit(2);
        }
    };
    let run = async {
        for (i, name) in chosen.iter().enumerate() {
            if i > 0 {
                println!();
            }
            match *name {
                "images" => images().await,
                "pods" => pods().await,
                "containers" => containers::containers().await,
                "stats" => stats::stats().await,
                "load" => load::load().await,
                "versus" => versus::versus().await,
                _ => streaming::streaming().await,
            }
        }
    };
    // select! drops the benchmark's future before this returns, so its guards clean up.
    let interrupted = tokio::select! {
        () = run => false,
        () = termination() => true,
    };
    if interrupted {
        eprintln!("bench: interrupted; what it had made is cleaned up");
        std::process::exit(130);
    }
}

async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

struct Case {
    name: &'static str,
    repo: &'static str,
    image: BuiltImage,
}

async fn images() {
    let registry = Registry::start().await;
    eprintln!("bench: building images (4 x 64 MiB random layers, busybox)...");
    let mut big = ImageBuilder::new();
    for seed in 0..4 {
        big = big.layer(Layer::random(64 << 20, seed), Compression::Gzip);
    }
    let cases = [
        Case { name: "4 x 64 MiB random", repo: "bench/big", image: big.cmd(["sh"]).build() },
        Case { name: "busybox", repo: "bench/busybox", image: ImageBuilder::busybox().build() },
    ];
    for case in &cases {
        case.image.push(&registry, case.repo, "latest").await;
    }

    println!("cold pull from a loopback registry, gzip layers ({RUNS} runs each, median)");
    println!(
        "{:<20} {:>9} {:>12} {:>9} {:>12} {:>15}",
        "image", "berth s", "berth MiB/s", "ctr s", "ctr MiB/s", "berth peak RSS"
    );
    for case in &cases {
        let reference = format!("{}/{}:latest", registry.host(), case.repo);
        let size = case.image.size() as f64;
        let mut berth_runs = Vec::new();
        let mut peak_rss_kib = 0;
        for _ in 0..RUNS {
            let (elapsed, rss) = berth_pull(&registry, &reference).await;
            berth_runs.push(elapsed);
            peak_rss_kib = peak_rss_kib.max(rss);
        }
        let ctr_runs: Vec<Duration> = (0..RUNS).map(|_| ctr_pull(&reference)).collect();
        let (berth, ctr) = (median(berth_runs), median(ctr_runs));
        println!(
            "{:<20} {:>9.3} {:>12.1} {:>9.3} {:>12.1} {:>11.1} MiB",
            case.name,
            berth.as_secs_f64(),
            size / MIB / berth.as_secs_f64(),
            ctr.as_secs_f64(),
            size / MIB / ctr.as_secs_f64(),
            peak_rss_kib as f64 / 1024.0
        );
    }
}

/// The middle run; the mean of the two middle ones for an even count.
fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    let mid = runs.len() / 2;
    if runs.len() % 2 == 0 { (runs[mid - 1] + runs[mid]) / 2 } else { runs[mid] }
}

/// The nearest-rank percentile `p` (0-100] of `runs`.
fn percentile(mut runs: Vec<Duration>, p: f64) -> Duration {
    runs.sort();
    let rank = (p / 100.0 * runs.len() as f64).ceil() as usize;
    runs[rank.clamp(1, runs.len()) - 1]
}

/// A fresh berth (empty state), one PullImage; returns its duration and berth's
/// peak resident memory (VmHWM, KiB) since it started.
async fn berth_pull(registry: &Registry, reference: &str) -> (Duration, u64) {
    let berth =
        Berth::builder().config(&format!("[registries.\"{}\"]\nplain_http = true\n", registry.host())).start().await;
    let mut client = berth.images().await;
    let request = PullImageRequest {
        image: Some(ImageSpec { image: reference.to_string(), ..Default::default() }),
        ..Default::default()
    };
    let started = Instant::now();
    client.pull_image(request).await.expect("berth pull");
    let elapsed = started.elapsed();
    let rss = berth.pid().map(|pid| status_kib(pid, "VmHWM")).unwrap_or(0);
    (elapsed, rss)
}

/// A KiB figure of `/proc/<pid>/status`: `VmRSS` (resident now), `VmHWM` (its peak).
fn status_kib(pid: u32, key: &str) -> u64 {
    proc_kib(pid, "status", key)
}

/// The `key: N kB` line of `/proc/<pid>/<file>`; 0 when the process is gone.
fn proc_kib(pid: u32, file: &str, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A fresh containerd (own root, state and socket; CRI plugin off), one
/// `ctr images pull --plain-http`, which also unpacks into overlayfs.
fn ctr_pull(reference: &str) -> Duration {
    let dir = tempfile::Builder::new().prefix("bench-containerd-").tempdir().expect("temp dir");
    let containerd = Containerd::start(dir.path());
    let started = Instant::now();
    let status = Command::new("ctr")
        .args(["--address", &containerd.socket, "images", "pull", "--plain-http", reference])
        .stdout(Stdio::null())
        .status()
        .expect("run ctr");
    let elapsed = started.elapsed();
    assert!(status.success(), "ctr pull failed");
    drop(containerd);
    elapsed
}

struct Containerd {
    child: Child,
    socket: String,
    root: PathBuf,
}

impl Containerd {
    fn start(dir: &Path) -> Containerd {
        let root = dir.join("root");
        let socket = dir.join("containerd.sock").display().to_string();
        let config = dir.join("config.toml");
        let text = format!(
            "version = 2\nroot = {root:?}\nstate = {state:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\naddress = {socket:?}\n[ttrpc]\naddress = \"{socket}.ttrpc\"\n",
            state = dir.join("state"),
        );
        std::fs::write(&config, text).expect("write containerd config");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start containerd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(&socket).exists() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Containerd { child, socket, root }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // containerd leaves no mounts after a pull, but be sure before its root is deleted.
        unmount_everything_under(&self.root);
    }
}

/// One pod cycle's durations.
struct PodCycle {
    total: Duration,
    run: Duration,
    stop: Duration,
    remove: Duration,
}

/// One bare cycle's durations: making the pod's network, then unmaking it.
struct BareCycle {
    total: Duration,
    up: Duration,
    down: Duration,
}

/// berth's cycles and the bare ones interleave (alternating which goes first),
/// so both see the same machine: on two cores, whatever else runs would
/// otherwise tilt the ratio.
async fn pods() {
    let network = TestNetwork::new();
    let conflist = network.conflist();
    let bare = Bare::new(&conflist);
    // Berth's drop stops it and detaches whatever a failed cycle left mounted.
    let berth = Berth::builder().cni_conflist(&conflist).start().await;
    let mut client = berth.runtime().await;
    eprintln!(
        "bench: pod cycles on bridge {} ({}), {POD_WARMUP} warm-up + {POD_CYCLES} each for berth and bare...",
        network.bridge, network.subnet
    );
    for i in 0..POD_WARMUP {
        pod_cycle(&mut client, &format!("warm-{i}")).await;
        bare.cycle().await;
    }
    let (mut berth_cycles, mut bare_cycles) = (Vec::new(), Vec::new());
    for i in 0..POD_CYCLES {
        if i % 2 == 0 {
            berth_cycles.push(pod_cycle(&mut client, &format!("bench-{i}")).await);
            bare_cycles.push(bare.cycle().await);
        } else {
            bare_cycles.push(bare.cycle().await);
            berth_cycles.push(pod_cycle(&mut client, &format!("bench-{i}")).await);
        }
    }
    let pid = berth.pid().expect("berth runs");
    let (rss_kib, peak_kib) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    let (veths, ips) = (network.veths(), network.allocated_ips());
    if veths != 0 || !ips.is_empty() {
        eprintln!("bench: WARNING: {veths} veths and addresses {ips:?} left on {}", network.bridge);
    }

    let berth_column = |pick: fn(&PodCycle) -> Duration| berth_cycles.iter().map(pick).collect::<Vec<_>>();
    let bare_column = |pick: fn(&BareCycle) -> Duration| bare_cycles.iter().map(pick).collect::<Vec<_>>();
    println!(
        "pod sandbox cycle (RunPodSandbox + StopPodSandbox + RemovePodSandbox), bridge + host-local + portmap, \
         {POD_CYCLES} cycles after {POD_WARMUP} warm-up"
    );
    println!("{:<36} {:>10} {:>10}", "", "median ms", "p95 ms");
    let row = |name: &str, runs: Vec<Duration>| {
        let (median, p95) = (median(runs.clone()), percentile(runs, 95.0));
        println!("{name:<36} {:>10.2} {:>10.2}", ms(median), ms(p95));
        (median, p95)
    };
    let (berth_median, berth_p95) = row("berth cycle", berth_column(|c| c.total));
    row("  RunPodSandbox", berth_column(|c| c.run));
    row("  StopPodSandbox", berth_column(|c| c.stop));
    row("  RemovePodSandbox", berth_column(|c| c.remove));
    let (bare_median, bare_p95) = row("bare floor cycle", bare_column(|c| c.total));
    row("  pin netns + ADD (lo, then list)", bare_column(|c| c.up));
    row("  DEL (list reversed, lo) + unpin", bare_column(|c| c.down));
    println!(
        "{:<36} {:>9.2}x {:>9.2}x",
        "berth / bare",
        berth_median.as_secs_f64() / bare_median.as_secs_f64(),
        berth_p95.as_secs_f64() / bare_p95.as_secs_f64()
    );
    println!(
        "berth RSS after the cycles {:.1} MiB, peak (VmHWM) {:.1} MiB",
        rss_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One RunPodSandbox + StopPodSandbox + RemovePodSandbox, on the one
/// connection kubelet would keep.
async fn pod_cycle(client: &mut RuntimeServiceClient<Channel>, name: &str) -> PodCycle {
    let request = RunPodSandboxRequest { config: Some(pod_config(name)), runtime_handler: String::new() };
    let started = Instant::now();
    let id = client.run_pod_sandbox(request).await.expect("RunPodSandbox").into_inner().pod_sandbox_id;
    let ran = Instant::now();
    client.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await.expect("StopPodSandbox");
    let stopped = Instant::now();
    client.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }).await.expect("RemovePodSandbox");
    let removed = Instant::now();
    PodCycle { total: removed - started, run: ran - started, stop: stopped - ran, remove: removed - stopped }
}

/// The same CNI work by hand, with the same conflist: per cycle, a netns
/// pinned as berth pins it (unshare on a thread, bind mount of
/// /proc/thread-self/ns/net), ADD of loopback (`lo`) then of each plugin of
/// the list (`eth0`, each given the previous result), DEL of the list in
/// reverse then of loopback (given the last result, as a CNI cache would), and
/// the pin removed.
struct Bare {
    conflist: Value,
    /// Where the pins go; removed on drop, after each cycle's pin is.
    pins: tempfile::TempDir,
}

impl Bare {
    fn new(conflist: &str) -> Bare {
        Bare {
            conflist: serde_json::from_str(conflist).expect("conflist is JSON"),
            pins: tempfile::Builder::new().prefix("bench-netns-").tempdir().expect("netns pin dir"),
        }
    }

    async fn cycle(&self) -> BareCycle {
        let loopback = serde_json::json!({"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"});
        let plugins = self.conflist["plugins"].as_array().expect("conflist plugins");
        let plugin_config = |plugin: &Value, prev_result: Option<&Value>| {
            let mut config = plugin.clone();
            config["name"] = self.conflist["name"].clone();
            config["cniVersion"] = self.conflist["cniVersion"].clone();
            if let Some(result) = prev_result {
                config["prevResult"] = result.clone();
            }
            config
        };
        let id = berth::ids::new_id();

        let started = Instant::now();
        let netns = PinnedNetns::new(self.pins.path().join(&id[..16]));
        let cni = |command, ifname, config| run_plugin(command, &id, &netns.path, ifname, config);
        cni("ADD", "lo", loopback.clone()).await;
        let mut result = None;
        for plugin in plugins {
            let added = cni("ADD", "eth0", plugin_config(plugin, result.as_ref())).await;
            result = Some(added.expect("ADD prints a result"));
        }
        let up = started.elapsed();
        for plugin in plugins.iter().rev() {
            cni("DEL", "eth0", plugin_config(plugin, result.as_ref())).await;
        }
        cni("DEL", "lo", loopback).await;
        drop(netns);
        let total = started.elapsed();
        BareCycle { total, up, down: total - up }
    }
}

/// Execs plugin `config["type"]` from the CNI bin dir per the CNI spec, and
/// returns its result, if it printed one. Panics if it fails.
async fn run_plugin(command: &str, id: &str, netns: &Path, ifname: &str, config: Value) -> Option<Value> {
    let kind = config["type"].as_str().expect("plugin type").to_string();
    let mut child = tokio::process::Command::new(Path::new(CNI_BIN_DIR).join(&kind))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_BIN_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {kind}: {e}"));
    let stdin = serde_json::to_vec(&config).expect("encode plugin config");
    child.stdin.take().expect("piped stdin").write_all(&stdin).await.expect("write plugin stdin");
    let output = child.wait_with_output().await.expect("wait for plugin");
    assert!(
        output.status.success(),
        "{kind} {command} {ifname} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice(&output.stdout).expect("plugin result is JSON"))
}

/// A new network namespace, pinned by a bind mount at `path` as berth (and
/// cri-o's pinns, and `ip netns add`) pin one; unpinned and removed on drop,
/// which frees it and whatever interfaces are left in it.
struct PinnedNetns {
    path: PathBuf,
}

impl PinnedNetns {
    fn new(path: PathBuf) -> PinnedNetns {
        use nix::mount::{MsFlags, mount};
        use nix::sched::{CloneFlags, unshare};
        std::fs::File::create(&path).expect("create netns pin");
        let pin = PinnedNetns { path };
        let target = pin.path.clone();
        // unshare(CLONE_NEWNET) moves only the calling thread: a throwaway one.
        let pinned = std::thread::spawn(move || -> nix::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        });
        pinned.join().expect("netns thread").expect("pin a new netns");
        pin
    }
}

impl Drop for PinnedNetns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.path);
    }
}
