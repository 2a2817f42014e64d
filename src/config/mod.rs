//! berth's configuration: one TOML file plus drop-ins, every key with a default.
//!
//! The structs here are the single source of truth for the keys, their types,
//! their defaults and (in their doc comments) their meaning: `reference` derives
//! `berth config --default` and the README's table from them.

pub mod load;
pub mod reference;

pub use load::{ConfigError, ConfigSources, load};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/config.toml";
pub const DEFAULT_HANDLER: &str = "runc";

/// The effective configuration. Scalars come before tables in every struct so that
/// `berth config` can print it as TOML (TOML needs plain values before sub-tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    /// Persistent state: the metadata store, blobs, snapshots.
    pub state_root: PathBuf,
    /// Volatile state: namespace pins, runtime state, sockets.
    pub run_root: PathBuf,
    /// The CRI endpoint, serving RuntimeService and ImageService (mode 0660,
    /// parent directory 0711).
    pub socket: PathBuf,
    /// `cgroupfs` or `systemd`: how pod and container cgroups are named and
    /// placed; reported to kubelet by `RuntimeConfig`.
    pub cgroup_driver: CgroupDriver,
    /// Image for pods that need an infra process (a shared PID namespace); always
    /// `pinned`, so kubelet's image GC never removes it.
    pub sandbox_image: String,
    /// Logging, on stderr.
    pub log: LogConfig,
    /// Pod networking through CNI plugins.
    pub cni: CniConfig,
    /// Runtime handlers: what kubelet's RuntimeClasses name.
    pub runtime: RuntimeConfig,
    /// Pulling and storing images.
    pub images: ImagesConfig,
    /// The Exec, Attach and PortForward server.
    pub streaming: StreamingConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Node Resource Interface plugins.
    pub nri: NriConfig,
    /// Per-registry settings keyed by registry host (`docker.io`,
    /// `127.0.0.1:5000`), as containerd's `hosts.toml`. Reloaded on SIGHUP.
    pub registries: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter (`debug`, `berth=debug,info`); `RUST_LOG` wins when
    /// set. Reloaded on SIGHUP.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Network configs; the first valid one in lexical order is used. Reloaded
    /// on SIGHUP.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// One plugin run taking longer is killed, with what it started, and the
    /// pod's setup or teardown fails.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub plugin_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The handler for pods that name none.
    pub default_handler: String,
    /// Runtime handlers by name, as kubelet's RuntimeClass refers to them.
    pub handlers: BTreeMap<String, RuntimeHandlerConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandlerConfig {
    /// The runtime binary: an absolute path, or a name looked up on `PATH`
    /// (`runc` for the built-in `runc` handler; `oci` handlers only).
    #[serde(default, skip_serializing_if = "crate::config::path_is_empty")]
    pub path: PathBuf,
    /// `oci`: an OCI runtime driven through its command line; `internal`:
    /// berth's own, youki's libcontainer in the container's monitor.
    #[serde(default, rename = "type")]
    pub kind: RuntimeKind,
    /// The runtime's `--root`, by default `<run_root>/runtimes/<name>`; berth's
    /// alone: at start-up berth deletes any container there it has no record of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Pass `--systemd-cgroup`; by default when `cgroup_driver` is `systemd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_cgroup: Option<bool>,
    /// One runtime command running longer (30s by default) is killed, and its
    /// call fails; a VM-based runtime may need more for `create`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde::option")]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// An OCI runtime driven through its command line (runc, crun, kata-runtime, runsc).
    #[default]
    Oci,
    /// berth's own runtime, youki's libcontainer in the per-container monitor:
    /// nothing is exec'd to create, start, signal or delete a container.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Layers fetched (and unpacked) at once per pull.
    pub max_concurrent_downloads: usize,
    /// A pull with no progress for this long fails (`30s`, `2m`).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stall_timeout: Duration,
    /// Registries on `localhost`, `127.0.0.0/8` and `::1` speak HTTP unless they
    /// set `insecure_skip_verify`, as docker and containerd assume: a registry
    /// run for local work has no certificate.
    pub loopback_plain_http: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// IP of the Exec / Attach / PortForward server.
    pub address: String,
    /// Its port; 0 picks a free one.
    pub port: u16,
    /// A session whose connection moves nothing this long is ended, with its
    /// process (kubelet's stream idle timeout).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// PEM certificate chain: with `tls_key_file`, the server speaks HTTPS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the Prometheus endpoint (`127.0.0.1:9099`); empty: off.
    /// Reloaded on SIGHUP.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NriConfig {
    /// Serve NRI plugins on `nri.socket_path`.
    pub enable: bool,
    /// Where NRI plugins connect (NRI's own default).
    pub socket_path: PathBuf,
    /// Plugins berth starts itself: executables named `<index>-<name>`,
    /// started in the order of their names.
    pub plugin_path: PathBuf,
    /// Their configuration: `<index>-<name>.conf`, else `<name>.conf`.
    pub plugin_config_path: PathBuf,
    /// How long a connected plugin may take to register, and to answer its
    /// configuration and first synchronisation.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub plugin_registration_timeout: Duration,
    /// How long a plugin may take to answer one event before it is disconnected.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub plugin_request_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Mirrors tried in order before `<host>` itself: each a URL
    /// (`https://mirror.local:5000`), or a table `{ url, capabilities, username,
    /// password }` as below.
    pub mirrors: Vec<Mirror>,
    /// Fall back to `<host>` itself when no mirror could serve a pull; false:
    /// never contact it, as a `hosts.toml` whose `server` is a mirror.
    pub use_upstream: bool,
    /// Speak HTTP, not HTTPS, to `<host>`.
    pub plain_http: bool,
    /// Accept any TLS certificate from `<host>` (and its mirrors).
    pub insecure_skip_verify: bool,
}

