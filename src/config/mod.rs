//! berth's configuration: one TOML file plus drop-ins, every key with a default.
//!
//! The structs here are the single source of truth for the keys, their types and
//! their defaults. The README's configuration table documents them, and a test
//! below fails when a key is missing from it.

pub mod load;

pub use load::{ConfigError, ConfigSources, load};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/config.toml";
pub const DEFAULT_HANDLER: &str = "runc";

/// The effective configuration. Scalars come before tables in every struct so that
/// `berth config` can print it as TOML (TOML needs plain values before sub-tables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    /// Persistent state: the metadata store, blobs, snapshots.
    pub state_root: PathBuf,
    /// Volatile state: sockets, namespace pins, per-container runtime files.
    pub run_root: PathBuf,
    /// The CRI endpoint, serving RuntimeService and ImageService.
    pub socket: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// Image for pods that need an infra process (shared PID namespace); kept
    /// `pinned` so kubelet's image GC never removes it.
    pub sandbox_image: String,
    pub log: LogConfig,
    pub cni: CniConfig,
    pub runtime: RuntimeConfig,
    pub images: ImagesConfig,
    pub streaming: StreamingConfig,
    pub metrics: MetricsConfig,
    pub nri: NriConfig,
    /// Per-registry settings keyed by host (`docker.io`, `127.0.0.1:5000`).
    pub registries: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `berth=debug,tower=warn`. `RUST_LOG` wins.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Where network configs are read from; the first in lexical order is used.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked up, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin run may take before it is killed (with whatever it
    /// started) and the pod's setup or teardown fails.
    #[serde(with = "humantime_serde")]
    pub plugin_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The handler used when a pod names none (`RunPodSandboxRequest.runtime_handler` empty).
    pub default_handler: String,
    /// Runtime handlers by name, as kubelet's RuntimeClass refers to them.
    pub handlers: BTreeMap<String, RuntimeHandlerConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandlerConfig {
    /// The runtime binary: an absolute path, or a name looked up on `PATH`
    /// (`oci` handlers; an `internal` one has none).
    #[serde(default, skip_serializing_if = "crate::config::path_is_empty")]
    pub path: PathBuf,
    #[serde(default, rename = "type")]
    pub kind: RuntimeKind,
    /// The runtime's `--root`; default `<run_root>/runtimes/<handler name>`.
    /// It must be berth's alone: at start-up berth deletes any container held
    /// there that it has no record of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Pass `--systemd-cgroup`; default: true when `cgroup_driver` is `systemd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_cgroup: Option<bool>,
    /// How long one command of this runtime may run before it is killed and the
    /// call fails; default 30 s. A VM-based runtime may need more for `create`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    /// An OCI runtime driven through its command line (runc, crun, kata-runtime, runsc).
    #[default]
    Oci,
    /// berth's own runtime, youki's libcontainer in the per-container monitor:
    /// nothing is exec'd to create, start, signal or delete a container.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Layers downloaded (and unpacked) at once, per pull.
    pub max_concurrent_downloads: usize,
    /// A pull that makes no progress for this long is cancelled.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Registries on loopback addresses (`localhost`, `127.0.0.0/8`, `::1`)
    /// speak plain HTTP unless configured with `insecure_skip_verify`, as docker
    /// and containerd assume: a registry run for local work has no certificate.
    pub loopback_plain_http: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address of the Exec/Attach/PortForward server; port 0 picks a free one.
    pub address: String,
    pub port: u16,
    /// A session whose connection moves nothing for this long is ended (kubelet's
    /// stream idle timeout).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// PEM certificate chain and key: the server speaks HTTPS when both are set.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` of the Prometheus endpoint (`127.0.0.1:9099`); empty: off.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NriConfig {
    /// Serve NRI plugins on `socket_path`.
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
    pub plugin_registration_timeout: Duration,
    /// How long a plugin may take to answer one event before it is disconnected.
    #[serde(with = "humantime_serde")]
    pub plugin_request_timeout: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Endpoints tried in order before the registry itself (`https://mirror.local:5000`).
    pub mirrors: Vec<String>,
    /// Speak plain HTTP to this registry.
    pub plain_http: bool,
    /// Accept any TLS certificate from this registry.
    pub insecure_skip_verify: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key's dotted path; map keys (handler names, registry hosts) become `<name>` / `<host>`.
    fn key_paths(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        let Some(table) = value.as_table() else {
            out.push(prefix.to_string());
            return;
        };
        for (key, inner) in table {
            let key = match prefix {
                "runtime.handlers" => "<name>",
                "registries" => "<host>",
                _ => key.as_str(),
            };
            let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
            key_paths(inner, &path, out);
        }
    }

    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        let mut config = Config::default();
        config.registries.insert("example.org".into(), RegistryConfig::default());
        if let Some(runc) = config.runtime.handlers.get_mut(DEFAULT_HANDLER) {
            runc.root = Some("/r".into());
            runc.systemd_cgroup = Some(false);
        }
        let mut keys = Vec::new();
        key_paths(&toml::Value::try_from(&config).unwrap(), "", &mut keys);
        assert!(keys.len() > 15, "{keys:?}");
        for key in keys {
            assert!(readme.contains(&format!("| `{key}` |")), "README.md's configuration table lacks `{key}`");
        }
    }
}
