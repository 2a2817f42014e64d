//! What the benchmarks that run containers share: the stage (a private bridge,
//! a loopback registry with busybox, a release berth that has pulled it, and
//! the bench made a child subreaper), pods running a busybox `sleep 3600`
//! driven on one connection, the reaping of orphans, and the checks and notes
//! printed around the figures.
//!
//! The bench process is made a child subreaper for the benchmark's length:
//! this host's PID 1 does not reap orphans, and both runc's detached
//! containers and berth's monitors are orphans by design. It reaps them, as a
//! normal init would, outside the timed sections.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth::cri::v1::{
    ContainerConfig, CreateContainerRequest, ImageSpec, PodSandboxConfig, PullImageRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tonic::transport::Channel;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{RUNC, container, plain_http, runc_list};
use crate::support::image::{BuiltImage, ImageBuilder};
use crate::support::pods::pod_config;
use crate::support::registry::Registry;

const REPO: &str = "bench/busybox";

/// Everything a containers benchmark runs on. Its fields drop in order: berth
/// first (its drop stops it, force-deletes its runc containers, kills its
/// monitors and detaches whatever is still mounted under its directory), then
/// the registry and the bridge, and the reaper last, which reaps what they left.
pub(crate) struct Stage {
    pub(crate) berth: Berth,
    pub(crate) registry: Registry,
    pub(crate) network: TestNetwork,
    pub(crate) image: BuiltImage,
    /// busybox's reference in the registry, as berth pulled it.
    pub(crate) reference: String,
    /// berth's metrics endpoint (host:port), for its step timings.
    pub(crate) metrics: String,
    _reaper: Reaper,
}

impl Stage {
    pub(crate) async fn start() -> Stage {
        // Made first, so that what a failed start leaves is reaped too.
        let reaper = Reaper::new();
        let network = TestNetwork::new();
        let registry = Registry::start().await;
        eprintln!("bench: building the busybox image, pushing it, pulling it into berth...");
        let image = ImageBuilder::busybox().build();
        image.push(&registry, REPO, "latest").await;
        let reference = format!("{}/{REPO}:latest", registry.host());
        // A second handler, berth's internal runtime, for the benchmarks that compare them.
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port for berth's metrics")
            .to_string();
        let config = format!(
            "{}[runtime.handlers.internal]\ntype = \"internal\"\n[metrics]\naddress = \"{metrics}\"\n",
            plain_http(&registry.host())
        );
        let berth = Berth::builder().cni_conflist(&network.conflist()).config(&config).start().await;
        let pull = PullImageRequest {
            image: Some(ImageSpec { image: reference.clone(), ..Default::default() }),
            ..Default::default()
        };
        berth.images().await.pull_image(pull).await.expect("berth pull");
        Stage { berth, registry, network, image, reference, metrics, _reaper: reaper }
    }

    /// berth's pid.
    pub(crate) fn berth_pid(&self) -> u32 {
        self.berth.pid().expect("berth runs")
    }

    /// The bench's own children, which their owners wait for: never reaped as orphans.
    pub(crate) fn keep(&self) -> [u32; 2] {
        [self.berth_pid(), self.registry.pid()]
    }

    /// berth's side of the benchmark, on a connection of its own, on the default handler.
    pub(crate) async fn bench(&self) -> Bench {
        self.bench_on("").await
    }

    /// The same on runtime handler `handler`.
    pub(crate) async fn bench_on(&self, handler: &str) -> Bench {
        Bench {
            client: self.berth.runtime().await,
            image: self.reference.clone(),
            logs: self.berth.dir().join("pod-logs"),
            handler: handler.to_string(),
            cgroup_parent: None,
        }
    }
}

/// The RPCs of [`Bench::cycle`], in its order.
pub(crate) const BERTH_STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// A pod and its container, as berth named them.
pub(crate) struct Ids {
    pub(crate) pod: String,
    pub(crate) container: String,
}

/// berth's side: one connection, as kubelet keeps one.
pub(crate) struct Bench {
    pub(crate) client: RuntimeServiceClient<Channel>,
    image: String,
    /// The pods' log directories (under berth's temp dir, removed with it).
    logs: PathBuf,
    /// The runtime handler its pods ask for ("" for the default).
    handler: String,
    /// Where its pods' cgroups go, each in a child named after the pod, as
    /// kubelet gives every pod one; none by default.
    cgroup_parent: Option<String>,
}