/// A registry mirror: a URL, or a table with what it may be used for and its
/// own credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Mirror {
    Url(String),
    Detailed(MirrorConfig),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// `http://` or `https://`, with the host and an optional port.
    pub url: String,
    /// What the mirror is asked for, as `hosts.toml`'s: `resolve` (a tag to a
    /// digest) and `pull` (content by digest); by default both.
    #[serde(default = "MirrorCapability::all")]
    pub capabilities: Vec<MirrorCapability>,
    /// Credentials for this mirror alone; without them, the pull's own (from
    /// kubelet) are sent to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password that goes with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MirrorCapability {
    Pull,
    Resolve,
}

impl MirrorCapability {
    fn all() -> Vec<MirrorCapability> {
        vec![MirrorCapability::Pull, MirrorCapability::Resolve]
    }
}

impl Mirror {
    pub fn url(&self) -> &str {
        match self {
            Mirror::Url(url) => url,
            Mirror::Detailed(mirror) => &mirror.url,
        }
    }

    pub fn can(&self, capability: MirrorCapability) -> bool {
        match self {
            Mirror::Url(_) => true,
            Mirror::Detailed(mirror) => mirror.capabilities.contains(&capability),
        }
    }

    /// The mirror's own username and password, when it has them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match self {
            Mirror::Detailed(MirrorConfig { username: Some(user), password, .. }) => {
                Some((user, password.as_deref().unwrap_or_default()))
            }
            _ => None,
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { mirrors: Vec::new(), use_upstream: true, plain_http: false, insecure_skip_verify: false }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_root: PathBuf::from("/var/lib/berth"),
            run_root: PathBuf::from("/run/berth"),
            socket: PathBuf::from("/run/berth/berth.sock"),
            cgroup_driver: CgroupDriver::Cgroupfs,
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            log: LogConfig::default(),
            cni: CniConfig::default(),
            runtime: RuntimeConfig::default(),
            images: ImagesConfig::default(),
            streaming: StreamingConfig::default(),
            metrics: MetricsConfig::default(),
            nri: NriConfig::default(),
            registries: BTreeMap::new(),
        }
    }
}

impl Default for NriConfig {
    fn default() -> Self {
        NriConfig {
            enable: true,
            socket_path: PathBuf::from("/var/run/nri/nri.sock"),
            plugin_path: PathBuf::from("/opt/nri/plugins"),
            plugin_config_path: PathBuf::from("/etc/nri/conf.d"),
            plugin_registration_timeout: Duration::from_secs(5),
            plugin_request_timeout: Duration::from_secs(2),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Text }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let runc = RuntimeHandlerConfig {
            path: PathBuf::from("runc"),
            kind: RuntimeKind::Oci,
            root: None,
            systemd_cgroup: None,
            timeout: None,
        };
        RuntimeConfig {
            default_handler: DEFAULT_HANDLER.into(),
            handlers: BTreeMap::from([(DEFAULT_HANDLER.to_string(), runc)]),
        }
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig { max_concurrent_downloads: 3, stall_timeout: Duration::from_secs(60), loopback_plain_http: true }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
            idle_timeout: Duration::from_secs(4 * 3600),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl Config {
    /// The effective `--root` of a runtime handler.
    pub fn handler_root(&self, name: &str, handler: &RuntimeHandlerConfig) -> PathBuf {
        handler.root.clone().unwrap_or_else(|| self.run_root.join("runtimes").join(name))
    }

    /// Whether a handler is driven with `--systemd-cgroup`.
    pub fn handler_systemd_cgroup(&self, handler: &RuntimeHandlerConfig) -> bool {
        handler.systemd_cgroup.unwrap_or(self.cgroup_driver == CgroupDriver::Systemd)
    }

    /// How long one command of a handler's runtime may run.
    pub fn handler_timeout(&self, handler: &RuntimeHandlerConfig) -> Duration {
        handler.timeout.unwrap_or(crate::runtime::DEFAULT_TIMEOUT)
    }

    pub fn metadata_db(&self) -> PathBuf {
        self.state_root.join("metadata.redb")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.state_root.join("berth.lock")
    }
}

/// Resolves a binary the way a shell would: absolute or relative paths as they
/// are, bare names through `PATH`. Returns `None` when nothing executable is found.
pub fn resolve_binary(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if path.components().count() > 1 || path.is_absolute() {
        return executable(path).then(|| path.to_path_buf());
    }
    let search = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&search).map(|dir| dir.join(path)).find(|p| executable(p))
}

fn path_is_empty(path: &std::path::Path) -> bool {
    path.as_os_str().is_empty()
}
