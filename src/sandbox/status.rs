//! The `PodSandboxStatus` RPC.

use std::collections::BTreeMap;

use super::SandboxService;
use super::error::SandboxError;
use super::record::{self, SandboxRecord};

pub struct SandboxStatus {
    pub sandbox: SandboxRecord,
    /// Verbose only: JSON details keyed by topic.
    pub info: BTreeMap<String, String>,
}

impl SandboxService {
    pub fn status(&self, wanted: &str, verbose: bool) -> Result<SandboxStatus, SandboxError> {
        let id = self.resolve(wanted)?.ok_or_else(|| SandboxError::NotFound(wanted.to_string()))?;
        let sandbox = record::get(&self.store, &id)?.ok_or_else(|| SandboxError::NotFound(wanted.to_string()))?;
        let mut info = BTreeMap::new();
        if verbose {
            let details = serde_json::json!({
                "runtimeHandler": sandbox.runtime_handler,
                "infraPid": sandbox.infra.map(|p| p.pid),
                "infraCgroups": sandbox.infra_cgroups,
                "cgroupParent": sandbox.cgroup_parent,
                "namespaces": sandbox.namespaces,
                "sysctls": sandbox.sysctls,
                "portMappings": sandbox.port_mappings,
                "dns": sandbox.dns,
                "resolvConf": sandbox.resolv_conf,
                "hostnameFile": sandbox.hostname_file,
                "cniResult": self.network.cached(&sandbox.id).map(|n| n.raw_result),
            });
            info.insert("info".to_string(), details.to_string());
        }
        Ok(SandboxStatus { sandbox, info })
    }
}
