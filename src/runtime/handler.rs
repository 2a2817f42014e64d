//! A configured runtime handler and the check that it can run at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{OciCli, OciRuntime};
use crate::config::{Config, RuntimeKind, resolve_binary};
use crate::error::{Classify, ErrorKind};

/// How long `<runtime> --version` may take before the runtime counts as broken.
const VERSION_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("runtime handler {0:?} is not configured")]
    Unknown(String),
    #[error("runtime handler {name:?}: binary {binary:?} not found or not executable")]
    BinaryMissing { name: String, binary: PathBuf },
    #[error("runtime handler {name:?}: `{binary} --version` failed: {message}")]
    Broken { name: String, binary: String, message: String },
}

impl Classify for HandlerError {
    fn kind(&self) -> ErrorKind {
        match self {
            HandlerError::Unknown(_) => ErrorKind::NotFound,
            HandlerError::BinaryMissing { .. } | HandlerError::Broken { .. } => ErrorKind::Unavailable,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeHandler {
    pub name: String,
    pub kind: RuntimeKind,
    /// As configured: a path or a bare name resolved through `PATH` when used.
    pub binary: PathBuf,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    /// The bound on each runtime command; past it the command is killed.
    pub timeout: Duration,
}

impl RuntimeHandler {
    /// What runs this handler's containers.
    pub fn runtime(&self) -> Arc<dyn OciRuntime> {
        match self.kind {
            RuntimeKind::Oci => Arc::new(OciCli::new(self)),
        }
    }

    /// Runs `<binary> --version` and returns its first line.
    pub async fn probe(&self) -> Result<String, HandlerError> {
        let binary = resolve_binary(&self.binary)
            .ok_or_else(|| HandlerError::BinaryMissing { name: self.name.clone(), binary: self.binary.clone() })?;
        let broken = |message: String| HandlerError::Broken {
            name: self.name.clone(),
            binary: binary.display().to_string(),
            message,
        };
        let run = tokio::process::Command::new(&binary).arg("--version").kill_on_drop(true).output();
        let output = tokio::time::timeout(VERSION_PROBE_TIMEOUT, run)
            .await
            .map_err(|_| broken(format!("no answer within {VERSION_PROBE_TIMEOUT:?}")))?
            .map_err(|e| broken(e.to_string()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(broken(format!("{}: {}", output.status, stderr.trim())));
        }
        Ok(String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or_default().trim().to_string())
    }
}

/// Every configured handler, and which one pods get when they name none.
#[derive(Debug, Clone)]
pub struct RuntimeHandlers {
    handlers: BTreeMap<String, RuntimeHandler>,
    default: String,
}

impl RuntimeHandlers {
    pub fn from_config(config: &Config) -> Self {
        let handlers = config
            .runtime
            .handlers
            .iter()
            .map(|(name, handler)| {
                let runtime = RuntimeHandler {
                    name: name.clone(),
                    kind: handler.kind,
                    binary: handler.path.clone(),
                    root: config.handler_root(name, handler),
                    systemd_cgroup: config.handler_systemd_cgroup(handler),
                    timeout: config.handler_timeout(handler),
                };
                (name.clone(), runtime)
            })
            .collect();
        RuntimeHandlers { handlers, default: config.runtime.default_handler.clone() }
    }

    /// The handler a pod asked for; the empty name means the default one.
    pub fn get(&self, name: &str) -> Result<&RuntimeHandler, HandlerError> {
        let name = if name.is_empty() { self.default.as_str() } else { name };
        self.handlers.get(name).ok_or_else(|| HandlerError::Unknown(name.to_string()))
    }

    pub fn default_handler(&self) -> Result<&RuntimeHandler, HandlerError> {
        self.get("")
    }

    pub fn iter(&self) -> impl Iterator<Item = &RuntimeHandler> {
        self.handlers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handlers_with(path: &str) -> RuntimeHandlers {
        let mut config = Config::default();
        config.runtime.handlers.get_mut("runc").unwrap().path = PathBuf::from(path);
        RuntimeHandlers::from_config(&config)
    }

    #[test]
    fn empty_name_is_the_default_handler() {
        let handlers = handlers_with("runc");
        assert_eq!(handlers.get("").unwrap().name, "runc");
        assert_eq!(handlers.get("runc").unwrap().root, PathBuf::from("/run/berth/runtimes/runc"));
        assert!(matches!(handlers.get("kata"), Err(HandlerError::Unknown(_))));
    }

    #[tokio::test]
    async fn probe_reports_a_missing_binary() {
        let handlers = handlers_with("/nonexistent/runc");
        let err = handlers.default_handler().unwrap().probe().await.unwrap_err();
        assert!(matches!(err, HandlerError::BinaryMissing { .. }), "{err}");
    }

    #[tokio::test]
    async fn probe_reports_a_failing_binary() {
        let handlers = handlers_with("/bin/false");
        let err = handlers.default_handler().unwrap().probe().await.unwrap_err();
        assert!(matches!(err, HandlerError::Broken { .. }), "{err}");
    }
}
