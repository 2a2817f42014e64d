//! A real `berth serve` process per test: its own state root, run root, socket
//! and CNI conf dir under a temp dir, and tonic clients connected to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use berth::cri::v1::image_service_client::ImageServiceClient;
use berth::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth::cri::v1::{ListPodSandboxRequest, RemovePodSandboxRequest};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint, Uri};

/// The berth binary: `BERTH_BIN` when set (the benchmark uses a release build),
/// else the one cargo built for this test run.
pub fn berth_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        return PathBuf::from(path);
    }
    match option_env!("CARGO_BIN_EXE_berth") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/berth"),
    }
}
/// The `berth-monitor` binary: `BERTH_MONITOR_BIN` (hack/test.sh sets it to an
/// optimised build for the monitor's memory budget), else the one built beside
/// [`berth_binary`].
pub fn monitor_binary() -> PathBuf {
    match std::env::var_os("BERTH_MONITOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => berth_binary().with_file_name("berth-monitor"),
    }
}

/// Debian's containernetworking-plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the guard gives berth to remove the pods a test left: only a bound
/// on a wedged berth, which is killed next anyway.
const POD_REMOVAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a berth run to completion may take: only a guard against one that never ends.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A conflist whose plugins Debian ships; Status needs no more than that it exists.
pub const LOOPBACK_CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"berth-test-lo","plugins":[{"type":"loopback"}]}"#;

/// How to start a berth; `Berth::start()` takes the defaults.
#[derive(Default)]
pub struct BerthBuilder {
    extra_config: String,
    cni_conflist: Option<String>,
    extra_cni_bin_dirs: Vec<PathBuf>,
    extra_cni_config: String,
    extra_nri_config: String,
    /// Pre-installed NRI plugins: (file name, executable, configuration).
    nri_plugins: Vec<(String, PathBuf, String)>,
    args: Vec<String>,
    /// The berth binary to run; [`berth_binary`] when unset.
    binary: Option<PathBuf>,
    /// The test is about the runc handler's own configuration: BERTH_TEST_RUNTIME
    /// does not apply.
    runc_handler_only: bool,
    /// `log.level` decides, not the tests' RUST_LOG.
    log_level_from_config: bool,
}

