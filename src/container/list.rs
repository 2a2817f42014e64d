//! The `ListContainers` RPC.

use std::collections::BTreeMap;

use super::record::{self, ContainerRecord, ContainerState};
use super::{ContainerError, ContainerService};

/// Every field optional; IDs match by prefix, as crictl users expect.
#[derive(Debug, Default, Clone)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<ContainerState>,
    pub sandbox_id: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ContainerFilter {
    fn matches(&self, container: &ContainerRecord) -> bool {
        self.id.as_ref().is_none_or(|id| container.id.starts_with(id.as_str()))
            && self.state.is_none_or(|state| container.state == state)
            && self.sandbox_id.as_ref().is_none_or(|id| container.sandbox_id.starts_with(id.as_str()))
            && self.labels.iter().all(|(k, v)| container.labels.get(k) == Some(v))
    }
}

impl ContainerService {
    pub fn list(&self, filter: &ContainerFilter) -> Result<Vec<ContainerRecord>, ContainerError> {
        let mut containers: Vec<ContainerRecord> =
            record::list(&self.store)?.into_iter().map(|c| self.current(c)).filter(|c| filter.matches(c)).collect();
        containers.sort_by_key(|c| c.created_at);
        Ok(containers)
    }
}
