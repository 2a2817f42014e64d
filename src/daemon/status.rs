//! The `Status` RPC: can this node run pods right now, and if not, why.

use std::collections::BTreeMap;

use super::Daemon;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionKind {
    RuntimeReady,
    NetworkReady,
}

impl ConditionKind {
    /// The condition type string kubelet looks for.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionKind::RuntimeReady => "RuntimeReady",
            ConditionKind::NetworkReady => "NetworkReady",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: ConditionKind,
    pub ready: bool,
    /// CamelCase, machine-readable; empty when ready.
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct HandlerStatus {
    /// Empty for the default handler, as the CRI wants it listed.
    pub name: String,
    pub features: crate::runtime::RuntimeFeatures,
}

#[derive(Debug, Clone)]
pub struct NodeStatus {
    pub conditions: Vec<Condition>,
    pub handlers: Vec<HandlerStatus>,
    /// Verbose only: JSON values keyed by topic.
    pub info: BTreeMap<String, String>,
}

/// The reasons containerd gives, so that tooling matching on them keeps working.
const RUNTIME_NOT_READY: &str = "RuntimeNotReady";
const NETWORK_NOT_READY: &str = "NetworkPluginNotReady";

impl Daemon {
    pub async fn status(&self, verbose: bool) -> NodeStatus {
        let runtime = match self.handlers.default_handler() {
            Ok(handler) => handler.probe().await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let network = self.network.ready_config().map(|_| ()).map_err(|e| e.to_string());
        let conditions = vec![
            condition(ConditionKind::RuntimeReady, runtime, RUNTIME_NOT_READY),
            condition(ConditionKind::NetworkReady, network, NETWORK_NOT_READY),
        ];

        let status = |name: String, handler: &crate::runtime::RuntimeHandler| HandlerStatus {
            name,
            features: handler.features(),
        };
        let mut handlers: Vec<HandlerStatus> =
            self.handlers.default_handler().map(|h| status(String::new(), h)).into_iter().collect();
        handlers.extend(self.handlers.iter().map(|h| status(h.name.clone(), h)));

        let mut info = BTreeMap::new();
        if verbose {
            info.insert("config".to_string(), json(&*self.config));
            let network = serde_json::json!({
                "podCIDR": self.network.pod_cidr(),
                "config": self.network.ready_config().ok().map(|c| c.source),
            });
            info.insert("network".to_string(), network.to_string());
        }
        NodeStatus { conditions, handlers, info }
    }
}

fn condition(kind: ConditionKind, check: Result<(), String>, reason: &str) -> Condition {
    match check {
        Ok(()) => Condition { kind, ready: true, reason: String::new(), message: String::new() },
        Err(message) => Condition { kind, ready: false, reason: reason.to_string(), message },
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}
