//! A pod sandbox as berth remembers it, and its table in the metadata store.
//!
//! `sandboxes`: ID -> SandboxRecord. `sandbox_names`: the pod's identity
//! (name, namespace, uid, attempt) -> ID, so a second sandbox with the same
//! identity is refused while the first exists.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::SandboxError;
use crate::ids::Lookup;
use crate::store::{Named, Store, TableDefinition};

const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("sandbox_names");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// Whose namespace a pod uses, per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    Pod,
    Container,
    Node,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceModes {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

impl Metadata {
    /// The identity that must be unique among existing sandboxes.
    pub fn key(&self) -> String {
        format!("{}_{}_{}_{}", self.name, self.namespace, self.uid, self.attempt)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    pub host_ip: String,
}

/// Pinned namespaces and the pod's shared memory, under `<run_root>/pods/<id>/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    /// The pod's own user namespace, which owns the others.
    #[serde(default)]
    pub user: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub metadata: Metadata,
    pub state: SandboxState,
    pub created_at: i64,
    pub hostname: String,
    pub log_directory: String,
    pub runtime_handler: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub namespace_modes: NamespaceModes,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub namespaces: PodNamespaces,
    /// The pod's user namespace mappings; none when it runs on the node's.
    #[serde(default)]
    pub user_namespace: Option<crate::idmap::UserNamespaceMappings>,
    /// Pod IPs from the CNI result, primary first.
    pub ips: Vec<String>,
    /// `resolv.conf` and `hostname`, for the containers to mount.
    pub resolv_conf: PathBuf,
    pub hostname_file: PathBuf,
    /// Only for pods sharing one PID namespace.
    #[serde(default)]
    pub infra: Option<super::infra::InfraProcess>,
    /// The infra process's cgroups under the pod's cgroup parent.
    #[serde(default)]
    pub infra_cgroups: Vec<PathBuf>,
}

const TABLES: Named = Named { records: SANDBOXES, names: NAMES };

pub fn get(store: &Store, id: &str) -> Result<Option<SandboxRecord>, SandboxError> {
    Ok(store.get_json(SANDBOXES, id)?)
}

pub fn list(store: &Store) -> Result<Vec<SandboxRecord>, SandboxError> {
    Ok(store.list_json(SANDBOXES)?.into_iter().map(|(_, sandbox)| sandbox).collect())
}

/// The sandbox ID `wanted` names, fully or by a unique prefix.
pub fn resolve(store: &Store, wanted: &str) -> Result<Lookup, SandboxError> {
    Ok(store.resolve_id(SANDBOXES, wanted)?)
}

/// Claims the pod's identity for `id`; fails if another sandbox holds it.
pub fn reserve_name(store: &Store, metadata: &Metadata, id: &str) -> Result<(), SandboxError> {
    let key = metadata.key();
    match store.reserve_name(NAMES, &key, id)? {
        None => Ok(()),
        Some(holder) => Err(SandboxError::NameTaken { name: key, id: holder }),
    }
}

/// Reserved names whose sandbox has no record: what a crash in the middle of
/// RunPodSandbox leaves (the name is reserved first, the record saved last).
pub fn orphan_names(store: &Store) -> Result<Vec<(String, String)>, SandboxError> {
    Ok(store.orphan_names(TABLES)?)
}

pub fn release_name(store: &Store, key: &str, id: &str) -> Result<(), SandboxError> {
    Ok(store.release_name(NAMES, key, id)?)
}

pub fn save(store: &Store, record: &SandboxRecord) -> Result<(), SandboxError> {
    Ok(store.put_json(SANDBOXES, &record.id, record)?)
}

/// Deletes the record and frees its name, in one transaction.
pub fn delete(store: &Store, record: &SandboxRecord) -> Result<(), SandboxError> {
    Ok(store.delete_named(TABLES, &record.id, &record.metadata.key())?)
}