impl BerthBuilder {
    /// TOML appended to the generated config file (top-level keys must come first
    /// in the string, before any table).
    pub fn config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }

    /// Only the built-in runc handler, whatever BERTH_TEST_RUNTIME says.
    pub fn runc_handler_only(mut self) -> Self {
        self.runc_handler_only = true;
        self
    }

    /// No RUST_LOG: the config file's `log.level` is in force (and reloadable).
    pub fn log_level_from_config(mut self) -> Self {
        self.log_level_from_config = true;
        self
    }

    /// Writes this network config into the CNI conf dir as `10-test.conflist`.
    /// Runs the berth binary at `path` instead of [`berth_binary`].
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    pub fn cni_conflist(mut self, conflist: &str) -> Self {
        self.cni_conflist = Some(conflist.to_string());
        self
    }

    /// Looks for CNI plugins in `dir` before Debian's (for fake plugins).
    pub fn cni_bin_dir(mut self, dir: &Path) -> Self {
        self.extra_cni_bin_dirs.push(dir.to_path_buf());
        self
    }

    /// TOML lines added to the `[cni]` table the builder writes.
    pub fn cni_config(mut self, toml: &str) -> Self {
        self.extra_cni_config.push_str(toml);
        self.extra_cni_config.push('\n');
        self
    }

    /// TOML lines added to the `[nri]` table the builder writes.
    pub fn nri_config(mut self, toml: &str) -> Self {
        self.extra_nri_config.push_str(toml);
        self.extra_nri_config.push('\n');
        self
    }

    /// An NRI plugin berth starts itself: `executable` installed as `file`
    /// (`<index>-<name>`) in its plugin directory, `config` as `<name>.conf`.
    pub fn nri_plugin(mut self, file: &str, executable: &Path, config: &str) -> Self {
        self.nri_plugins.push((file.to_string(), executable.to_path_buf(), config.to_string()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    pub async fn start(self) -> Berth {
        crate::support::failure::record_panics();
        // 0711, as berth's own roots: a pod in its own user namespace walks
        // down to its rootfs as an unprivileged host user.
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .tempdir()
            .expect("create test dir");
        let paths = BerthPaths::new(dir.path());
        std::fs::create_dir_all(&paths.cni_conf_dir).expect("create CNI conf dir");
        for (file, executable, config) in &self.nri_plugins {
            std::fs::create_dir_all(&paths.nri_plugins).expect("create the NRI plugin dir");
            std::fs::create_dir_all(&paths.nri_plugin_configs).expect("create the NRI plugin config dir");
            std::fs::copy(executable, paths.nri_plugins.join(file)).expect("install the NRI plugin");
            let name = file.split_once('-').map_or(file.as_str(), |(_, name)| name);
            std::fs::write(paths.nri_plugin_configs.join(format!("{name}.conf")), config).expect("write its config");
        }
        if let Some(conflist) = &self.cni_conflist {
            std::fs::write(paths.cni_conf_dir.join("10-test.conflist"), conflist).expect("write conflist");
        }
        let mut bin_dirs: Vec<String> =
            self.extra_cni_bin_dirs.iter().map(|d| format!("{:?}", d.display().to_string())).collect();
        bin_dirs.push(format!("{CNI_BIN_DIR:?}"));
        // Each test berth serves NRI on a socket of its own.
        let config = format!(
            "state_root = {:?}\nrun_root = {:?}\nsocket = {:?}\n{}\n[cni]\nconf_dir = {:?}\nbin_dirs = [{}]\n{}\n[nri]\nsocket_path = {:?}\nplugin_path = {:?}\nplugin_config_path = {:?}\n{}",
            paths.state_root,
            paths.run_root,
            paths.socket,
            self.extra_config,
            paths.cni_conf_dir,
            bin_dirs.join(", "),
            self.extra_cni_config,
            paths.nri_socket,
            paths.nri_plugins,
            paths.nri_plugin_configs,
            self.extra_nri_config,
        );
        // The container suite runs against each runtime backend: with
        // BERTH_TEST_RUNTIME=internal the default handler is berth's own.
        let config = match std::env::var("BERTH_TEST_RUNTIME").as_deref() {
            Ok("internal") if !self.runc_handler_only => format!(
                "{config}\n[runtime]\ndefault_handler = \"internal\"\n[runtime.handlers.internal]\ntype = \"internal\"\n"
            ),
            _ => config,
        };
        std::fs::write(&paths.config, config).expect("write config");
        let binary = self.binary.unwrap_or_else(berth_binary);
        let mut berth = Berth {
            dir,
            paths,
            args: self.args,
            binary,
            child: None,
            log_level_from_config: self.log_level_from_config,
        };
        berth.spawn().await;
        berth
    }
}

/// Where a test berth keeps everything.
#[derive(Debug, Clone)]
pub struct BerthPaths {
    pub config: PathBuf,
    pub state_root: PathBuf,
    pub run_root: PathBuf,
    pub socket: PathBuf,
    pub nri_socket: PathBuf,
    pub nri_plugins: PathBuf,
    pub nri_plugin_configs: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub log: PathBuf,
}

impl BerthPaths {
    fn new(dir: &Path) -> Self {
        BerthPaths {
            config: dir.join("config.toml"),
            state_root: dir.join("state"),
            run_root: dir.join("run"),
            socket: dir.join("run/berth.sock"),
            nri_socket: dir.join("run/nri.sock"),
            nri_plugins: dir.join("nri-plugins"),
            nri_plugin_configs: dir.join("nri-conf.d"),
            cni_conf_dir: dir.join("net.d"),
            log: dir.join("berth.log"),
        }
    }
}

pub struct Berth {
    dir: TempDir,
    pub paths: BerthPaths,
    args: Vec<String>,
    binary: PathBuf,
    child: Option<Child>,
    log_level_from_config: bool,
}

impl Berth {
    pub async fn start() -> Berth {
        Berth::builder().start().await
    }

    pub fn builder() -> BerthBuilder {
        BerthBuilder::default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Another `berth serve` on this berth's config, not waited for: for tests
    /// that expect it to fail.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--config").arg(&self.paths.config).args(&self.args);
        cmd
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::options().create(true).append(true).open(&self.paths.log).expect("open log");
        let mut cmd = self.command();
        // The benchmark asks for less logging than the tests' debug default.
        let log_filter = std::env::var("BERTH_LOG").unwrap_or_else(|_| "berth=debug,info".into());
        if self.log_level_from_config {
            cmd.env_remove("RUST_LOG");
        } else {
            cmd.env("RUST_LOG", log_filter);
        }
        cmd.arg("serve").stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        // SAFETY: prctl is async-signal-safe; it makes berth die with the test
        // process even if the test is killed before Drop runs.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let child = cmd.spawn().expect("spawn berth");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("berth exited during start with {status}:\n{}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(&self.paths.socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("berth did not serve {} within {START_TIMEOUT:?}:\n{}", self.paths.socket.display(), self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.paths.socket).await
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Sends SIGTERM and waits for the exit; SIGKILL if it takes too long.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }

    /// Has berth remove every pod it has, within [`POD_REMOVAL_TIMEOUT`]; nothing
    /// when it is not running (killed by the test).
    fn remove_pods_left(&mut self) {
        let running = self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)));
        if !running {
            return;
        }
        if let Err(e) = remove_all_pods(&self.paths.socket) {
            eprintln!("berth test guard: the pods left were not all removed: {e}");
        }
    }

    /// Kills berth without warning, as a crash or OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts berth again on the same state, after `stop` or `kill`.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        // Pods the test left up (it failed, say) never had their CNI DEL:
        // portmap's rules, bandwidth's devices and IPAM leases would outlive
        // them. Berth removes them, network included, while it still runs.
        self.remove_pods_left();
        self.stop();
        // Containers outlive berth by design: their monitors and runc's
        // containers are the test's to end, or they would outlive it.
        let cgroups = container_cgroups(&self.paths);
        delete_runtime_containers(&self.paths.run_root);
        kill_processes_mentioning(self.dir.path());
        // A create that was in flight when its monitor was killed.
        delete_runtime_containers(&self.paths.run_root);
        // Whatever the test did (a failed assertion, a killed berth mid-call),
        // nothing it mounted under its directory may outlive it.
        unmount_everything_under(self.dir.path());
        remove_cgroups(&cgroups);
        if std::thread::panicking() {
            eprintln!("---- berth log ({}) ----\n{}", self.paths.log.display(), self.log());
        }
        if let Some(message) = crate::support::failure::unwinding_from() {
            eprintln!("---- the test failed: {message} ----");
        }
    }
}

