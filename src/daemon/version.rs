//! The `Version` RPC.

use super::Daemon;

/// The CRI API version berth implements, in the form the CRI's `Version` wants.
const CRI_API_VERSION: &str = "v1";
/// `VersionResponse.version`: the kubelet-facing API version, "0.1.0" by CRI convention.
const KUBELET_API_VERSION: &str = "0.1.0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    pub version: &'static str,
    pub runtime_name: &'static str,
    pub runtime_version: &'static str,
    pub runtime_api_version: &'static str,
}

impl Daemon {
    pub fn version(&self) -> RuntimeVersion {
        RuntimeVersion {
            version: KUBELET_API_VERSION,
            runtime_name: env!("CARGO_PKG_NAME"),
            runtime_version: env!("CARGO_PKG_VERSION"),
            runtime_api_version: CRI_API_VERSION,
        }
    }
}
