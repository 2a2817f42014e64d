//! Pod networking through CNI plugins, run directly per the CNI spec (1.0): which network
//! config is in force and whether its plugins are installed, the pod CIDR kubelet hands down,
//! and attaching / detaching a pod's netns with a cache of what was done (as libcni keeps
//! under `/var/lib/cni/results`), so DEL works after a restart whatever the conf dir holds.
//!
//! Callers serialise `attach` and `detach` per container; calls for different containers may
//! run at once (plugins lock their own shared state, e.g. host-local's allocations).

mod attachment;
mod cache;
mod cni_config;
mod error;
mod plugin_exec;
mod result;

pub use attachment::{Attachment, Bandwidth, Dns, PodNetwork, PortMapping};
pub use cni_config::{CniConfigError, NetworkConfigList, PluginConfig, find_plugin, load_network_config};
pub use error::{NetworkError, PluginError};

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use crate::config::CniConfig;
use cache::{CacheEntry, ResultCache};
use plugin_exec::{Command, Invocation, PluginRunner};

pub struct Network {
    /// Changed by SIGHUP (`cni.conf_dir`).
    conf_dir: RwLock<PathBuf>,
    runner: PluginRunner,
    cache: ResultCache,
    /// From `UpdateRuntimeConfig`; passed to plugins that allocate from it.
    pod_cidr: RwLock<Option<String>>,
}

impl Network {
    /// `cache_dir` holds one file per attached container; it is created when first needed.
    pub fn new(config: &CniConfig, cache_dir: PathBuf) -> Self {
        Network {
            conf_dir: RwLock::new(config.conf_dir.clone()),
            runner: PluginRunner { bin_dirs: config.bin_dirs.clone(), timeout: config.plugin_timeout },
            cache: ResultCache::new(cache_dir),
            pod_cidr: RwLock::new(None),
        }
    }

    /// Bounds each plugin run (`cni.plugin_timeout` otherwise).
    pub fn with_plugin_timeout(mut self, timeout: Duration) -> Self {
        self.runner.timeout = timeout;
        self
    }

    /// The network config in force, if it is usable (all of its plugins installed).
    /// Read from disk each time, so a config written or fixed after start is seen at once.
    pub fn ready_config(&self) -> Result<NetworkConfigList, CniConfigError> {
        let list = load_network_config(&self.conf_dir())?;
        list.check_plugins(&self.runner.bin_dirs)?;
        Ok(list)
    }

    /// Where network configs are read from, from the next pod on; pods up
    /// keep the network they were attached to (DEL reads it from the cache).
    pub fn set_conf_dir(&self, dir: PathBuf) {
        *self.conf_dir.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = dir;
    }