/// A tonic channel over the unix socket at `socket`.
pub async fn connect(socket: &Path) -> Channel {
    try_connect(socket).await.expect("connect to berth socket")
}

async fn try_connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://berth.invalid")
        .expect("static URI")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
}

/// Has the CRI runtime at `socket` remove every pod it lists, within
/// [`POD_REMOVAL_TIMEOUT`]; callable from Drop, even inside a runtime: it
/// runs on a thread and a runtime of its own.
pub fn remove_all_pods(socket: &Path) -> Result<(), String> {
    let socket = socket.to_path_buf();
    let removal = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let runtime = runtime.map_err(|e| format!("a runtime: {e}"))?;
        runtime.block_on(async {
            let removal = tokio::time::timeout(POD_REMOVAL_TIMEOUT, remove_every_pod(&socket)).await;
            removal.unwrap_or_else(|_| Err(format!("still removing pods after {POD_REMOVAL_TIMEOUT:?}")))
        })
    });
    removal.join().unwrap_or_else(|_| Err("removing the pods panicked".into()))
}

/// RemovePodSandbox (containers, network and all) of every pod berth at `socket` lists.
async fn remove_every_pod(socket: &Path) -> Result<(), String> {
    let channel = try_connect(socket).await.map_err(|e| format!("connecting: {e}"))?;
    let mut runtime = RuntimeServiceClient::new(channel);
    let listed = runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await;
    let pods = listed.map_err(|e| format!("listing pods: {e}"))?.into_inner().items;
    for pod in pods {
        let request = RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() };
        runtime.remove_pod_sandbox(request).await.map_err(|e| format!("removing pod {}: {e}", pod.id))?;
    }
    Ok(())
}

