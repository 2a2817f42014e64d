//! Reads the main file and its drop-ins, merges them with the command line, and
//! validates the result. Each key remembers where it was last set, so every
//! error names the key and the file (or "command line") that set it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, MirrorCapability, RuntimeKind};

/// Where the configuration comes from, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The main file. `None` means the default path, which may be absent; an
    /// explicitly named file must exist.
    pub file: Option<PathBuf>,
    /// Drop-ins merged in lexical order; default `config.d` beside the main file.
    pub drop_in_dir: Option<PathBuf>,
    /// Command-line overrides as a TOML table (`{ log = { level = "debug" } }`).
    pub overrides: Table,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Key { origin: Origin, key: String, message: String },
}

/// Where a key's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::CommandLine => f.write_str("command line"),
        }
    }
}

/// Loads, merges and validates the configuration.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    load_with_default(sources, Path::new(super::DEFAULT_CONFIG_FILE))
}

/// [`load`], with the main file's default path given (tests name their own).
fn load_with_default(sources: &ConfigSources, default_file: &Path) -> Result<Config, ConfigError> {
    let main_file = sources.file.clone().unwrap_or_else(|| default_file.to_path_buf());
    let drop_in_dir =
        sources.drop_in_dir.clone().unwrap_or_else(|| main_file.parent().unwrap_or(Path::new("/")).join("config.d"));

    let mut layers: Vec<(Origin, Table)> = Vec::new();
    match read_table(&main_file) {
        Ok(table) => layers.push((Origin::File(main_file), table)),
        Err(ConfigError::Read { source, .. })
            if sources.file.is_none() && source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for path in drop_ins(&drop_in_dir)? {
        let table = read_table(&path)?;
        layers.push((Origin::File(path), table));
    }
    layers.push((Origin::CommandLine, sources.overrides.clone()));

    // Layers merge onto the defaults, so a file that adds a handler keeps `runc`.
    let mut merged = match Value::try_from(Config::default()) {
        Ok(Value::Table(table)) => table,
        _ => Table::new(),
    };
    let mut origins = BTreeMap::new();
    for (origin, table) in layers {
        // Each layer must make sense on its own, so that an unknown key is blamed
        // on the file that has it rather than on the merge.
        parse(Value::Table(table.clone()), &origin)?;
        merge(&mut merged, table, "", &origin, &mut origins);
    }
    let config = parse(Value::Table(merged), &Origin::Default)?;
    validate(&config, &origins)?;
    Ok(config)
}

fn read_table(path: &Path) -> Result<Table, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    text.parse::<Table>()
        .map_err(|e| ConfigError::Syntax { path: path.to_path_buf(), message: e.to_string().trim().to_string() })
}

/// `*.toml` files of the drop-in directory in lexical order; a missing directory is none.
fn drop_ins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir.to_path_buf(), source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn parse(value: Value, origin: &Origin) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key { origin: origin.clone(), key, message: e.into_inner().message().to_string() }
    })
}

/// Tables merge key by key; any other value (arrays included) replaces the old one.
fn merge(into: &mut Table, from: Table, prefix: &str, origin: &Origin, origins: &mut BTreeMap<String, Origin>) {
    for (key, value) in from {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(table)) => merge(existing, table, &path, origin, origins),
            (_, value) => {
                record_origins(&value, &path, origin, origins);
                into.insert(key, value);
            }
        }
    }
}

fn record_origins(value: &Value, path: &str, origin: &Origin, origins: &mut BTreeMap<String, Origin>) {
    origins.insert(path.to_string(), origin.clone());
    if let Value::Table(table) = value {
        for (key, inner) in table {
            record_origins(inner, &format!("{path}.{key}"), origin, origins);
        }
    }
}

