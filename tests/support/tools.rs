//! The real clients `hack/tools.sh` builds into its cache: the conformance
//! tests find them through the `BERTH_*` variables it prints.
#![allow(dead_code)]

use std::path::PathBuf;

fn tool(variable: &str) -> PathBuf {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{variable} is not set: run the suite through hack/test.sh, or export the lines hack/tools.sh prints")
    });
    assert!(path.is_file(), "{variable}={} does not exist: run hack/tools.sh", path.display());
    path
}

/// Where `hack/setup.sh` and `hack/tools.sh` keep what they fetch and build
/// (`BERTH_TOOLS_CACHE`, as they read it).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BERTH_TOOLS_CACHE").map_or_else(|| PathBuf::from("/var/cache/berth-tools"), PathBuf::from)
}

/// crictl of the cri-tools release `hack/tools.sh` builds.
pub fn crictl() -> PathBuf {
    tool("BERTH_CRICTL")
}

/// critest (cri-tools' validation suite, a Ginkgo test binary).
pub fn critest() -> PathBuf {
    tool("BERTH_CRITEST")
}

/// kubelet of the kubernetes release `hack/tools.sh` builds.
pub fn kubelet() -> PathBuf {
    tool("BERTH_KUBELET")
}

/// The pre-installed NRI plugin of the NRI tests, built on NRI's Go stub.
pub fn nri_plugin() -> PathBuf {
    tool("BERTH_NRI_PLUGIN")
}

/// The manifest checker: the API server's decoding and create validation of
/// the kubernetes release `hack/tools.sh` builds, run on YAML files.
pub fn manifest_check() -> PathBuf {
    tool("BERTH_MANIFEST_CHECK")
}

/// The oldest kubelet the same control plane supports (three minors back).
pub fn kubelet_oldest() -> PathBuf {
    tool("BERTH_KUBELET_OLDEST")
}