    fn conf_dir(&self) -> PathBuf {
        self.conf_dir.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn set_pod_cidr(&self, cidr: Option<String>) {
        let mut guard = self.pod_cidr.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = cidr;
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Runs ADD for each plugin of the network in force, in order, each given the previous
    /// one's result (`lo` is up already: the sandbox brings it up as it makes the netns). All or nothing: on failure everything is deleted again
    /// and no cache entry remains.
    pub async fn attach(&self, attachment: &Attachment) -> Result<PodNetwork, NetworkError> {
        attachment.validate()?;
        let list = self.ready_config()?;
        let runtime_config = attachment.runtime_config(self.pod_cidr().as_deref());
        let mut entry = CacheEntry::new(
            attachment.container_id.clone(),
            attachment.ifname.clone(),
            attachment.netns.clone(),
            list.to_value(),
            attachment.cni_args(),
            runtime_config,
        );
        // Written ahead of ADD: should berth die mid-ADD, a later detach still finds what to DEL.
        self.cache.write(&entry).await?;
        match self.add_all(&list, &mut entry).await {
            Ok(network) => Ok(network),
            Err(e) => {
                tracing::warn!(container_id = %entry.container_id, error = %e, "CNI ADD failed; deleting what it did");
                // delete_all logs each failure; the ADD's error is the one the caller can act on.
                let _ = self.delete_all(&list, &entry, Some(&entry.netns)).await;
                if let Err(cache_error) = self.cache.remove(&entry.container_id).await {
                    tracing::error!(error = %cache_error, "removing the CNI cache entry of a failed ADD");
                }
                Err(e)
            }
        }
    }

    /// Runs DEL for each plugin of the cached network config, in reverse order.
    /// Without a cache entry there is nothing to do. `netns` (default: the one attached) is
    /// passed only if it is still a network namespace. An error is returned, and the entry
    /// kept so the call can be retried, only if a plugin failed other than because what it
    /// would remove is already gone.
    pub async fn detach(&self, container_id: &str, netns: Option<&Path>) -> Result<(), NetworkError> {
        attachment::validate_container_id(container_id)?;
        let Some(entry) = self.cache.read(container_id)? else {
            return Ok(());
        };
        let list = self.cached_list(container_id, &entry)?;
        let netns = netns.unwrap_or(&entry.netns);
        self.delete_all(&list, &entry, Some(netns)).await?;
        self.cache.remove(container_id).await
    }

    /// The attachment recorded for `container_id`, e.g. for PodSandboxStatus after a restart.
    pub fn cached(&self, container_id: &str) -> Option<PodNetwork> {
        attachment::validate_container_id(container_id).ok()?;
        let entry = match self.cache.read(container_id) {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!(container_id, error = %e, "reading the CNI cache");
                return None;
            }
        };
        let result = entry.result?;
        result::pod_network(&result, &entry.if_name)
            .inspect_err(|reason| tracing::warn!(container_id, %reason, "cached CNI result is unusable"))
            .ok()
    }

    /// The ADD sequence; `entry.result` follows each plugin's result, so a failure's cleanup
    /// can hand DEL the latest one.
    async fn add_all(&self, list: &NetworkConfigList, entry: &mut CacheEntry) -> Result<PodNetwork, NetworkError> {
        for plugin in &list.plugins {
            let add = invocation(Command::Add, entry, Some(&entry.netns), &entry.if_name);
            let stdin = plugin_exec::plugin_stdin(list, plugin, entry.result.as_ref(), &entry.runtime_config);
            let result = self.runner.run(&list.name, &plugin.kind, &add, &stdin).await?;
            let result = result.ok_or_else(|| bad_result(list, &plugin.kind, "ADD printed no result".into()))?;
            entry.result = Some(result);
        }
        let last = list.plugins.last().map_or("", |plugin| plugin.kind.as_str());
        let result = entry.result.as_ref().ok_or_else(|| bad_result(list, last, "the network has no plugin".into()))?;
        let network = result::pod_network(result, &entry.if_name).map_err(|reason| bad_result(list, last, reason))?;
        self.cache.write(entry).await?;
        Ok(network)
    }

    /// The DEL sequence: the list in reverse. Every plugin is run even after one
    /// fails, so as much as possible is released; the first failure that is not about
    /// something already gone is returned.
    async fn delete_all(
        &self,
        list: &NetworkConfigList,
        entry: &CacheEntry,
        netns: Option<&Path>,
    ) -> Result<(), NetworkError> {
        let netns = netns.filter(|path| attachment::is_netns(path));
        let mut first_error = None;
        for plugin in list.plugins.iter().rev() {
            let del = invocation(Command::Del, entry, netns, &entry.if_name);
            let stdin = plugin_exec::plugin_stdin(list, plugin, entry.result.as_ref(), &entry.runtime_config);
            if let Err(e) = self.runner.run(&list.name, &plugin.kind, &del, &stdin).await {
                if is_already_gone(&e) {
                    tracing::info!(container_id = %entry.container_id, error = %e, "CNI DEL: already gone");
                } else {
                    tracing::warn!(container_id = %entry.container_id, error = %e, "CNI DEL failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn cached_list(&self, container_id: &str, entry: &CacheEntry) -> Result<NetworkConfigList, NetworkError> {
        let path = self.cache.path(container_id);
        NetworkConfigList::from_value(entry.config.clone(), &path)
            .map_err(|reason| NetworkError::CacheCorrupt { path, reason })
    }
}

/// DEL is idempotent: failing because the netns or interface is gone is success.
fn is_already_gone(error: &NetworkError) -> bool {
    matches!(error, NetworkError::Plugin(e) if e.is_already_gone())
}

fn invocation<'a>(command: Command, entry: &'a CacheEntry, netns: Option<&'a Path>, ifname: &'a str) -> Invocation<'a> {
    Invocation { command, container_id: &entry.container_id, netns, ifname, cni_args: &entry.cni_args }
}

fn bad_result(list: &NetworkConfigList, plugin: &str, reason: String) -> NetworkError {
    NetworkError::BadResult { network: list.name.clone(), plugin: plugin.to_string(), command: "ADD", reason }
}

#[cfg(test)]
mod fake_plugin_tests;
#[cfg(test)]
mod real_plugin_tests;