fn validate(config: &Config, origins: &BTreeMap<String, Origin>) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| ConfigError::Key {
        origin: origins.get(key).cloned().unwrap_or(Origin::Default),
        key: key.to_string(),
        message,
    };

    for (key, path) in [("state_root", &config.state_root), ("run_root", &config.run_root), ("socket", &config.socket)]
    {
        if !path.is_absolute() {
            return Err(fail(key, format!("must be an absolute path, got {:?}", path.display().to_string())));
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&config.log.level) {
        return Err(fail("log.level", format!("not a valid log filter {:?}: {e}", config.log.level)));
    }
    if config.cni.bin_dirs.is_empty() {
        return Err(fail("cni.bin_dirs", "must name at least one directory".into()));
    }
    if !config.runtime.handlers.contains_key(&config.runtime.default_handler) {
        let known: Vec<_> = config.runtime.handlers.keys().cloned().collect();
        return Err(fail(
            "runtime.default_handler",
            format!("no handler named {:?} (configured: {})", config.runtime.default_handler, known.join(", ")),
        ));
    }
    for (name, handler) in &config.runtime.handlers {
        if name.is_empty() || name.contains(['/', '\0']) {
            return Err(fail(
                &format!("runtime.handlers.{name}"),
                "a handler name must be non-empty and without '/'".into(),
            ));
        }
        match handler.kind {
            RuntimeKind::Oci if handler.path.as_os_str().is_empty() => {
                return Err(fail(&format!("runtime.handlers.{name}.path"), "must not be empty".into()));
            }
            RuntimeKind::Internal if !handler.path.as_os_str().is_empty() => {
                return Err(fail(&format!("runtime.handlers.{name}.path"), "an internal handler runs no binary".into()));
            }
            _ => {}
        }
    }
    if config.images.max_concurrent_downloads == 0 {
        return Err(fail("images.max_concurrent_downloads", "must be at least 1".into()));
    }
    if config.images.stall_timeout.is_zero() {
        return Err(fail("images.stall_timeout", "must be longer than zero".into()));
    }
    if !config.metrics.address.is_empty() && config.metrics.address.parse::<SocketAddr>().is_err() {
        return Err(fail("metrics.address", format!("not an IP address and port: {:?}", config.metrics.address)));
    }
    if config.streaming.idle_timeout.is_zero() {
        return Err(fail("streaming.idle_timeout", "must be more than 0".into()));
    }
    if config.streaming.tls_cert_file.is_some() != config.streaming.tls_key_file.is_some() {
        return Err(fail("streaming.tls_cert_file", "set together with streaming.tls_key_file, or neither".into()));
    }
    if config.streaming.address.parse::<IpAddr>().is_err() {
        return Err(fail("streaming.address", format!("not an IP address: {:?}", config.streaming.address)));
    }
    for (host, registry) in &config.registries {
        for mirror in &registry.mirrors {
            let url = mirror.url();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(fail(
                    &format!("registries.{host}.mirrors"),
                    format!("mirror {url:?} must be an http:// or https:// URL"),
                ));
            }
        }
        if registry.mirrors.iter().all(|m| !m.can(MirrorCapability::Pull)) && !registry.use_upstream {
            return Err(fail(
                &format!("registries.{host}.use_upstream"),
                "is false, but no mirror of this registry may serve pulls: nothing could".into(),
            ));
        }
    }
    Ok(())
}

/// Sets `dotted.key = value` in a table of overrides, creating intermediate tables.
pub fn set_override(table: &mut Table, dotted_key: &str, value: Value) {
    let mut parts: Vec<&str> = dotted_key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let entry = current.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        match entry {
            Value::Table(inner) => current = inner,
            _ => return,
        }
    }
    current.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CgroupDriver, LogFormat};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    fn sources(dir: &Path) -> ConfigSources {
        ConfigSources { file: Some(dir.join("config.toml")), ..Default::default() }
    }

    #[test]
    fn absent_default_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let sources = ConfigSources { file: None, drop_in_dir: Some(dir.path().join("none")), overrides: Table::new() };
        // Not the real default path, which may exist on a developer's machine.
        assert_eq!(load_with_default(&sources, &dir.path().join("absent.toml")).unwrap(), Config::default());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(&sources(dir.path())).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn drop_ins_merge_in_lexical_order_and_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.toml", "cgroup_driver = \"systemd\"\n[log]\nlevel = \"warn\"\nformat = \"json\"\n");
        write(dir.path(), "config.d/20-b.toml", "[log]\nlevel = \"debug\"\n");
        write(dir.path(), "config.d/10-a.toml", "[log]\nlevel = \"trace\"\n[cni]\nbin_dirs = [\"/x\"]\n");
        write(dir.path(), "config.d/30-ignored.conf", "not toml at all [");
        let mut src = sources(dir.path());
        let config = load(&src).unwrap();
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(config.cni.bin_dirs, vec![PathBuf::from("/x")]);
        assert_eq!(config.cni.conf_dir, PathBuf::from("/etc/cni/net.d"));

        set_override(&mut src.overrides, "log.level", Value::String("error".into()));
        assert_eq!(load(&src).unwrap().log.level, "error");
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.toml", "");
        let bad = write(dir.path(), "config.d/50-bad.toml", "[log]\nlevle = \"debug\"\n");
        let err = load(&sources(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(err.contains("levle"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "config.toml", "[images]\nmax_concurrent_downloads = \"many\"\n");
        let err = load(&sources(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("images.max_concurrent_downloads"), "{err}");
    }

    #[test]
    fn semantic_error_is_blamed_on_the_file_that_set_the_key() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.toml", "[runtime]\ndefault_handler = \"runc\"\n");
        let culprit = write(dir.path(), "config.d/90.toml", "[runtime]\ndefault_handler = \"kata\"\n");
        let err = load(&sources(dir.path())).unwrap_err().to_string();
        assert!(err.contains(&culprit.display().to_string()), "{err}");
        assert!(err.contains("runtime.default_handler"), "{err}");
        assert!(err.contains("kata"), "{err}");
    }

    #[test]
    fn added_handler_keeps_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "config.toml", "[runtime.handlers.crun]\npath = \"/usr/bin/crun\"\n");
        let config = load(&sources(dir.path())).unwrap();
        assert!(config.runtime.handlers.contains_key("runc"));
        assert!(config.runtime.handlers.contains_key("crun"));
    }

    #[test]
    fn syntax_error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "config.toml", "log = [\n");
        let err = load(&sources(dir.path())).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        assert!(err.to_string().contains(&file.display().to_string()));
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let mut config = Config::default();
        config.registries.insert(
            "docker.io".into(),
            crate::config::RegistryConfig { mirrors: vec![crate::config::Mirror::Url("https://m.local".into())], ..Default::default() },
        );
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
    }
}
