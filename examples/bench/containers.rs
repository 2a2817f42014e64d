//! `bench containers`: pod + container cycles (RunPodSandbox, CreateContainer,
//! StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox) of a busybox `sleep 3600` on a private bridge network,
//! against the floor of the same container run by bare runc; then berth's and
//! the monitors' RSS with many pods running a container each. The stage, the
//! pods and the reaping of orphans are `shared.rs`'s.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;

use super::shared::{
    BERTH_STEPS, Stage, machine_note, mib, monitor_pids, reap_zombie_children, report_leftovers, rollup_kib,
};
use super::{median, ms, percentile, status_kib};
use crate::support::containers::{RUNC, runc_list};
use crate::support::image::BuiltImage;

/// How long writing a new process's PID into a cgroup takes, the first write
/// after a pause (as for a new container): the kernel's share of every create,
/// shown beside the runtimes' figures. In a bench-private cgroup of the pids
/// hierarchy (or the unified one on a pure v2 host).
fn first_cgroup_moves() -> Vec<Duration> {
    let root = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|root| root.join("cgroup.procs").exists())
        .expect("a cgroup hierarchy");
    let dir = root.join(format!("berth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench cgroup");
    let mut moves = Vec::new();
    for _ in 0..CYCLES {
        // Past a grace period, as between two creates: the next move starts cold.
        std::thread::sleep(Duration::from_millis(100));
        let mut child = Command::new("sleep").arg("60").spawn().expect("sleep");
        let started = Instant::now();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).expect("cgroup move");
        moves.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir(&dir);
    moves
}

/// Measured cycles, each for berth and for the runc floor.
const CYCLES: usize = 30;
/// Cycles run first and not counted.
const WARMUP: usize = 3;
/// Pods (one container each) running at once for the RSS figures.
const PODS: usize = 50;

/// The container's own steps in `BERTH_STEPS`: what the runc floor also does.
const CONTAINER_STEPS: std::ops::Range<usize> = 1..5;
pub(crate) const FLOOR_STEPS: [&str; 3] =
    ["runc run -d (create + start)", "runc kill --all KILL + exit", "runc delete"];

