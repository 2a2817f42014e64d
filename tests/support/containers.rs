//! Containers for the container tests: a registry with a busybox image, a berth
//! that trusts it, host-network pods with their own log directory, and small
//! helpers around the container RPCs and the CRI log files.
//!
//! Cleanup is `Berth`'s: its drop force-deletes the runtime's containers, kills
//! the monitors and unmounts what is left, also when a test fails.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStateValue,
    ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ExecSyncResponse, ImageSpec,
    KeyValue, LinuxContainerConfig, LinuxContainerSecurityContext, ListContainersRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PullImageRequest, RemoveContainerRequest, RunPodSandboxRequest,
    StartContainerRequest, StopContainerRequest,
};
use tonic::Status;

use super::berth::{Berth, BerthBuilder};
use super::image::ImageBuilder;
use super::pods::pod_config;
use super::registry::Registry;

/// How long "eventually" may take: generous, these are never timing assertions.
pub const WAIT: Duration = Duration::from_secs(30);
pub const RUNC: &str = "/usr/sbin/runc";

/// A registry, a berth that pulls from it over plain HTTP, and (unless built
/// with [`Bed::bare`]) the busybox test image pulled.
pub struct Bed {
    // Dropped in this order: berth (and its containers) before the registry.
    pub berth: Berth,
    pub registry: Registry,
    /// The pulled busybox image's reference (`ImageBuilder::busybox()`); empty for a bare bed.
    pub busybox: String,
}

pub fn plain_http(host: &str) -> String {
    format!("[registries.\"{host}\"]\nplain_http = true\n")
}

impl Bed {
    pub async fn new() -> Bed {
        Bed::with(Berth::builder()).await
    }

    /// A bed whose berth is `builder` (which must not set top-level keys after tables).
    pub async fn with(builder: BerthBuilder) -> Bed {
        let mut bed = Bed::bare_with(builder).await;
        bed.busybox = bed.image("busybox", ImageBuilder::busybox()).await;
        bed
    }

    /// No image pulled.
    pub async fn bare() -> Bed {
        Bed::bare_with(Berth::builder()).await
    }

    async fn bare_with(builder: BerthBuilder) -> Bed {
        let registry = Registry::start().await;
        let berth = builder.config(&plain_http(&registry.host())).start().await;
        Bed { berth, registry, busybox: String::new() }
    }

    /// Builds `image`, pushes it as `test/<name>:latest` and pulls it; returns its reference.
    pub async fn image(&self, name: &str, image: ImageBuilder) -> String {
        image.build().push(&self.registry, &format!("test/{name}"), "latest").await;
        let reference = format!("{}/test/{name}:latest", self.registry.host());
        let request = PullImageRequest { image: Some(image_spec(&reference)), auth: None, sandbox_config: None };
        self.berth.images().await.pull_image(request).await.unwrap_or_else(|e| panic!("pull {reference}: {e:?}"));
        reference
    }

