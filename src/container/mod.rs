//! Containers: a writable overlay on the image's snapshots, an OCI spec from the
//! CRI config, a `berth monitor` per container that creates it through the pod's
//! runtime handler and outlives berth.
//!
//! One file per RPC: `create.rs`, `start.rs`, `stop.rs`, `remove.rs`,
//! `status.rs`, `list.rs`, `exec_sync.rs`, `update.rs`, `reopen_log.rs`.
//! Beneath them: `record` (what is stored), `exits` (watching monitors and
//! folding exits into records), `recover` (start-up), `spec`, `rootfs`.

pub mod apparmor;
mod attach;
mod control;
mod create;
pub mod error;
pub mod events;
mod exec;
mod exec_sync;
mod image_volumes;
mod exits;
mod list;
mod pty;
pub mod record;
mod recover;
mod remove;
mod reopen_log;
pub mod rootfs;
pub mod spec;
mod start;
mod stats;
mod status;
mod staging;
mod stop;
mod update;

pub use attach::{AttachInput, AttachOutput, Output, StreamChoice};
pub use error::ContainerError;
pub use events::{ContainerEvent, EventKind, Subscription};
pub use exec::{ExecSession, ExecStreams};
pub use exec_sync::ExecOutput;
pub use image_volumes::reported_mounts;
pub use list::ContainerFilter;
pub use pty::PtyMaster;
pub use record::{ContainerRecord, ContainerState, ImageUsed};
pub use stop::{cri_signal, effective_stop_signal};
pub use stats::ContainerUsage;
pub use status::ContainerStatus;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::config::Config;
use crate::ids::Lookup;
use crate::images::ImageService;
use crate::runtime::RuntimeHandlers;
use crate::store::Store;
use rootfs::RootfsPaths;
use spec::HostFacts;

/// The exit record's file name in the container's state directory.
const EXIT_FILE: &str = "exit.json";

pub struct ContainerService {
    config: Arc<Config>,
    store: Arc<Store>,
    images: Arc<ImageService>,
    handlers: RuntimeHandlers,
    nri: Arc<crate::nri::Nri>,
    /// Itself, for what NRI plugins ask of it (see update.rs).
    me: std::sync::OnceLock<std::sync::Weak<ContainerService>>,
    host: HostFacts,
    /// One lock per container: calls on one container are serialised.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per watched container: becomes true when its monitor is gone (the exit recorded).
    exits: Mutex<HashMap<String, watch::Receiver<bool>>>,
    events: events::Events,
    hierarchy: crate::stats::Hierarchy,
    cpu_rates: crate::stats::CpuRates,
    layer_usage: stats::LayerUsageCache,
}

impl ContainerService {
    pub async fn open(
        config: Arc<Config>,
        store: Arc<Store>,
        images: Arc<ImageService>,
        handlers: RuntimeHandlers,
        nri: Arc<crate::nri::Nri>,
    ) -> Result<Arc<Self>, ContainerError> {
        let host = HostFacts::detect(config.cgroup_driver);
        if host.min_oom_score_adj > -1000 {
            tracing::info!(
                min = host.min_oom_score_adj,
                "berth lacks CAP_SYS_RESOURCE: container oom_score_adj below berth's own is raised to it"
            );
        }
        if host.apparmor
            && let Err(e) = apparmor::ensure_default_profile()
        {
            tracing::error!(error = %e, "cannot load berth's AppArmor profile: containers asking for the runtime default will fail");
        }
        let service = Arc::new(ContainerService {
            config,
            store,
            images,
            handlers,
            nri,
            me: std::sync::OnceLock::new(),
            host,
            locks: Mutex::new(HashMap::new()),
            exits: Mutex::new(HashMap::new()),
            events: events::Events::default(),
            hierarchy: crate::stats::Hierarchy::detect(),
            cpu_rates: crate::stats::CpuRates::default(),
            layer_usage: stats::LayerUsageCache::default(),
        });
        let _ = service.me.set(Arc::downgrade(&service));
        let control: std::sync::Weak<dyn crate::nri::ContainerControl> = Arc::downgrade(&service) as _;
        service.nri.set_control(control);
        service.recover().await?;
        Ok(service)
    }

    /// The container's pod, for telling NRI plugins of the container; None
    /// when no plugin listens (no store read then) or the pod is gone.
    fn sandbox_of(&self, container: &ContainerRecord) -> Option<crate::sandbox::SandboxRecord> {
        if !self.nri.is_active() {
            return None;
        }
        crate::sandbox::record::get(&self.store, &container.sandbox_id).ok().flatten()
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.forget_usage(id);
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        self.exits.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The full ID `wanted` names (a unique prefix will do).
    fn resolve(&self, wanted: &str) -> Result<Option<String>, ContainerError> {
        match record::resolve(&self.store, wanted)? {
            Lookup::Found(id) => Ok(Some(id)),
            Lookup::NotFound => Ok(None),
            Lookup::Ambiguous(count) => Err(ContainerError::Ambiguous { prefix: wanted.to_string(), count }),
        }
    }

    /// The record of `wanted`, or NotFound.
    fn find(&self, wanted: &str) -> Result<ContainerRecord, ContainerError> {
        let not_found = || ContainerError::NotFound(wanted.to_string());
        let id = self.resolve(wanted)?.ok_or_else(not_found)?;
        record::get(&self.store, &id)?.ok_or_else(not_found)
    }

    /// `<state_root>/containers/<id>`: the writable layer and the exit record.
    fn state_dir(&self, id: &str) -> PathBuf {
        self.config.state_root.join("containers").join(id)
    }

    /// `<run_root>/containers/<id>`: the bundle (config.json, rootfs) and the monitor's sockets.
    fn run_dir(&self, id: &str) -> PathBuf {
        self.config.run_root.join("containers").join(id)
    }

    fn rootfs_paths(&self, id: &str) -> RootfsPaths {
        RootfsPaths { layer: self.state_dir(id), mount_point: self.run_dir(id).join("rootfs") }
    }

    fn exit_file(&self, id: &str) -> PathBuf {
        self.state_dir(id).join(EXIT_FILE)
    }

    fn runtime_for(&self, container: &ContainerRecord) -> Result<Arc<dyn crate::runtime::OciRuntime>, ContainerError> {
        Ok(self.handlers.get(&container.runtime_handler)?.runtime())
    }

    /// Container lifecycle events from now on.
    pub fn subscribe(&self) -> Subscription {
        self.events.subscribe()
    }

    /// Every container of a pod.
    pub fn in_sandbox(&self, sandbox_id: &str) -> Result<Vec<ContainerRecord>, ContainerError> {
        Ok(record::list(&self.store)?.into_iter().filter(|c| c.sandbox_id == sandbox_id).collect())
    }
}

/// Reads `/proc/<pid>/cmdline` to tell whether `pid` is still the monitor of `id`
/// (after a berth restart the PID may have been reused).
fn is_monitor_of(pid: i32, id: &str) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter().any(|a| *a == b"monitor") && args.windows(2).any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
}