pub async fn containers() {
    let stage = Stage::start().await;
    eprintln!("bench: unpacking the image for runc...");
    // Dropped before the stage: force-deletes what runc's cycles left.
    let floor = RuncFloor::new(&stage.image);
    let (berth, network) = (&stage.berth, &stage.network);
    let keep = stage.keep();
    let mut bench = stage.bench().await;
    let mut internal = stage.bench_on("internal").await;

    eprintln!(
        "bench: container cycles on bridge {} ({}), {WARMUP} warm-up + {CYCLES} each for berth and runc...",
        network.bridge, network.subnet
    );
    for i in 0..WARMUP {
        bench.cycle(&format!("warm-{i}")).await;
        internal.cycle(&format!("warm-{i}")).await;
        reap_zombie_children(&keep);
        floor.cycle(&format!("warm-{i}")).await;
    }
    // Interleaved, alternating which goes first, so all see the same machine.
    let (mut berth_cycles, mut internal_cycles, mut floor_cycles) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..CYCLES {
        let name = format!("bench-{i}");
        if i % 2 == 0 {
            berth_cycles.push(bench.cycle(&name).await);
            internal_cycles.push(internal.cycle(&name).await);
            floor_cycles.push(floor.cycle(&name).await);
        } else {
            floor_cycles.push(floor.cycle(&name).await);
            internal_cycles.push(internal.cycle(&name).await);
            berth_cycles.push(bench.cycle(&name).await);
        }
        reap_zombie_children(&keep);
    }
    let pid = keep[0];
    let (cycles_rss_kib, cycles_peak_kib) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));

    eprintln!("bench: {PODS} pods with one container each...");
    let mut running = Vec::new();
    for i in 0..PODS {
        let (ids, _) = bench.start(&format!("rss-{i}")).await;
        running.push(ids);
    }
    let (rss_kib, peak_kib) = (status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM"));
    let monitors = monitor_pids(&berth.paths.run_root);
    let monitor_rss: Vec<u64> = monitors.iter().map(|&pid| status_kib(pid, "VmRSS")).collect();
    let monitor_pss: Vec<u64> = monitors.iter().map(|&pid| rollup_kib(pid, "Pss")).collect();
    for ids in running {
        bench.end(ids).await;
    }
    reap_zombie_children(&keep);
    report_leftovers(berth, network, Some(&floor.root));

    let berth_column = |step: usize| berth_cycles.iter().map(|c| c[step]).collect::<Vec<_>>();
    let floor_column = |step: usize| floor_cycles.iter().map(|c| c[step]).collect::<Vec<_>>();
    println!(
        "container cycle: busybox `sleep 3600` in a pod on a private bridge ({} {}, bridge + host-local + portmap), \
         {CYCLES} cycles after {WARMUP} warm-up",
        network.bridge, network.subnet
    );
    println!("StopContainer timeout 0 (SIGKILL at once: `sleep` as PID 1 ignores SIGTERM)");
    println!(
        "runc floor: bundle from `runc spec` on the same image's unpacked layer (a read-only directory, no overlay), \
         running sleep 3600, host net/ipc/uts (berth's container joins its pod's), own pid + mount"
    );
    println!("{}", machine_note());
    println!("{:<40} {:>10} {:>10}", "", "median ms", "p95 ms");
    let row = |name: &str, runs: Vec<Duration>| {
        let (median, p95) = (median(runs.clone()), percentile(runs, 95.0));
        println!("{name:<40} {:>10.2} {:>10.2}", ms(median), ms(p95));
        (median, p95)
    };
    row("berth cycle (pod + container)", berth_cycles.iter().map(|c| c.iter().sum()).collect());
    for (step, name) in BERTH_STEPS.iter().enumerate() {
        row(&format!("  {name}"), berth_column(step));
    }
    let (berth_median, berth_p95) = row(
        "berth container part (Create..Remove)",
        berth_cycles.iter().map(|c| c[CONTAINER_STEPS].iter().sum()).collect(),
    );
    let internal_column = |step: usize| internal_cycles.iter().map(|c| c[step]).collect::<Vec<_>>();
    row("internal handler cycle (pod + container)", internal_cycles.iter().map(|c| c.iter().sum()).collect());
    for (step, name) in BERTH_STEPS.iter().enumerate().filter(|(step, _)| CONTAINER_STEPS.contains(step)) {
        row(&format!("  {name}"), internal_column(step));
    }
    row(
        "internal container part (Create..Remove)",
        internal_cycles.iter().map(|c| c[CONTAINER_STEPS].iter().sum()).collect(),
    );
    row("runc handler Create + Start", berth_cycles.iter().map(|c| c[1] + c[2]).collect());
    row("internal handler Create + Start", internal_cycles.iter().map(|c| c[1] + c[2]).collect());
    let (floor_median, floor_p95) = row("runc floor cycle", floor_cycles.iter().map(|c| c.iter().sum()).collect());
    for (step, name) in FLOOR_STEPS.iter().enumerate() {
        row(&format!("  {name}"), floor_column(step));
    }
    row("kernel: a new process's first cgroup move", first_cgroup_moves());
    println!(
        "  (every runtime pays it once per container, runc and the internal handler alike; on cgroup v1 \
         the kernel waits out an RCU grace period for it, which the cgroup2 `favordynmods` mount option avoids)"
    );
    println!(
        "{:<40} {:>9.2}x {:>9.2}x",
        "berth container part / runc floor",
        berth_median.as_secs_f64() / floor_median.as_secs_f64(),
        berth_p95.as_secs_f64() / floor_p95.as_secs_f64()
    );
    println!("berth RSS after the cycles {:.1} MiB, peak (VmHWM) {:.1} MiB", mib(cycles_rss_kib), mib(cycles_peak_kib));
    println!();
    println!("{PODS} pods running one `sleep 3600` container each");
    println!("{:<40} {:>10} {:>10}", "", "median MiB", "max MiB");
    println!("{:<40} {:>10.1} {:>10.1}", "berth VmRSS / VmHWM", mib(rss_kib), mib(peak_kib));
    let (rss_median, rss_max) = median_max(monitor_rss);
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        format!("berth monitor VmRSS ({} found)", monitors.len()),
        rss_median,
        rss_max
    );
    let (pss_median, pss_max) = median_max(monitor_pss);
    println!("{:<40} {:>10.1} {:>10.1}", "berth monitor Pss (shared pages split)", pss_median, pss_max);
}

