//! The domain root: everything berth knows and does, with no knowledge of gRPC.
//! `server/` holds an `Arc<Daemon>` and calls one method per CRI RPC; each
//! RPC's logic lives in the file named after it.

mod runtime_config;
mod status;
mod version;

pub use status::{Condition, ConditionKind, HandlerStatus, NodeStatus};
pub use version::RuntimeVersion;

use std::sync::Arc;

use crate::config::Config;
use crate::images::{ImageError, ImageService};
use crate::network::Network;
use crate::runtime::RuntimeHandlers;
use crate::store::{Store, StoreError};

pub struct Daemon {
    config: Arc<Config>,
    handlers: RuntimeHandlers,
    network: Network,
    images: Arc<ImageService>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image store: {0}")]
    Images(#[from] ImageError),
}

impl Daemon {
    /// Opens the state under `state_root`, recovering from whatever a crash left.
    pub fn open(config: Config) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        let store = Arc::new(Store::open(&config.metadata_db())?);
        let images = Arc::new(ImageService::open(config.clone(), store)?);
        let handlers = RuntimeHandlers::from_config(&config);
        let network = Network::new(&config.cni);
        Ok(Arc::new(Daemon { config, handlers, network, images }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }
}
