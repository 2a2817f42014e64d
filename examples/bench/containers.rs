//! `bench containers`: pod + container cycles (RunPodSandbox, CreateContainer,
//! StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
//! RemovePodSandbox) of a busybox `sleep 3600` on a private bridge network,
//! against the floor of the same container run by bare runc; then berth's and
//! the monitors' RSS with many pods running a container each.
//!
//! The bench process is made a child subreaper for the benchmark's length:
//! this host's PID 1 does not reap orphans, and both runc's detached
//! containers and berth's monitors are orphans by design. It reaps them, as a
//! normal init would, outside the timed sections.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, CreateContainerRequest, ImageSpec, PodSandboxConfig, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use serde_json::Value;
use tonic::transport::Channel;

use super::{median, ms, percentile, status_kib};
use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{RUNC, container, plain_http, runc_list};
use crate::support::image::{BuiltImage, ImageBuilder};
use crate::support::pods::pod_config;
use crate::support::registry::Registry;

/// Measured cycles, each for berth and for the runc floor.
const CYCLES: usize = 30;
/// Cycles run first and not counted.
const WARMUP: usize = 3;
/// Pods (one container each) running at once for the RSS figures.
const PODS: usize = 50;
const REPO: &str = "bench/busybox";

const BERTH_STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];
/// The container's own steps in `BERTH_STEPS`: what the runc floor also does.
const CONTAINER_STEPS: std::ops::Range<usize> = 1..5;
const FLOOR_STEPS: [&str; 3] = ["runc run -d (create + start)", "runc kill --all KILL + exit", "runc delete"];

pub async fn containers() {
    // Declared first, so dropped last: reaps whatever the guards below leave.
    let _reaper = Reaper::new();
    let network = TestNetwork::new();
    let registry = Registry::start().await;
    eprintln!("bench: building the busybox image, pushing it, unpacking it for runc...");
    let image = ImageBuilder::busybox().build();
    image.push(&registry, REPO, "latest").await;
    let reference = format!("{}/{REPO}:latest", registry.host());
    let floor = RuncFloor::new(&image);
    // Berth's drop stops it, force-deletes its runc containers, kills its
    // monitors and detaches whatever is still mounted under its directory.
    let berth = Berth::builder().cni_conflist(&network.conflist()).config(&plain_http(&registry.host())).start().await;
    let pull = PullImageRequest {
        image: Some(ImageSpec { image: reference.clone(), ..Default::default() }),
        ..Default::default()
    };
    berth.images().await.pull_image(pull).await.expect("berth pull");
    let keep = [berth.pid().expect("berth runs"), registry.pid()];
    let mut bench = Bench { client: berth.runtime().await, image: reference, logs: berth.dir().join("pod-logs") };

    eprintln!(
        "bench: container cycles on bridge {} ({}), {WARMUP} warm-up + {CYCLES} each for berth and runc...",
        network.bridge, network.subnet
    );
    for i in 0..WARMUP {
        bench.cycle(&format!("warm-{i}")).await;
        reap_zombie_children(&keep);
        floor.cycle(&format!("warm-{i}")).await;
    }
    // Interleaved, alternating which goes first, so both see the same machine.
    let (mut berth_cycles, mut floor_cycles) = (Vec::new(), Vec::new());
    for i in 0..CYCLES {
        let name = format!("bench-{i}");
        if i % 2 == 0 {
            berth_cycles.push(bench.cycle(&name).await);
            floor_cycles.push(floor.cycle(&name).await);
        } else {
            floor_cycles.push(floor.cycle(&name).await);
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
    report_leftovers(&berth, &network, &floor);

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
    let (floor_median, floor_p95) = row("runc floor cycle", floor_cycles.iter().map(|c| c.iter().sum()).collect());
    for (step, name) in FLOOR_STEPS.iter().enumerate() {
        row(&format!("  {name}"), floor_column(step));
    }
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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

/// Cores, kernel, cgroup layout and runc: what the figures depend on most.
fn machine_note() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "cgroup v2"
    } else if Path::new("/sys/fs/cgroup/unified").exists() {
        "cgroup v1 hybrid"
    } else {
        "cgroup v1"
    };
    let runc = Command::new(RUNC).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    let runc = String::from_utf8_lossy(&runc).lines().next().unwrap_or("runc ?").to_string();
    format!("machine: {cores} cores, Linux {}, {cgroups}, {runc}", kernel.trim())
}

/// A pod and its container, as berth named them.
struct Ids {
    pod: String,
    container: String,
}

/// berth's side: one connection, as kubelet keeps one.
struct Bench {
    client: RuntimeServiceClient<Channel>,
    image: String,
    /// The pods' log directories (under berth's temp dir, removed with it).
    logs: PathBuf,
}

impl Bench {
    /// A whole cycle; the duration of each of `BERTH_STEPS`.
    async fn cycle(&mut self, name: &str) -> [Duration; 7] {
        let (ids, [run, create, start]) = self.start(name).await;
        let [stop, remove, stop_pod, remove_pod] = self.end(ids).await;
        [run, create, start, stop, remove, stop_pod, remove_pod]
    }

    /// RunPodSandbox, CreateContainer, StartContainer.
    async fn start(&mut self, name: &str) -> (Ids, [Duration; 3]) {
        let mut pod: PodSandboxConfig = pod_config(name);
        pod.log_directory = self.logs.join(name).display().to_string();
        let config =
            ContainerConfig { command: vec!["sleep".into(), "3600".into()], ..container("sleep", &self.image) };
        let started = Instant::now();
        let request = RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: String::new() };
        let pod_id = self.client.run_pod_sandbox(request).await.expect("RunPodSandbox").into_inner().pod_sandbox_id;
        let ran = Instant::now();
        let request =
            CreateContainerRequest { pod_sandbox_id: pod_id.clone(), config: Some(config), sandbox_config: Some(pod) };
        let id = self.client.create_container(request).await.expect("CreateContainer").into_inner().container_id;
        let created = Instant::now();
        let request = StartContainerRequest { container_id: id.clone() };
        self.client.start_container(request).await.expect("StartContainer");
        let up = Instant::now();
        (Ids { pod: pod_id, container: id }, [ran - started, created - ran, up - created])
    }

    /// StopContainer (timeout 0), RemoveContainer, StopPodSandbox, RemovePodSandbox.
    async fn end(&mut self, ids: Ids) -> [Duration; 4] {
        let started = Instant::now();
        let request = StopContainerRequest { container_id: ids.container.clone(), timeout: 0 };
        self.client.stop_container(request).await.expect("StopContainer");
        let stopped = Instant::now();
        let request = RemoveContainerRequest { container_id: ids.container };
        self.client.remove_container(request).await.expect("RemoveContainer");
        let removed = Instant::now();
        let request = StopPodSandboxRequest { pod_sandbox_id: ids.pod.clone() };
        self.client.stop_pod_sandbox(request).await.expect("StopPodSandbox");
        let pod_stopped = Instant::now();
        let request = RemovePodSandboxRequest { pod_sandbox_id: ids.pod };
        self.client.remove_pod_sandbox(request).await.expect("RemovePodSandbox");
        let pod_removed = Instant::now();
        [stopped - started, removed - stopped, pod_stopped - removed, pod_removed - pod_stopped]
    }
}

