//! What can go wrong attaching a pod to its network or detaching it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::CniConfigError;
use crate::error::{Classify, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network not ready: {0}")]
    NotReady(#[from] CniConfigError),
    #[error("invalid {what}: {reason}")]
    InvalidArgument { what: &'static str, reason: String },
    #[error("CNI plugin {plugin:?} not found in {bin_dirs}")]
    PluginMissing { plugin: String, bin_dirs: String },
    #[error("cannot run CNI plugin {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    /// Boxed: it is much larger than the other variants, and every `Result` pays for the largest.
    #[error(transparent)]
    Plugin(Box<PluginError>),
    #[error("network {network:?}: CNI plugin {plugin:?} {command} did not finish within {timeout:?}")]
    Timeout { network: String, plugin: String, command: &'static str, timeout: Duration },
    #[error("network {network:?}: CNI plugin {plugin:?} {command} returned an unusable result: {reason}")]
    BadResult { network: String, plugin: String, command: &'static str, reason: String },
    #[error("CNI result cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    #[error("CNI result cache {path} is unreadable: {reason}")]
    CacheCorrupt { path: PathBuf, reason: String },
}

impl Classify for NetworkError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::NotReady(CniConfigError::Read { .. }) => ErrorKind::Internal,
            NetworkError::NotReady(_) => ErrorKind::FailedPrecondition,
            NetworkError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            NetworkError::PluginMissing { .. }
            | NetworkError::Plugin(_)
            | NetworkError::Timeout { .. }
            | NetworkError::BadResult { .. } => ErrorKind::Unavailable,
            NetworkError::Spawn { .. } | NetworkError::Cache { .. } | NetworkError::CacheCorrupt { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

impl From<PluginError> for NetworkError {
    fn from(error: PluginError) -> Self {
        NetworkError::Plugin(Box::new(error))
    }
}

/// A plugin that exited non-zero, with the error it printed (CNI spec, "Error" section).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PluginError {
    pub network: String,
    pub plugin: String,
    pub command: &'static str,
    /// The spec's error code; `None` when the plugin printed no JSON error.
    pub code: Option<u64>,
    pub msg: String,
    pub details: String,
}

/// The spec's "container unknown or does not exist": nothing left to clean up.
const CODE_CONTAINER_UNKNOWN: u64 = 3;

impl PluginError {
    /// Whether a DEL failed only because what it would remove is already gone: the netns was
    /// unmounted, the interface went with it. DEL must be idempotent, so such an error counts as
    /// success. Plugins rarely use code 3, so the usual wording of these errors is matched too,
    /// but only when it names a netns or a link, so that e.g. "iptables: command not found"
    /// still fails the DEL.
    pub fn is_already_gone(&self) -> bool {
        if self.code == Some(CODE_CONTAINER_UNKNOWN) {
            return true;
        }
        let text = format!("{} {}", self.msg, self.details).to_lowercase();
        let missing = ["no such file or directory", "not found", "does not exist", "no such device"]
            .iter()
            .any(|phrase| text.contains(phrase));
        let about_netns_or_link =
            ["netns", "namespace", "link", "interface", "device"].iter().any(|word| text.contains(word));
        missing && about_netns_or_link
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "network {:?}: CNI plugin {:?} {} failed", self.network, self.plugin, self.command)?;
        if let Some(code) = self.code {
            write!(f, " (code {code})")?;
        }
        write!(f, ": {}", self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn del_error(code: Option<u64>, msg: &str) -> PluginError {
        PluginError {
            network: "pods".into(),
            plugin: "bridge".into(),
            command: "DEL",
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    #[test]
    fn missing_netns_or_link_counts_as_already_gone() {
        assert!(del_error(Some(3), "container gone").is_already_gone());
        assert!(del_error(Some(999), "failed to find link \"eth0\": Link not found").is_already_gone());
        assert!(del_error(None, "failed to open netns \"/run/netns/x\": no such file or directory").is_already_gone());
        assert!(
            !del_error(Some(999), "running [/usr/sbin/iptables -t nat -X CNI-x]: command not found").is_already_gone()
        );
        assert!(!del_error(Some(11), "try again later").is_already_gone());
    }

    #[test]
    fn display_names_plugin_code_msg_and_details() {
        let mut err = del_error(Some(7), "bad config");
        err.details = "field ipam".into();
        assert_eq!(
            err.to_string(),
            "network \"pods\": CNI plugin \"bridge\" DEL failed (code 7): bad config (field ipam)"
        );
    }
}
