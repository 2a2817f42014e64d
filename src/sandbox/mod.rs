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
pub mod namespaces;
pub mod record;
mod remove;
mod run;
mod status;
mod stop;
pub mod sysctls;

pub use error::SandboxError;
pub use list::SandboxFilter;
pub use record::{DnsConfig, Metadata, NamespaceMode, NamespaceModes, PortMapping, SandboxRecord, SandboxState};
pub use run::PodSpec;
pub use status::SandboxStatus;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::ids::{self, Lookup};
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
    /// One lock per sandbox: calls on one pod are serialised, pods run in parallel.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SandboxService {
    pub fn open(
        config: Arc<Config>,
        store: Arc<Store>,
        network: Arc<Network>,
        handlers: RuntimeHandlers,
    ) -> Result<Self, SandboxError> {
        let service = SandboxService { config, store, network, handlers, locks: Mutex::new(HashMap::new()) };
        service.recover()?;
        Ok(service)
    }

    /// After a reboot the run root is empty: sandboxes whose namespaces are
    /// gone are no longer ready (kubelet will stop, remove and recreate them).
    fn recover(&self) -> Result<(), SandboxError> {
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

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The full ID `wanted` names (a unique prefix will do).
    fn resolve(&self, wanted: &str) -> Result<Option<String>, SandboxError> {
        if wanted.is_empty() {
            return Ok(None);
        }
        let candidates = record::ids_with_prefix(&self.store, wanted)?;
        match ids::resolve(wanted, candidates.iter().map(String::as_str)) {
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
