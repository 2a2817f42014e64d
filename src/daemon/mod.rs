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
use crate::network::Network;
use crate::runtime::RuntimeHandlers;

pub struct Daemon {
    config: Arc<Config>,
    handlers: RuntimeHandlers,
    network: Network,
}

impl Daemon {
    pub fn new(config: Config) -> Arc<Self> {
        let handlers = RuntimeHandlers::from_config(&config);
        let network = Network::new(&config.cni);
        Arc::new(Daemon { config: Arc::new(config), handlers, network })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}
