//! The domain root: everything berth knows and does, with no knowledge of gRPC.
//! `server/` holds an `Arc<Daemon>` and calls one method per CRI RPC; each
//! RPC's logic lives in the file named after it.

mod figures;
mod metrics;
mod pods;
mod runtime_config;
mod stats;
mod status;
mod streaming;
mod version;

pub use figures::DaemonFigures;
pub use metrics::{ContainerMetrics, MetricDescriptor, MetricKind, PodMetrics, Sample};
pub use pods::PodError;
pub use stats::PodUsage;
pub use status::{Condition, ConditionKind, HandlerStatus, NodeStatus};
pub use version::RuntimeVersion;

use std::sync::Arc;

use crate::config::Config;
use crate::container::{ContainerError, ContainerService};
use crate::handoff::Handoff;
use crate::images::{ImageError, ImageService};
use crate::network::Network;
use crate::runtime::RuntimeHandlers;
use crate::sandbox::{SandboxError, SandboxService};
use crate::store::{Store, StoreError};
use crate::streaming::{Streaming, StreamingError};

pub struct Daemon {
    config: Arc<Config>,
    handlers: RuntimeHandlers,
    network: Arc<Network>,
    images: Arc<ImageService>,
    sandboxes: Arc<SandboxService>,
    containers: Arc<ContainerService>,
    /// RunPodSandbox and CreateContainer finishing after kubelet's deadline.
    pod_creates: Handoff<String, SandboxError>,
    container_creates: Handoff<String, ContainerError>,
    hierarchy: crate::stats::Hierarchy,
    pod_cpu_rates: crate::stats::CpuRates,
    streaming: Arc<Streaming>,
    nri: Arc<crate::nri::Nri>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image store: {0}")]
    Images(#[from] ImageError),
    #[error("pod sandboxes: {0}")]
    Sandboxes(#[from] SandboxError),
    #[error("containers: {0}")]
    Containers(#[from] ContainerError),
    #[error(transparent)]
    Streaming(#[from] StreamingError),
}

impl Daemon {
    /// Opens the state under `state_root`, recovering from whatever a crash left.
    pub async fn open(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let store = Arc::new(Store::open(&config.metadata_db())?);
        let images = Arc::new(ImageService::open(config.clone(), store.clone())?);
        let handlers = RuntimeHandlers::from_config(&config);
        let network = Arc::new(Network::new(&config.cni, config.state_root.join("cni-cache")));
        let nri = crate::nri::Nri::new(config.nri.clone(), store.clone());
        let sandboxes = Arc::new(
            SandboxService::open(config.clone(), store.clone(), network.clone(), handlers.clone(), nri.clone()).await?,
        );
        let containers = ContainerService::open(config.clone(), store, images.clone(), handlers.clone(), nri.clone()).await?;
        // Plugins connect once recovery is done, and are synchronised with it.
        if let Err(e) = nri.listen() {
            tracing::error!(error = %e, "NRI is off: its socket cannot be served");
        }
        let streaming = Streaming::start(&config.streaming, containers.clone(), sandboxes.clone()).await?;
        Ok(Arc::new(Daemon {
            config,
            handlers,
            network,
            images,
            sandboxes,
            containers,
            pod_creates: Handoff::default(),
            container_creates: Handoff::default(),
            hierarchy: crate::stats::Hierarchy::detect(),
            pod_cpu_rates: crate::stats::CpuRates::default(),
            streaming,
            nri,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What goes when berth stops serving (its containers stay).
    pub fn shutdown(&self) {
        self.nri.stop_listening();
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }

    pub fn sandboxes(&self) -> &SandboxService {
        &self.sandboxes
    }

    pub fn containers(&self) -> &ContainerService {
        &self.containers
    }
}
