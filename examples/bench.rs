//! `hack/bench.sh` runs this: berth against the floor of doing the same work
//! with the reference tools, in the same run, on the same machine.
//!
//! `bench images`: cold pulls from a loopback registry, berth vs containerd's
//! `ctr images pull --plain-http` (Debian's containerd), and berth's peak RSS.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::{ImageSpec, PullImageRequest};
use support::berth::Berth;
use support::image::{BuiltImage, Compression, ImageBuilder, Layer};
use support::registry::Registry;

const MIB: f64 = 1024.0 * 1024.0;
const RUNS: usize = 3;

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "images".into());
    match what.as_str() {
        "images" => images().await,
        other => {
            eprintln!("bench: unknown benchmark {other:?} (known: images)");
            std::process::exit(2);
        }
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

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
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
    let rss = berth.pid().map(peak_rss_kib).unwrap_or(0);
    (elapsed, rss)
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
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
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.display().to_string();
        for line in mounts.lines() {
            if let Some(point) = line.split_whitespace().nth(4).filter(|p| p.starts_with(&root)) {
                let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}
