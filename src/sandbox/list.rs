//! The `ListPodSandbox` RPC.

use std::collections::BTreeMap;

use super::SandboxService;
use super::error::SandboxError;
use super::record::{self, SandboxRecord, SandboxState};
use crate::ids::{self, Lookup};

#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    /// A full ID or a unique prefix.
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    /// Every pair must be among the sandbox's labels.
    pub labels: BTreeMap<String, String>,
}

impl SandboxService {
    pub fn list(&self, filter: &SandboxFilter) -> Result<Vec<SandboxRecord>, SandboxError> {
        let mut sandboxes = record::list(&self.store)?;
        if let Some(wanted) = filter.id.as_deref().filter(|id| !id.is_empty()) {
            sandboxes = match ids::resolve(wanted, sandboxes.iter().map(|s| s.id.as_str())) {
                Lookup::Found(id) => sandboxes.into_iter().filter(|s| s.id == id).collect(),
                Lookup::NotFound | Lookup::Ambiguous(_) => Vec::new(),
            };
        }
        sandboxes.retain(|s| {
            filter.state.is_none_or(|state| s.state == state)
                && filter.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
        });
        sandboxes.sort_by_key(|s| s.created_at);
        Ok(sandboxes)
    }
}
