//! A container as berth remembers it, and its tables in the metadata store.
//!
//! `containers`: ID -> ContainerRecord. `container_names`: `<sandbox>/<name>/<attempt>`
//! -> ID, so a second container with the same name and attempt in a pod is
//! refused while the first exists. The name is reserved first and the record
//! saved last: a name without a record is what a crash mid-create leaves.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use serde::{Deserialize, Serialize};

use super::error::ContainerError;
use crate::ids::Lookup;
use crate::monitor::ExitRecord;
use crate::store::{Named, Store, TableDefinition};

const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("container_names");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

impl ContainerState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Exited => "exited",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub attempt: u32,
}

/// The image as the container was created from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUsed {
    /// What kubelet asked for (`config.image.image`).
    pub requested: String,
    /// `sha256:` + config digest.
    pub id: String,
    /// A repo digest when the image has one, else its ID: kubelet's `imageID`.
    pub reference: String,
    /// The snapshot the container's rootfs stands on (leased as `container/<id>`).
    pub top_chain_id: String,
    /// The image's StopSignal (empty: SIGTERM).
    pub stop_signal: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub metadata: Metadata,
    pub image: ImageUsed,
    pub runtime_handler: String,
    pub state: ContainerState,
    pub created_at: i64,
    #[serde(default)]
    pub started_at: i64,
    /// The container's log file, or none when kubelet asked for no log.
    pub log_path: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The monitor and the container's init, as the host sees them.
    pub monitor_pid: i32,
    pub pid: i32,
    /// The container's cgroup, as a path in the cgroup hierarchy.
    #[serde(default)]
    pub cgroup: String,
    /// The identity the container's process starts with, as resolved in its image.
    #[serde(default)]
    pub user: ProcessUser,
    /// The CRI mounts that are image volumes, and what each was made from.
    #[serde(default)]
    pub image_volumes: Vec<super::image_volumes::ImageVolume>,
    /// Set once the container has exited.
    #[serde(default)]
    pub exit: Option<ExitRecord>,
    /// Why it ended when no exit code tells it (the start failed, the monitor was lost).
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// The runtime has deleted the exited container (its state and cgroup):
    /// RemoveContainer need not run it again.
    #[serde(default)]
    pub runtime_deleted: bool,
    /// The CRI ContainerConfig as kubelet sent it (protobuf, base64), resources
    /// updated by UpdateContainerResources: status, exec and update read it back.
    config: String,
}

impl ContainerRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        sandbox_id: String,
        config: &crate::cri::v1::ContainerConfig,
        image: ImageUsed,
        runtime_handler: String,
        log_path: Option<PathBuf>,
        monitor_pid: i32,
        pid: i32,
    ) -> Self {
        let metadata = config.metadata.clone().unwrap_or_default();
        ContainerRecord {
            id,
            sandbox_id,
            metadata: Metadata { name: metadata.name, attempt: metadata.attempt },
            image,
            runtime_handler,
            state: ContainerState::Created,
            created_at: crate::time::now_nanos(),
            started_at: 0,
            log_path,
            labels: config.labels.clone().into_iter().collect(),
            annotations: config.annotations.clone().into_iter().collect(),
            monitor_pid,
            pid,
            cgroup: String::new(),
            user: ProcessUser::default(),
            image_volumes: Vec::new(),
            exit: None,
            reason: String::new(),
            message: String::new(),
            runtime_deleted: false,
            config: STANDARD.encode(config.encode_to_vec()),
        }
    }

    pub fn config(&self) -> crate::cri::v1::ContainerConfig {
        STANDARD
            .decode(&self.config)
            .ok()
            .and_then(|bytes| crate::cri::v1::ContainerConfig::decode(bytes.as_slice()).ok())
            .unwrap_or_default()
    }

    pub fn set_config(&mut self, config: &crate::cri::v1::ContainerConfig) {
        self.config = STANDARD.encode(config.encode_to_vec());
    }

    pub fn name_key(&self) -> String {
        name_key(&self.sandbox_id, &self.metadata)
    }

    /// Folds in how the container ended. Returns false if it already had.
    pub fn record_exit(&mut self, exit: ExitRecord, reason: &str, message: &str) -> bool {
        if self.state == ContainerState::Exited {
            return false;
        }
        self.state = ContainerState::Exited;
        self.exit = Some(exit);
        self.reason = reason.to_string();
        self.message = message.to_string();
        true
    }

    /// The CRI's reason: what kubelet shows as the container's last state.
    pub fn exit_reason(&self) -> String {
        match &self.exit {
            _ if !self.reason.is_empty() => self.reason.clone(),
            Some(exit) if exit.oom_killed => "OOMKilled".into(),
            Some(exit) if exit.exit_code == 0 => "Completed".into(),
            Some(_) => "Error".into(),
            None => String::new(),
        }
    }
}

