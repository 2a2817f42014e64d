//! A configured runtime handler and the check that it can run at all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{OciCli, OciRuntime, RuntimeError, RuntimeFeatures};
use crate::config::{Config, RuntimeKind};
use crate::error::{Classify, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("runtime handler {0:?} is not configured")]
    Unknown(String),
    #[error("runtime handler {name:?} cannot run containers: {source}")]
    Unhealthy {
        name: String,
        #[source]
        source: Box<RuntimeError>,
    },
}

impl Classify for HandlerError {
    fn kind(&self) -> ErrorKind {
        match self {
            HandlerError::Unknown(_) => ErrorKind::NotFound,
            HandlerError::Unhealthy { .. } => ErrorKind::Unavailable,
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
            RuntimeKind::Internal => super::internal::runtime(self),
        }
    }

    /// Whether the handler's runtime can run containers, and what it says of itself.
    pub async fn probe(&self) -> Result<String, HandlerError> {
        let unhealthy = |source| HandlerError::Unhealthy { name: self.name.clone(), source: Box::new(source) };
        self.runtime().health().await.map_err(unhealthy)
    }

    /// What the handler's runtime can do, as Status reports it to kubelet.
    pub fn features(&self) -> RuntimeFeatures {
        self.runtime().features()
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
        assert!(matches!(&err, HandlerError::Unhealthy { source, .. } if matches!(**source, RuntimeError::Spawn { .. })), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn probe_reports_a_failing_binary() {
        let handlers = handlers_with("/bin/false");
        let err = handlers.default_handler().unwrap().probe().await.unwrap_err();
        assert!(matches!(&err, HandlerError::Unhealthy { source, .. } if matches!(**source, RuntimeError::Failed { .. })), "{err}");
    }
}
