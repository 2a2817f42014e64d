//! Pod sandboxes: shared network, IPC and UTS namespaces (pinned, no pause
//! process), CNI networking, DNS and hostname files, sysctls.
//!
//! One file per RPC: `run.rs` (RunPodSandbox), `stop.rs` (StopPodSandbox),
//! `remove.rs` (RemovePodSandbox), `status.rs` (PodSandboxStatus), `list.rs`
//! (ListPodSandbox). Beneath them: `namespaces` (make, pin, release, sysctls),
//! `files` (resolv.conf, hostname), `sysctls` (which are allowed), `record`
//! (what is stored).

mod cgroups;
pub mod error;
mod files;
pub mod infra;
mod list;
mod loopback;
pub mod namespaces;
mod port_forward;
pub mod record;
mod remove;
mod resize;
mod run;
mod shared_pid;
mod status;
mod stop;
pub mod sysctls;
mod userns;

pub use error::SandboxError;
pub use list::SandboxFilter;
pub use record::{DnsConfig, Metadata, NamespaceMode, NamespaceModes, PortMapping, SandboxRecord, SandboxState};
pub use run::{PodSpec, UserNamespaceRequest};
pub use status::SandboxStatus;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::ids::Lookup;
use crate::network::Network;
use crate::runtime::RuntimeHandlers;
use crate::store::Store;

/// The pod's `/dev/shm` size when it does not share the host's IPC namespace.
const SHM_SIZE: u64 = 64 * 1024 * 1024;

pub struct SandboxService {
    config: Arc<Config>,
    store: Arc<Store>,
    network: Arc<Network>,
    handlers: RuntimeHandlers,
    nri: Arc<crate::nri::Nri>,
    /// One lock per sandbox: calls on one pod are serialised, pods run in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SandboxService {
    pub async fn open(
        config: Arc<Config>,
        store: Arc<Store>,
        network: Arc<Network>,
        handlers: RuntimeHandlers,
        nri: Arc<crate::nri::Nri>,
    ) -> Result<Self, SandboxError> {
        let service = SandboxService { config, store, network, handlers, nri, locks: Mutex::new(HashMap::new()) };
        service.recover_readiness()?;
        service.recover_half_made().await?;
        Ok(service)
    }

    /// After a reboot the run root is empty: sandboxes whose namespaces are
    /// gone are no longer ready (kubelet will stop, remove and recreate them).
    fn recover_readiness(&self) -> Result<(), SandboxError> {
        for mut sandbox in record::list(&self.store)? {
            let lost = [&sandbox.namespaces.net, &sandbox.namespaces.ipc, &sandbox.namespaces.uts]
                .into_iter()
                .flatten()
                .any(|pin| !namespaces::is_pinned(pin));
            if sandbox.state == SandboxState::Ready && lost {
                tracing::info!(sandbox = %sandbox.id, "namespaces gone since last run; sandbox is not ready");
                sandbox.state = SandboxState::NotReady;
                record::save(&self.store, &sandbox)?;
            }
        }
        Ok(())
    }

    /// A crash during RunPodSandbox leaves a reserved name, directories, pins,
    /// maybe a CNI attachment and an infra process, but no record. Left alone,
    /// kubelet's retry with the same name would be refused forever.
    async fn recover_half_made(&self) -> Result<(), SandboxError> {
        let known: std::collections::HashSet<String> = record::list(&self.store)?.into_iter().map(|s| s.id).collect();
        let mut orphans: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for (key, id) in record::orphan_names(&self.store)? {
            record::release_name(&self.store, &key, &id)?;
            orphans.insert(id);
        }
        for root in [self.config.run_root.join("pods"), self.config.state_root.join("pods")] {
            for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&id) {
                    orphans.insert(id);
                }
            }
        }
        for id in orphans {
            tracing::info!(sandbox = %id, "cleaning up a pod sandbox left half-made by a crash");
            self.clean_half_made(&id).await;
        }
        Ok(())
    }

    async fn clean_half_made(&self, id: &str) {
        let ns = self.run_dir(id).join("ns");
        let pins = record::PodNamespaces {
            net: Some(ns.join("net")),
            ipc: Some(ns.join("ipc")),
            uts: Some(ns.join("uts")),
            shm: Some(ns.join("shm")),
            user: Some(ns.join("user")),
        };
        let netns = pins.net.as_deref().filter(|p| namespaces::is_pinned(p));
        if let Err(e) = self.network.detach(id, netns).await {
            tracing::warn!(sandbox = %id, error = %e, "network teardown of a half-made sandbox failed");
        }
        infra::stop_recorded(&self.run_dir(id));
        namespaces::release(&pins);
        for dir in [self.run_dir(id), self.state_dir(id)] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The sandbox `wanted` names (a unique prefix will do).
    pub fn find(&self, wanted: &str) -> Result<Option<SandboxRecord>, SandboxError> {
        match self.resolve(wanted)? {
            Some(id) => record::get(&self.store, &id),
            None => Ok(None),
        }
    }

    /// The full ID `wanted` names (a unique prefix will do).
    fn resolve(&self, wanted: &str) -> Result<Option<String>, SandboxError> {
        match record::resolve(&self.store, wanted)? {
            Lookup::Found(id) => Ok(Some(id)),
            Lookup::NotFound => Ok(None),
            Lookup::Ambiguous(count) => Err(SandboxError::Ambiguous { prefix: wanted.to_string(), count }),
        }
    }

    fn state_dir(&self, id: &str) -> PathBuf {
        self.config.state_root.join("pods").join(id)
    }

    fn run_dir(&self, id: &str) -> PathBuf {
        self.config.run_root.join("pods").join(id)
    }
}
