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
//! `bench all` runs each in turn. Whatever a benchmark made (containerd, registry,
//! berth, pods' mounts, netns pins, the bridge) is undone when it fails midway
//! and on SIGINT / SIGTERM: its future is dropped, and the guards' Drop run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use serde_json::Value;
use support::berth::{Berth, CNI_BIN_DIR};
use support::cni::TestNetwork;
use support::image::{BuiltImage, Compression, ImageBuilder, Layer};
use support::registry::Registry;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;

const MIB: f64 = 1024.0 * 1024.0;
const RUNS: usize = 3;
/// Measured pod cycles, each for berth and for the bare floor.
const POD_CYCLES: usize = 30;
/// Cycles run first and not counted: the bridge is created, caches are warm.
const POD_WARMUP: usize = 3;
const BENCHMARKS: [&str; 2] = ["images", "pods"];

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
                _ => pods().await,
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
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
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
        unmount_under(&self.root);
    }
}

/// Detaches every mount at or below `dir`, innermost first.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let points: Vec<&str> = mounts.lines().filter_map(|line| line.split_whitespace().nth(4)).collect();
    for point in points.into_iter().rev().filter(|point| Path::new(point).starts_with(dir)) {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}
