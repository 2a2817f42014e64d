//! A real kubelet (one of those `hack/tools.sh` builds) driving a test berth:
//! standalone (no API server, no kubeconfig), its pods static ones read from a
//! manifest directory, everything it writes kept in a temp dir of its own.
//!
//! Its HTTP servers listen on free loopback ports; the read-only one serves
//! `/pods`, which for static pods carries the status kubelet keeps in memory
//! (readiness, restart counts): the only view of kubelet's own judgement there
//! is without an API server.
//!
//! Drop kills kubelet's process group, unmounts what it left under its dir,
//! and puts back the kernel settings kubelet changes at start.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::berth::{Berth, unmount_everything_under};
use super::registry::install_crypto_provider;

/// The node name kubelet runs as: static pods are named `<name>-<NODE_NAME>`.
pub const NODE_NAME: &str = "berth-node";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The sysctls kubelet's container manager sets at start (`setupKernelTunables`:
/// overcommit, panic on oops, key quotas). This is a shared test machine, so
/// Drop writes back what was there before.
const KERNEL_TUNABLES: &[&str] = &[
    "/proc/sys/vm/overcommit_memory",
    "/proc/sys/vm/panic_on_oom",
    "/proc/sys/kernel/panic",
    "/proc/sys/kernel/panic_on_oops",
    "/proc/sys/kernel/keys/root_maxkeys",
    "/proc/sys/kernel/keys/root_maxbytes",
];

/// Host paths kubelet creates whatever its configuration says (the device
/// plugin socket's directory is a constant of the device plugin API; the
/// container log symlinks' directory a constant of kuberuntime): removed by
/// Drop when they did not exist before.
const HOST_DIRS: &[&str] = &["/var/lib/kubelet", "/var/log/containers"];

pub struct Kubelet {
    child: Option<Child>,
    dir: TempDir,
    pub root_dir: PathBuf,
    pub manifests: PathBuf,
    pub pod_logs: PathBuf,
    pub read_only_port: u16,
    pub healthz_port: u16,
    log: PathBuf,
    saved_tunables: Vec<(&'static str, String)>,
    created_host_dirs: Vec<&'static str>,
    /// Held for the kubelet's life, and released after Drop put things back.
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// kubelet changes host-wide settings (sysctls, `/var/lib/kubelet`) that Drop
/// puts back: two at once would each put back the other's.
static HOST_SETTINGS: Mutex<()> = Mutex::new(());

impl Kubelet {
    /// Starts the kubelet `binary` on `berth`'s socket and waits for its healthz
    /// to answer; one kubelet runs at a time.
    /// `extra_config`, a JSON object merged over the base KubeletConfiguration
    /// (`featureGates`, back-off settings, ...), tunes it per test.
    pub async fn start(binary: &Path, berth: &Berth, extra_config: Value) -> Kubelet {
        let one_at_a_time = HOST_SETTINGS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::Builder::new().prefix("berth-test-kubelet-").tempdir().expect("create kubelet dir");
        let root_dir = dir.path().join("root");
        let manifests = dir.path().join("manifests");
        let pod_logs = dir.path().join("pod-logs");
        let cert_dir = dir.path().join("pki");
        let volume_plugins = dir.path().join("volume-plugins");
        for path in [&root_dir, &manifests, &pod_logs, &cert_dir, &volume_plugins] {
            fs::create_dir_all(path).expect("create kubelet dirs");
        }
        let resolv_conf = dir.path().join("resolv.conf");
        fs::write(&resolv_conf, "nameserver 192.0.2.53\nsearch berth.test\n").expect("write resolv.conf");

        let [read_only_port, healthz_port, server_port] = free_ports();
        let mut config = json!({
            "kind": "KubeletConfiguration",
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "containerRuntimeEndpoint": format!("unix://{}", berth.paths.socket.display()),
            "imageServiceEndpoint": format!("unix://{}", berth.paths.socket.display()),
            "staticPodPath": manifests,
            // The directory is watched with inotify too; this bounds a missed event.
            "fileCheckFrequency": "1s",
            "syncFrequency": "5s",
            "podLogsDir": pod_logs,
            "resolvConf": resolv_conf,
            "volumePluginDir": volume_plugins,
            // This host is cgroup v1 (hybrid); kubelets since 1.35 refuse it unless told.
            "failCgroupV1": false,
            // What berth reports through RuntimeConfig.
            "cgroupDriver": "cgroupfs",
            // No /kubepods hierarchy on the shared host: pods go where berth puts them.
            "cgroupsPerQOS": false,
            "enforceNodeAllocatable": [],
            "failSwapOn": false,
            // Loopback only, on ports no parallel test holds.
            "address": "127.0.0.1",
            "port": server_port,
            "readOnlyPort": read_only_port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
            "authorization": {"mode": "AlwaysAllow"},
            // A test machine's disk may be fuller than kubelet's thresholds: no
            // eviction, no image garbage collection.
            "evictionHard": {},
            "evictionSoft": {},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "registerNode": false,
            // Else kubelet adds KUBE-FIREWALL (jumped to from INPUT and OUTPUT)
            // and canary chains to the host's iptables, for kube-proxy's sake.
            "makeIPTablesUtilChains": false,
        });
        merge(&mut config, extra_config);
        let config_path = dir.path().join("config.json");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("config JSON")).expect("write config");

        let saved_tunables =
            KERNEL_TUNABLES.iter().filter_map(|path| Some((*path, fs::read_to_string(path).ok()?))).collect();
        let created_host_dirs = HOST_DIRS.iter().copied().filter(|path| !Path::new(path).exists()).collect();
        let log = dir.path().join("kubelet.log");
        let mut kubelet = Kubelet {
            child: None,
            root_dir,
            manifests,
            pod_logs,
            read_only_port,
            healthz_port,
            log,
            saved_tunables,
            created_host_dirs,
            dir,
            _one_at_a_time: one_at_a_time,
        };
        kubelet.spawn(binary, &config_path, &cert_dir);
        kubelet.wait_healthy().await;
        kubelet
    }

    fn spawn(&mut self, binary: &Path, config: &Path, cert_dir: &Path) {
        let log = fs::File::options().create(true).append(true).open(&self.log).expect("open kubelet log");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config={}", config.display()))
            .arg(format!("--root-dir={}", self.root_dir.display()))
            .arg(format!("--cert-dir={}", cert_dir.display()))
            .arg(format!("--hostname-override={NODE_NAME}"))
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup kubelet log"))
            .stderr(log)
            // Its own process group: Drop kills whatever kubelet started too.
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and makes
        // one async-signal-safe system call (prctl): kubelet dies with the
        // thread that started it even if the test is killed before Drop.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
        }
        self.child = Some(command.spawn().expect("spawn kubelet"));
    }