pub fn name_key(sandbox_id: &str, metadata: &Metadata) -> String {
    format!("{sandbox_id}/{}/{}", metadata.name, metadata.attempt)
}

const TABLES: Named = Named { records: CONTAINERS, names: NAMES };

pub fn get(store: &Store, id: &str) -> Result<Option<ContainerRecord>, ContainerError> {
    Ok(store.get_json(CONTAINERS, id)?)
}

pub fn list(store: &Store) -> Result<Vec<ContainerRecord>, ContainerError> {
    Ok(store.list_json(CONTAINERS)?.into_iter().map(|(_, container)| container).collect())
}

/// The container ID `wanted` names, fully or by a unique prefix.
pub fn resolve(store: &Store, wanted: &str) -> Result<Lookup, ContainerError> {
    Ok(store.resolve_id(CONTAINERS, wanted)?)
}

/// Claims `key` for `id`; fails if another container holds it.
pub fn reserve_name(store: &Store, key: &str, id: &str) -> Result<(), ContainerError> {
    match store.reserve_name(NAMES, key, id)? {
        None => Ok(()),
        Some(holder) => Err(ContainerError::NameTaken { name: key.to_string(), id: holder }),
    }
}

pub fn release_name(store: &Store, key: &str, id: &str) -> Result<(), ContainerError> {
    Ok(store.release_name(NAMES, key, id)?)
}

/// Reserved names whose container has no record (a crash mid-create).
pub fn orphan_names(store: &Store) -> Result<Vec<(String, String)>, ContainerError> {
    Ok(store.orphan_names(TABLES)?)
}

pub fn save(store: &Store, record: &ContainerRecord) -> Result<(), ContainerError> {
    Ok(store.put_json(CONTAINERS, &record.id, record)?)
}

/// Deletes the record and frees its name, in one transaction.
pub fn delete(store: &Store, record: &ContainerRecord) -> Result<(), ContainerError> {
    Ok(store.delete_named(TABLES, &record.id, &record.name_key())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> ContainerRecord {
        let config = crate::cri::v1::ContainerConfig {
            metadata: Some(crate::cri::v1::ContainerMetadata { name: "app".into(), attempt: 2 }),
            command: vec!["sleep".into()],
            ..Default::default()
        };
        ContainerRecord::new(id.into(), "pod1".into(), &config, ImageUsed::default(), "runc".into(), None, 10, 11)
    }

    #[test]
    fn names_are_reserved_per_pod_name_and_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let c = record("c1");
        assert_eq!(c.name_key(), "pod1/app/2");
        reserve_name(&store, &c.name_key(), "c1").unwrap();
        assert!(matches!(reserve_name(&store, &c.name_key(), "c2"), Err(ContainerError::NameTaken { .. })));
        assert_eq!(orphan_names(&store).unwrap(), vec![("pod1/app/2".to_string(), "c1".to_string())]);
        save(&store, &c).unwrap();
        assert!(orphan_names(&store).unwrap().is_empty());
        assert_eq!(get(&store, "c1").unwrap().unwrap().config().command, vec!["sleep".to_string()]);
        delete(&store, &c).unwrap();
        reserve_name(&store, "pod1/app/2", "c3").unwrap();
        assert!(get(&store, "c1").unwrap().is_none());
    }

    #[test]
    fn exit_reasons() {
        let mut c = record("c1");
        let exit = |code, oom| ExitRecord { exit_code: code, exited_at: 5, oom_killed: oom };
        assert!(c.record_exit(exit(0, false), "", ""));
        assert_eq!(c.exit_reason(), "Completed");
        assert!(!c.record_exit(exit(1, false), "", ""), "an exit is recorded once");
        c.state = ContainerState::Running;
        c.record_exit(exit(137, true), "", "");
        assert_eq!(c.exit_reason(), "OOMKilled");
        c.state = ContainerState::Running;
        c.record_exit(exit(2, false), "", "");
        assert_eq!(c.exit_reason(), "Error");
    }
}