    /// A ready host-network pod named `name`.
    pub async fn pod(&self, name: &str) -> Pod {
        self.pod_with(host_pod_config(name), "").await.unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e:?}"))
    }

    /// Runs a pod from `config` (its `log_directory` is set here) on `handler`.
    pub async fn pod_with(&self, mut config: PodSandboxConfig, handler: &str) -> Result<Pod, Status> {
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let log_dir = self.berth.dir().join("logs").join(format!("{name}-{}", unique()));
        std::fs::create_dir_all(&log_dir).unwrap();
        config.log_directory = log_dir.display().to_string();
        let request = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        let id = self.berth.runtime().await.run_pod_sandbox(request).await?.into_inner().pod_sandbox_id;
        Ok(Pod { id, config, log_dir })
    }

    /// CreateContainer in `pod`; makes the log file's directory first, as kubelet does.
    pub async fn create(&self, pod: &Pod, config: ContainerConfig) -> Result<String, Status> {
        if let Some(parent) = pod.log_path(&config).parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        let request = pod.create_request(config);
        Ok(self.berth.runtime().await.create_container(request).await?.into_inner().container_id)
    }

    pub async fn start(&self, id: &str) -> Result<(), Status> {
        let request = StartContainerRequest { container_id: id.into() };
        self.berth.runtime().await.start_container(request).await.map(|_| ())
    }

    /// Create and start, both expected to succeed.
    pub async fn run(&self, pod: &Pod, config: ContainerConfig) -> String {
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let id = self.create(pod, config).await.unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}"));
        self.start(&id).await.unwrap_or_else(|e| panic!("StartContainer {name}: {e:?}"));
        id
    }

    /// Runs a container to its end; returns its final status.
    pub async fn run_to_exit(&self, pod: &Pod, config: ContainerConfig) -> ContainerStatus {
        let id = self.run(pod, config).await;
        self.wait_exited(&id).await
    }

    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let request = StopContainerRequest { container_id: id.into(), timeout };
        self.berth.runtime().await.stop_container(request).await.map(|_| ())
    }

    pub async fn remove(&self, id: &str) -> Result<(), Status> {
        let request = RemoveContainerRequest { container_id: id.into() };
        self.berth.runtime().await.remove_container(request).await.map(|_| ())
    }

    /// Verbose ContainerStatus.
    pub async fn try_status(&self, id: &str) -> Result<berth::cri::v1::ContainerStatusResponse, Status> {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: true };
        Ok(self.berth.runtime().await.container_status(request).await?.into_inner())
    }

    pub async fn status(&self, id: &str) -> ContainerStatus {
        let reply = self.try_status(id).await.unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"));
        reply.status.expect("a status")
    }

    /// The verbose details (`info["info"]`, JSON): `pid`, the OCI spec (`runtimeSpec`, as containerd names it), ...
    pub async fn info(&self, id: &str) -> serde_json::Value {
        let reply = self.try_status(id).await.unwrap_or_else(|e| panic!("ContainerStatus {id}: {e:?}"));
        let info = reply.info.get("info").unwrap_or_else(|| panic!("no verbose info: {:?}", reply.info));
        serde_json::from_str(info).unwrap_or_else(|e| panic!("verbose info is not JSON ({e}): {info}"))
    }

    /// The container's main process, as berth reports it.
    pub async fn pid(&self, id: &str) -> i32 {
        let info = self.info(id).await;
        info["pid"].as_i64().unwrap_or_else(|| panic!("no pid in {info}")) as i32
    }

    /// `linux.cgroupsPath` of the container's OCI spec.
    pub async fn cgroups_path(&self, id: &str) -> String {
        let info = self.info(id).await;
        info["runtimeSpec"]["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_else(|| panic!("no cgroupsPath in {info}"))
            .into()
    }

    pub async fn wait_state(&self, id: &str, state: ContainerState) -> ContainerStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.status(id).await;
            if status.state() == state {
                return status;
            }
            assert!(Instant::now() < deadline, "{id} never became {state:?}: {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_exited(&self, id: &str) -> ContainerStatus {
        self.wait_state(id, ContainerState::ContainerExited).await
    }

    pub async fn list(&self, filter: ContainerFilter) -> Vec<Container> {
        let request = ListContainersRequest { filter: Some(filter) };
        self.berth.runtime().await.list_containers(request).await.unwrap().into_inner().containers
    }

    pub async fn list_all(&self) -> Vec<Container> {
        self.list(ContainerFilter::default()).await
    }

    pub async fn exec(&self, id: &str, cmd: &[&str], timeout: i64) -> Result<ExecSyncResponse, Status> {
        let request =
            ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout };
        Ok(self.berth.runtime().await.exec_sync(request).await?.into_inner())
    }

    /// The IDs the default handler's runtime knows: runc's list, or the
    /// containers in the internal runtime's state directory (BERTH_TEST_RUNTIME).
    pub fn runc_containers(&self) -> Vec<String> {
        if std::env::var("BERTH_TEST_RUNTIME").as_deref() == Ok("internal") {
            let root = self.berth.paths.run_root.join("runtimes/internal");
            let entries = std::fs::read_dir(root).into_iter().flatten().flatten();
            let mut ids: Vec<String> = entries
                .filter(|entry| entry.path().join("state.json").exists())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect();
            ids.sort();
            return ids;
        }
        runc_list(&self.berth.paths.run_root.join("runtimes/runc"))
    }
}

/// A pod the test runs containers in.
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
    pub log_dir: PathBuf,
}

impl Pod {
    /// Where berth writes `config`'s log: the pod's log directory joined with its `log_path`.
    pub fn log_path(&self, config: &ContainerConfig) -> PathBuf {
        self.log_dir.join(&config.log_path)
    }

    pub fn create_request(&self, config: ContainerConfig) -> CreateContainerRequest {
        CreateContainerRequest {
            pod_sandbox_id: self.id.clone(),
            config: Some(config),
            sandbox_config: Some(self.config.clone()),
        }
    }
}

/// A process-wide counter for unique names.
/// Sends `bytes` to `ip:port` once something listens there (the pod's server
/// may still be starting).
pub async fn send_when_listening(ip: &str, port: u16, bytes: &[u8]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect((ip, port)) {
            std::io::Write::write_all(&mut stream, bytes).expect("sending to the pod");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nothing ever listened on {ip}:{port}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub fn unique() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec { image: image.into(), ..Default::default() }
}

/// `pod_config(name)` on the node's network (no CNI), a PID namespace per container.
pub fn host_pod_config(name: &str) -> PodSandboxConfig {
    let mut config = pod_config(name);
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).namespace_options = Some(host_namespace_options());
    config
}