    async fn wait_healthy(&mut self) {
        let url = format!("http://127.0.0.1:{}/healthz", self.healthz_port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("kubelet exited during start with {status}:\n{}", self.log_tail(80));
            }
            if let Ok(response) = client().get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "kubelet not healthy within {START_TIMEOUT:?}:\n{}", self.log_tail(80));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes the static pod `pod` (a Pod object, JSON) as `<name>.json`:
    /// written beside under a hidden name (kubelet skips dotfiles) and renamed
    /// in, so kubelet never reads half a file.
    pub fn add_manifest(&self, name: &str, pod: &Value) {
        let hidden = self.manifests.join(format!(".{name}.json.tmp"));
        fs::write(&hidden, serde_json::to_vec_pretty(pod).expect("pod JSON")).expect("write manifest");
        fs::rename(&hidden, self.manifests.join(format!("{name}.json"))).expect("rename manifest");
    }

    pub fn remove_manifest(&self, name: &str) {
        fs::remove_file(self.manifests.join(format!("{name}.json"))).expect("remove manifest");
    }

    /// `GET /pods` on the read-only port: the static pods with the status
    /// kubelet holds for them.
    pub async fn pods(&self) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/pods", self.read_only_port);
        let response = client().get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let list: Value = response.json().await.unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// The status kubelet holds for static pod `name` (its manifest's name).
    pub async fn pod_status(&self, name: &str) -> Option<Value> {
        let full = format!("{name}-{NODE_NAME}");
        self.pods()
            .await
            .into_iter()
            .find(|pod| pod["metadata"]["name"] == full.as_str())
            .map(|pod| pod["status"].clone())
    }

    /// kubelet's own status of container `container` of static pod `pod`.
    pub async fn container_status(&self, pod: &str, container: &str) -> Option<Value> {
        let status = self.pod_status(pod).await?;
        status["containerStatuses"].as_array()?.iter().find(|c| c["name"] == container).cloned()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of kubelet's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills kubelet and everything in its process group, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(-(child.id() as i32)), Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.kill();
        unmount_everything_under(self.dir.path());
        for (path, value) in &self.saved_tunables {
            let _ = fs::write(path, value);
        }
        for path in &self.created_host_dirs {
            let _ = fs::remove_dir_all(path);
        }
        if std::thread::panicking() {
            eprintln!("---- kubelet log ({}), last lines ----\n{}", self.log.display(), self.log_tail(300));
        }
    }
}

fn client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("HTTP client")
}

/// Ports that were free a moment ago, all different (held together while probed).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> =
        (0..N).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

/// `extra`'s keys over `base`'s, objects merged key by key.
fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}