/// The median and the maximum of KiB figures, in MiB (0 for none).
fn median_max(mut kib: Vec<u64>) -> (f64, f64) {
    if kib.is_empty() {
        return (0.0, 0.0);
    }
    kib.sort_unstable();
    let mid = kib.len() / 2;
    let median = if kib.len() % 2 == 0 { (kib[mid - 1] + kib[mid]) as f64 / 2.0 } else { kib[mid] as f64 };
    (median / 1024.0, mib(kib[kib.len() - 1]))
}

/// The same container by bare runc, under the bench's own runc root: a bundle
/// made once (the image's layer unpacked, `runc spec` adjusted), then per
/// cycle `runc run -d`, `runc kill --all <id> KILL` and the exit reaped (the
/// bench is the container's subreaper, as a monitor is), `runc delete`.
pub(crate) struct RuncFloor {
    bundle: PathBuf,
    root: PathBuf,
    dir: tempfile::TempDir,
}

impl RuncFloor {
    pub(crate) fn new(image: &BuiltImage) -> RuncFloor {
        let dir = tempfile::Builder::new().prefix("bench-runc-").tempdir().expect("runc floor dir");
        let (bundle, root) = (dir.path().join("bundle"), dir.path().join("root"));
        let floor = RuncFloor { bundle, root, dir };
        let rootfs = floor.bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).expect("create rootfs dir");
        std::fs::create_dir_all(&floor.root).expect("create runc root");
        for digest in image.layer_digests() {
            let blob = image.blob(&digest).expect("the image's layer blob");
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
            archive.set_preserve_permissions(true);
            archive.unpack(&rootfs).expect("unpack the image's layer");
        }
        let output = Command::new(RUNC).arg("spec").arg("--bundle").arg(&floor.bundle).output().expect("runc spec");
        assert!(output.status.success(), "runc spec: {}", String::from_utf8_lossy(&output.stderr));
        let path = floor.bundle.join("config.json");
        let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).expect("read config.json")).expect("JSON");
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
        spec["root"]["path"] = rootfs.display().to_string().into();
        if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
            namespaces.retain(|ns| !matches!(ns["type"].as_str(), Some("network" | "ipc" | "uts")));
        }
        // A hostname needs a UTS namespace of its own.
        spec.as_object_mut().expect("the spec is an object").remove("hostname");
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("encode config.json")).expect("write config");
        floor
    }

    /// One cycle; the duration of each of `FLOOR_STEPS`.
    pub(crate) async fn cycle(&self, name: &str) -> [Duration; 3] {
        let id = format!("bench-{name}");
        let pid_file = self.dir.path().join("pid");
        let started = Instant::now();
        let run = ["run", "-d", "--pid-file"].map(OsStr::new);
        self.runc(
            &[&run[..], &[pid_file.as_os_str(), "--bundle".as_ref(), self.bundle.as_os_str(), id.as_ref()]].concat(),
        )
        .await;
        let ran = Instant::now();
        let pid: i32 = std::fs::read_to_string(&pid_file).expect("runc pid file").trim().parse().expect("a pid");
        self.runc(&["kill", "--all", &id, "KILL"].map(OsStr::new)).await;
        let reaped = tokio::task::spawn_blocking(move || waitpid(Pid::from_raw(pid), None)).await.expect("join");
        assert!(
            matches!(reaped, Ok(WaitStatus::Signaled(..) | WaitStatus::Exited(..))),
            "waiting for runc's container {pid}: {reaped:?}"
        );
        let killed = Instant::now();
        self.runc(&["delete", &id].map(OsStr::new)).await;
        let deleted = Instant::now();
        [ran - started, killed - ran, deleted - killed]
    }

    /// `runc --root <root> <args>`; panics with runc's stderr if it fails.
    async fn runc(&self, args: &[&OsStr]) {
        let stderr_path = self.dir.path().join("runc.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("runc stderr file");
        let status = tokio::process::Command::new(RUNC)
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .await
            .expect("run runc");
        assert!(
            status.success(),
            "runc {args:?} failed ({status}): {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        );
    }
}

impl Drop for RuncFloor {
    fn drop(&mut self) {
        // A cycle that failed midway leaves its container: force-delete it
        // (runc removes its cgroups); the reaper collects its process.
        for id in runc_list(&self.root) {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