/// Runs the berth binary to completion with `args` (see [`output_within`]).
pub fn run_berth(args: &[&str]) -> Output {
    output_within(Command::new(berth_binary()).args(args))
}

/// Runs `command` to completion, as `Command::output` does, except that one
/// still running after [`RUN_TIMEOUT`] is killed and fails the test: a berth
/// that should have refused to start, but serves, must not hang the suite.
/// It dies with the test, too.
pub fn output_within(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    let mut child = command.spawn().expect("spawn berth");
    // Drained as it runs, so that a full pipe cannot stop it.
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        match child.try_wait().expect("wait for berth") {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    let Some(status) = status else {
        panic!("{command:?} still ran after {RUN_TIMEOUT:?}; killed:\n{}", String::from_utf8_lossy(&stderr));
    };
    Output { status, stdout, stderr }
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Detaches every mount below `dir`, deepest first.
pub fn unmount_everything_under(dir: &Path) {
    let prefix = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> =
        mountinfo.lines().filter_map(|l| l.split_whitespace().nth(4)).filter(|p| p.starts_with(&prefix)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The OCI runtime that manages the containers under a runtime root: crun for
/// the `crun` handler, runc for every other (wrappers around runc included).
fn runtime_for_root(root: &Path) -> &'static str {
    if root.file_name().is_some_and(|name| name == "crun") { "crun" } else { "/usr/sbin/runc" }
}

/// `runtime --root <root> delete --force` of every container of every runtime
/// root under `<run_root>/runtimes`.
pub fn delete_runtime_containers(run_root: &Path) {
    let roots = std::fs::read_dir(run_root.join("runtimes")).into_iter().flatten().flatten();
    for root in roots.map(|entry| entry.path()).filter(|path| path.is_dir()) {
        let runtime = runtime_for_root(&root);
        let Ok(listed) = Command::new(runtime).arg("--root").arg(&root).args(["list", "-q"]).output() else {
            continue;
        };
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// SIGKILLs every process but this one whose command line mentions `dir`: the
/// container monitors, runtime calls in flight, wrappers started by tests.
pub fn kill_processes_mentioning(dir: &Path) {
    // With the separator: another test's directory may share this one's prefix.
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(needle.len()).any(|window| window == needle.as_slice()) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// The cgroup paths berth's containers use: each bundle's `linux.cgroupsPath`,
/// and `/berth/<id>` for every container directory.
fn container_cgroups(paths: &BerthPaths) -> Vec<PathBuf> {
    let mut cgroups = Vec::new();
    for dir in [paths.run_root.join("containers"), paths.state_root.join("containers")] {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            cgroups.push(PathBuf::from("/berth").join(entry.file_name()));
            let config = std::fs::read(entry.path().join("config.json")).unwrap_or_default();
            let spec: serde_json::Value = serde_json::from_slice(&config).unwrap_or_default();
            if let Some(path) = spec["linux"]["cgroupsPath"].as_str().filter(|p| p.starts_with('/')) {
                cgroups.push(PathBuf::from(path));
            }
        }
    }
    cgroups.sort();
    cgroups.dedup();
    cgroups
}

/// Removes `cgroups` from every hierarchy (a cgroup is removable once its last
/// process is reaped: a few tries).
fn remove_cgroups(cgroups: &[PathBuf]) {
    let hierarchies: Vec<PathBuf> =
        std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten().map(|entry| entry.path()).collect();
    for cgroup in cgroups {
        for hierarchy in &hierarchies {
            let dir = hierarchy.join(cgroup.strip_prefix("/").unwrap_or(cgroup));
            for _ in 0..50 {
                if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}