/// The pod's network and IPC, a PID namespace per container: kubelet's options
/// for a container of a pod on the pod network.
pub fn pod_network_options() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The node's network, the pod's IPC, a PID namespace per container: kubelet's
/// options for a hostNetwork pod and each of its containers.
pub fn host_namespace_options() -> NamespaceOption {
    NamespaceOption { network: NamespaceMode::Node as i32, ..pod_network_options() }
}

/// A container named `name` running `image`'s own command, logging to `<name>/0.log`
/// as kubelet lays logs out.
pub fn container(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(image_spec(image)),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        // kubelet repeats the pod's namespace options for each container.
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(host_namespace_options()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container running `sh -c <script>`.
pub fn sh(name: &str, image: &str, script: &str) -> ContainerConfig {
    ContainerConfig { command: vec!["sh".into(), "-c".into(), script.into()], ..container(name, image) }
}

/// The security context of `config`, made if missing.
pub fn security_context(config: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    config.linux.get_or_insert_with(Default::default).security_context.get_or_insert_with(Default::default)
}

pub fn env(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs.iter().map(|(key, value)| KeyValue { key: key.to_string(), value: value.as_bytes().to_vec() }).collect()
}

pub fn state_filter(state: ContainerState) -> Option<ContainerStateValue> {
    Some(ContainerStateValue { state: state as i32 })
}

/// One entry of a CRI log file: `<RFC3339Nano> <stdout|stderr> <P|F> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub content: String,
}

/// `2026-11-23T08:15:32.123456789Z`: UTC, nine fractional digits.
pub fn is_rfc3339_nano(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() == 30
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            29 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// Every entry of the log at `path` (none if it does not exist).
pub fn log_entries(path: &Path) -> Vec<LogEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_terminator('\n')
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || parts.next().unwrap_or_else(|| panic!("malformed log line {line:?}")).to_string();
            LogEntry { time: next(), stream: next(), tag: next(), content: parts.next().unwrap_or_default().into() }
        })
        .collect()
}

/// The full lines of one stream ("stdout", "stderr"), partial entries joined.
pub fn log_lines_of(path: &Path, stream: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut partial = String::new();
    for entry in log_entries(path).into_iter().filter(|e| e.stream == stream) {
        partial.push_str(&entry.content);
        if entry.tag == "F" {
            lines.push(std::mem::take(&mut partial));
        }
    }
    lines
}

/// The container's stdout lines.
pub fn log_lines(path: &Path) -> Vec<String> {
    log_lines_of(path, "stdout")
}

/// Waits until the log at `path` has a stdout line equal to `line`.
pub async fn wait_for_line(path: &Path, line: &str) {
    let deadline = Instant::now() + WAIT;
    while !log_lines(path).iter().any(|l| l == line) {
        assert!(Instant::now() < deadline, "{line:?} never logged in {}: {:?}", path.display(), log_entries(path));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `runc --root <root> list -q`.
pub fn runc_list(root: &Path) -> Vec<String> {
    let output = std::process::Command::new(RUNC).arg("--root").arg(root).args(["list", "-q"]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(String::from).collect()
}

/// Mount points (from /proc/self/mountinfo) whose path contains `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().filter(|line| line.contains(needle)).map(String::from).collect()
}

/// Alive and not a zombie.
pub fn process_alive(pid: i32) -> bool {
    berth::procfs::is_alive(pid)
}

pub async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The directory of cgroup `path` in the v1 hierarchy holding `file` (e.g.
/// `memory.limit_in_bytes`, `cpu.shares`): hierarchies are mounted per
/// controller or co-mounted, depending on the host.
pub fn cgroup_file(path: &str, file: &str) -> PathBuf {
    let hierarchy = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|hierarchy| hierarchy.join(file).exists())
        .unwrap_or_else(|| panic!("no cgroup hierarchy has {file}"));
    hierarchy.join(path.trim_start_matches('/')).join(file)
}

pub fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

/// Unmounts its mount points (last first) on drop.
#[derive(Default)]
pub struct Mounts(pub Vec<PathBuf>);

impl Mounts {
    /// `mount -t tmpfs tmpfs <point>`.
    pub fn tmpfs(&mut self, point: &Path) {
        self.mount(&["-t", "tmpfs", "tmpfs"], point);
    }

    /// `point` bound onto itself and made shared: what a host path needs for
    /// HostToContainer or Bidirectional propagation when `/` is private.
    pub fn shared_bind(&mut self, point: &Path) {
        self.mount(&["--bind", &point.display().to_string()], point);
        let status = std::process::Command::new("mount").arg("--make-rshared").arg(point).status().unwrap();
        assert!(status.success(), "mount --make-rshared {}", point.display());
    }

    fn mount(&mut self, args: &[&str], point: &Path) {
        let output = std::process::Command::new("mount").args(args).arg(point).output().unwrap();
        assert!(
            output.status.success(),
            "mount {args:?} {}: {}",
            point.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        self.0.push(point.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for point in self.0.iter().rev() {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