impl Bench {
    /// Another runtime's side (containerd's), on the same client code.
    pub(crate) fn new(client: RuntimeServiceClient<Channel>, image: String, logs: PathBuf) -> Bench {
        Bench { client, image, logs, handler: String::new(), cgroup_parent: None }
    }

    /// Puts its pods' cgroups under `parent` (see [`BenchCgroups`]).
    pub(crate) fn with_cgroup_parent(mut self, parent: &BenchCgroups) -> Bench {
        self.cgroup_parent = Some(parent.path.clone());
        self
    }

    /// The pod called `name`, as this bench sends it.
    pub(crate) fn pod(&self, name: &str) -> PodSandboxConfig {
        let mut pod = pod_config(name);
        if let (Some(parent), Some(linux)) = (&self.cgroup_parent, pod.linux.as_mut()) {
            linux.cgroup_parent = format!("{parent}/pod-{name}");
        }
        pod
    }

    /// A whole cycle; the duration of each of RunPodSandbox, CreateContainer,
    /// StartContainer, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
    pub(crate) async fn cycle(&mut self, name: &str) -> [Duration; 7] {
        let (ids, [run, create, start]) = self.start(name).await;
        let [stop, remove, stop_pod, remove_pod] = self.end(ids).await;
        [run, create, start, stop, remove, stop_pod, remove_pod]
    }

    /// RunPodSandbox, CreateContainer, StartContainer of a busybox `sleep 3600`.
    pub(crate) async fn start(&mut self, name: &str) -> (Ids, [Duration; 3]) {
        let mut pod = self.pod(&format!("{name}{}", self.handler));
        pod.log_directory = self.logs.join(name).display().to_string();
        let config =
            ContainerConfig { command: vec!["sleep".into(), "3600".into()], ..container("sleep", &self.image) };
        let started = Instant::now();
        let request = RunPodSandboxRequest { config: Some(pod.clone()), runtime_handler: self.handler.clone() };
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
    pub(crate) async fn end(&mut self, ids: Ids) -> [Duration; 4] {
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

/// A KiB figure of `/proc/<pid>/smaps_rollup` (`Pss`: resident pages, shared
/// ones divided among their sharers).
pub(crate) fn rollup_kib(pid: u32, key: &str) -> u64 {
    crate::proc_kib(pid, "smaps_rollup", key)
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Cores, kernel, cgroup layout and runc: what the figures depend on most.
pub(crate) fn machine_note() -> String {
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

/// The pids of the live `berth monitor` processes of the berth whose run root is `run_root`.
pub(crate) fn monitor_pids(run_root: &Path) -> Vec<u32> {
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

/// After the RPCs have undone everything: says what berth left behind, and
/// what runc left under `floor_root` (a bare runc floor's root), if given.
pub(crate) fn report_leftovers(berth: &Berth, network: &TestNetwork, floor_root: Option<&Path>) {
    let dir = berth.dir().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts: Vec<&str> = mountinfo.lines().filter(|line| line.contains(&dir)).collect();
    let monitors = monitor_pids(&berth.paths.run_root);
    let containers = runc_list(&berth.paths.run_root.join("runtimes/runc"));
    let floor_containers = floor_root.map(runc_list).unwrap_or_default();
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
pub(crate) fn reap_zombie_children(keep: &[u32]) {
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

/// A cgroup (in every hierarchy) that a benchmark's pods get as their parent,
/// as kubelet's pods have `/kubepods/...`; on drop, what the runtimes left
/// under it (each pod's own parent, made by runc) is removed, deepest first.
pub(crate) struct BenchCgroups {
    path: String,
}

impl BenchCgroups {
    pub(crate) fn new() -> BenchCgroups {
        BenchCgroups { path: format!("/berth-bench-{}", std::process::id()) }
    }
}

impl Drop for BenchCgroups {
    fn drop(&mut self) {
        fn remove_tree(dir: &Path) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            remove_tree(&hierarchy.path().join(self.path.trim_start_matches('/')));
        }
        remove_tree(&Path::new("/sys/fs/cgroup").join(self.path.trim_start_matches('/')));
    }
}
