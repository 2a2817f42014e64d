//! Pod networking through CNI plugins. For now: which network config is in force,
//! whether its plugins are installed, and the pod CIDR kubelet hands down.

mod cni_config;

pub use cni_config::{CniConfigError, NetworkConfigList, PluginConfig, find_plugin, load_network_config};

use std::path::PathBuf;
use std::sync::RwLock;

use crate::config::CniConfig;

pub struct Network {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    /// From `UpdateRuntimeConfig`; passed to plugins that allocate from it.
    pod_cidr: RwLock<Option<String>>,
}

impl Network {
    pub fn new(config: &CniConfig) -> Self {
        Network { conf_dir: config.conf_dir.clone(), bin_dirs: config.bin_dirs.clone(), pod_cidr: RwLock::new(None) }
    }

    /// The network config in force, if it is usable (all of its plugins installed).
    /// Read from disk each time, so a config written or fixed after start is seen at once.
    pub fn ready_config(&self) -> Result<NetworkConfigList, CniConfigError> {
        let list = load_network_config(&self.conf_dir)?;
        list.check_plugins(&self.bin_dirs)?;
        Ok(list)
    }

    pub fn set_pod_cidr(&self, cidr: Option<String>) {
        let mut guard = self.pod_cidr.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = cidr;
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}
