//! Finding and reading the CNI network configuration, per the CNI spec: the
//! first valid file in lexical order among `*.conflist`, `*.conf` and `*.json`
//! in the conf dir; a single-plugin `.conf` is read as a list of one.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CniConfigError {
    #[error("no network config found in {0}")]
    NoConfig(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("network {network:?} ({path}): plugin {plugin:?} not found in {bin_dirs}")]
    PluginMissing { network: String, path: PathBuf, plugin: String, bin_dirs: String },
}

/// A network configuration list, with each plugin's configuration kept as the raw
/// JSON the plugin will receive.
#[derive(Debug, Clone)]
pub struct NetworkConfigList {
    pub source: PathBuf,
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The plugin binary's name (`bridge`, `portmap`).
    pub kind: String,
    pub raw: Value,
}

#[derive(Deserialize)]
struct ListFile {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    name: String,
    plugins: Vec<Value>,
}

#[derive(Deserialize)]
struct SingleFile {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The network config in use: the first file in `conf_dir` that parses. Files that
/// do not are skipped with a warning, as libcni's users do.
pub fn load_network_config(conf_dir: &Path) -> Result<NetworkConfigList, CniConfigError> {
    let entries = match std::fs::read_dir(conf_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CniConfigError::NoConfig(conf_dir.to_path_buf()));
        }
        Err(source) => return Err(CniConfigError::Read { path: conf_dir.to_path_buf(), source }),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "conflist" || ext == "conf" || ext == "json"))
        .collect();
    files.sort();
    for path in files {
        match read_file(&path) {
            Ok(list) => return Ok(list),
            Err(reason) => tracing::warn!(path = %path.display(), %reason, "skipping invalid CNI network config"),
        }
    }
    Err(CniConfigError::NoConfig(conf_dir.to_path_buf()))
}

fn read_file(path: &Path) -> Result<NetworkConfigList, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let raw: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let is_list = path.extension().is_some_and(|ext| ext == "conflist");
    if is_list {
        return parse_list(raw, path);
    }
    let single: SingleFile = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
    Ok(NetworkConfigList {
        source: path.into(),
        cni_version: single.cni_version,
        name: single.name,
        plugins: vec![PluginConfig { kind: single.kind, raw }],
    })
}

fn parse_list(raw: Value, source: &Path) -> Result<NetworkConfigList, String> {
    let list: ListFile = serde_json::from_value(raw).map_err(|e| e.to_string())?;
    if list.plugins.is_empty() {
        return Err("`plugins` is empty".into());
    }
    let plugins = list.plugins.into_iter().map(plugin).collect::<Result<_, _>>()?;
    Ok(NetworkConfigList { source: source.into(), cni_version: list.cni_version, name: list.name, plugins })
}

fn plugin(raw: Value) -> Result<PluginConfig, String> {
    let kind = raw
        .get("type")
        .and_then(Value::as_str)
        .filter(|kind| !kind.is_empty() && !kind.contains('/'))
        .ok_or("a plugin has no valid `type`")?
        .to_string();
    Ok(PluginConfig { kind, raw })
}

/// The first executable named `plugin` in the bin dirs.
pub fn find_plugin(bin_dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    bin_dirs.iter().map(|dir| dir.join(plugin)).find_map(|path| crate::config::resolve_binary(&path))
}

impl NetworkConfigList {
    /// The list as a conflist document, exactly as its plugins receive it (a single-plugin
    /// `.conf` becomes a list of one). The result cache keeps this so DEL runs with the config
    /// ADD ran with, whatever happens to the conf dir meanwhile.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins.iter().map(|p| p.raw.clone()).collect::<Vec<_>>(),
        })
    }

    /// Reads back what [`NetworkConfigList::to_value`] wrote; `source` says where it came from.
    pub fn from_value(raw: Value, source: &Path) -> Result<Self, String> {
        parse_list(raw, source)
    }

    /// Every plugin of the list must be installed for the network to be usable.
    pub fn check_plugins(&self, bin_dirs: &[PathBuf]) -> Result<(), CniConfigError> {
        for plugin in &self.plugins {
            if find_plugin(bin_dirs, &plugin.kind).is_none() {
                let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
                return Err(CniConfigError::PluginMissing {
                    network: self.name.clone(),
                    path: self.source.clone(),
                    plugin: plugin.kind.clone(),
                    bin_dirs: dirs.join(":"),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#;

    #[test]
    fn picks_first_valid_file_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("05-broken.conflist"), "{").unwrap();
        std::fs::write(dir.path().join("10-pods.conflist"), LIST).unwrap();
        std::fs::write(dir.path().join("20-other.conf"), r#"{"name":"other","type":"ptp"}"#).unwrap();
        std::fs::write(dir.path().join("00-readme.txt"), "ignored").unwrap();
        let list = load_network_config(dir.path()).unwrap();
        assert_eq!(list.name, "pods");
        assert_eq!(list.cni_version, "1.0.0");
        let kinds: Vec<_> = list.plugins.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["bridge", "portmap"]);
    }

    #[test]
    fn single_plugin_conf_becomes_a_list_of_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-x.conf"), r#"{"cniVersion":"0.4.0","name":"x","type":"ptp","ipam":{}}"#)
            .unwrap();
        let list = load_network_config(dir.path()).unwrap();
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0].kind, "ptp");
        assert!(list.plugins[0].raw.get("ipam").is_some());
    }

    #[test]
    fn empty_or_missing_dir_has_no_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_network_config(dir.path()), Err(CniConfigError::NoConfig(_))));
        assert!(matches!(load_network_config(&dir.path().join("nope")), Err(CniConfigError::NoConfig(_))));
    }

    #[test]
    fn list_round_trips_through_its_json_form() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-x.conf"), r#"{"cniVersion":"1.0.0","name":"x","type":"ptp","mtu":1400}"#)
            .unwrap();
        let list = load_network_config(dir.path()).unwrap();
        let again = NetworkConfigList::from_value(list.to_value(), Path::new("cache")).unwrap();
        assert_eq!((again.name.as_str(), again.cni_version.as_str()), ("x", "1.0.0"));
        assert_eq!(again.plugins.len(), 1);
        assert_eq!(again.plugins[0].raw, list.plugins[0].raw);
    }

    #[test]
    fn missing_plugin_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-pods.conflist"), LIST).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let list = load_network_config(dir.path()).unwrap();
        let err = list.check_plugins(std::slice::from_ref(&bin)).unwrap_err().to_string();
        assert!(err.contains("\"bridge\""), "{err}");
    }
}