/// The same container by bare runc, under the bench's own runc root: a bundle
/// made once (the image's layer unpacked, `runc spec` adjusted), then per
/// cycle `runc run -d`, `runc kill --all <id> KILL` and the exit reaped (the
/// bench is the container's subreaper, as a monitor is), `runc delete`.
struct RuncFloor {
    bundle: PathBuf,
    root: PathBuf,
    dir: tempfile::TempDir,
}

impl RuncFloor {
    fn new(image: &BuiltImage) -> RuncFloor {
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
    async fn cycle(&self, name: &str) -> [Duration; 3] {
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

/// The pids of the live `berth monitor` processes of the berth whose run root is `run_root`.
fn monitor_pids(run_root: &Path) -> Vec<u32> {
    let needle = run_root.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let monitor = cmdline.split(|&b| b == 0).any(|arg| arg == b"monitor");
        if monitor && cmdline.windows(needle.len()).any(|window| window == needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A KiB figure of `/proc/<pid>/smaps_rollup` (`Pss`: resident pages, shared
/// ones divided among their sharers).
fn rollup_kib(pid: u32, key: &str) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// After the RPCs have undone everything: says what berth left behind.
fn report_leftovers(berth: &Berth, network: &TestNetwork, floor: &RuncFloor) {
    let dir = berth.dir().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts: Vec<&str> = mountinfo.lines().filter(|line| line.contains(&dir)).collect();
    let monitors = monitor_pids(&berth.paths.run_root);
    let containers = runc_list(&berth.paths.run_root.join("runtimes/runc"));
    let floor_containers = runc_list(&floor.root);
    let (veths, ips) = (network.veths(), network.allocated_ips());
    if !mounts.is_empty() || !monitors.is_empty() || !containers.is_empty() || !floor_containers.is_empty() {
        eprintln!(
            "bench: WARNING: left after removing every pod: {} mounts under {dir}, monitors {monitors:?}, \
             runc containers {containers:?} (berth) {floor_containers:?} (floor)",
            mounts.len()
        );
        for mount in mounts {
            eprintln!("bench:   {mount}");
        }
    }
    if veths != 0 || !ips.is_empty() {
        eprintln!("bench: WARNING: {veths} veths and addresses {ips:?} left on {}", network.bridge);
    }
}

/// Reaps the zombies among the bench's children but `keep` (its own children,
/// which their owners wait for): the orphans it collected as subreaper.
fn reap_zombie_children(keep: &[u32]) {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if keep.contains(&pid) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(me) {
            let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Makes the bench a child subreaper; on drop (after every other guard of the
/// benchmark has stopped its processes), reaps every child left and stops being one.
struct Reaper;

impl Reaper {
    fn new() -> Reaper {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        Reaper
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = nix::sys::prctl::set_child_subreaper(false);
    }
}
