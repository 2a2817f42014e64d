//! SIGHUP: read the configuration again, apply what can change while berth
//! runs, and say what waits for a restart. A file that does not load changes
//! nothing: berth keeps serving with what it has.

use std::sync::Arc;

use toml::Value;

use crate::config::{self, Config, ConfigSources};
use crate::daemon::Daemon;
use crate::logging::LevelControl;
use crate::metrics::{Metrics, Served};

/// The keys (and tables, for every key below them) applied without a restart.
const RELOADABLE: &[&str] = &["log.level", "registries", "cni.conf_dir", "metrics.address"];

pub struct Reloader {
    sources: ConfigSources,
    /// What is in force: the start-up configuration with what reloads applied.
    in_force: Config,
    daemon: Arc<Daemon>,
    levels: Option<LevelControl>,
    metrics: Arc<Metrics>,
    endpoint: Option<Served>,
}

impl Reloader {
    pub fn new(
        sources: ConfigSources,
        in_force: Config,
        daemon: Arc<Daemon>,
        levels: Option<LevelControl>,
        metrics: Arc<Metrics>,
        endpoint: Option<Served>,
    ) -> Self {
        Reloader { sources, in_force, daemon, levels, metrics, endpoint }
    }

    pub async fn reload(&mut self) {
        let sources = self.sources.clone();
        let loaded = match tokio::task::spawn_blocking(move || config::load(&sources)).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: reading the configuration failed; nothing changed");
                return;
            }
        };
        let wanted = match loaded {
            Ok(wanted) => wanted,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the configuration does not load; nothing changed");
                return;
            }
        };
        let changed = changed_keys(&self.in_force, &wanted);
        let (live, later): (Vec<String>, Vec<String>) = changed.into_iter().partition(|key| reloadable(key));
        let mut applied = Vec::new();
        if live.iter().any(|k| k == "log.level") && self.apply_level(&wanted) {
            applied.push("log.level");
        }
        if live.iter().any(|k| k.starts_with("registries")) {
            self.daemon.images().set_registries(wanted.registries.clone());
            self.in_force.registries = wanted.registries.clone();
            applied.push("registries");
        }
        if live.iter().any(|k| k == "cni.conf_dir") {
            self.daemon.network().set_conf_dir(wanted.cni.conf_dir.clone());
            self.in_force.cni.conf_dir = wanted.cni.conf_dir.clone();
            applied.push("cni.conf_dir");
        }
        if live.iter().any(|k| k == "metrics.address") && self.apply_metrics_address(&wanted).await {
            applied.push("metrics.address");
        }
        if applied.is_empty() && later.is_empty() {
            tracing::info!("SIGHUP: the configuration is unchanged");
        } else if !applied.is_empty() {
            tracing::info!(applied = ?applied, "SIGHUP: configuration reloaded");
        }
        if !later.is_empty() {
            tracing::warn!(keys = ?later, "SIGHUP: changed, but in force only after a restart");
        }
    }

    fn apply_level(&mut self, wanted: &Config) -> bool {
        let result = match &self.levels {
            Some(levels) => levels.set_level(&wanted.log.level),
            None => return false,
        };
        match result {
            Ok(()) => {
                self.in_force.log.level = wanted.log.level.clone();
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: log.level not changed");
                false
            }
        }
    }

    /// The new address is bound before the old one is let go: a port that is
    /// taken leaves the endpoint where it was.
    async fn apply_metrics_address(&mut self, wanted: &Config) -> bool {
        let address = &wanted.metrics.address;
        let served = if address.is_empty() {
            None
        } else {
            match Served::start(address, self.metrics.clone()).await {
                Ok(served) => Some(served),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: metrics.address not changed");
                    return false;
                }
            }
        };
        match &served {
            Some(served) => tracing::info!(address = %served.address, "metrics endpoint serving"),
            None => tracing::info!("metrics endpoint off"),
        }
        self.endpoint = served;
        self.in_force.metrics.address = address.clone();
        true
    }
}

fn reloadable(key: &str) -> bool {
    RELOADABLE.iter().any(|r| key == *r || key.strip_prefix(r).is_some_and(|rest| rest.starts_with('.')))
}

/// The dotted keys whose values differ (added or removed ones included).
fn changed_keys(before: &Config, after: &Config) -> Vec<String> {
    let (Ok(before), Ok(after)) = (Value::try_from(before), Value::try_from(after)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    diff(&before, &after, "", &mut changed);
    changed
}

fn diff(before: &Value, after: &Value, prefix: &str, out: &mut Vec<String>) {
    match (before, after) {
        (Value::Table(before), Value::Table(after)) => {
            let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for key in keys {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match (before.get(key), after.get(key)) {
                    (Some(b), Some(a)) => diff(b, a, &path, out),
                    _ => out.push(path),
                }
            }
        }
        (before, after) if before != after => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_sorted_into_live_and_later() {
        let before = Config::default();
        let mut after = Config::default();
        after.log.level = "debug".into();
        after.state_root = "/elsewhere".into();
        after.registries.insert("quay.io".into(), Default::default());
        after.cni.plugin_timeout = std::time::Duration::from_secs(5);
        let changed = changed_keys(&before, &after);
        assert_eq!(changed, ["cni.plugin_timeout", "log.level", "registries.quay.io", "state_root"]);
        let live: Vec<&String> = changed.iter().filter(|k| reloadable(k)).collect();
        assert_eq!(live, ["log.level", "registries.quay.io"]);
        assert!(!reloadable("log.levels"), "a prefix of a name is not the key");
    }
}
