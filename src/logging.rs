//! Logging through `tracing`, to stderr (journald and kubectl logs both take it from there).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the level of the running subscriber (SIGHUP's `log.level`).
#[derive(Clone)]
pub struct LevelControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it keeps winning over the file.
    from_environment: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error("key `log.level`: not a tracing filter: {0}")]
    Filter(String),
    #[error("RUST_LOG is set; it wins over `log.level`")]
    Overridden,
    #[error("the log subscriber is gone: {0}")]
    Gone(String),
}

/// `RUST_LOG`, when set, wins over the configured level so that an operator can
/// turn on debug output without editing the config. `None` when a subscriber
/// was installed already (tests), which then stays.
pub fn init(config: &LogConfig) -> Option<LevelControl> {
    let from_environment = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The level filters the format layer alone: the step timer beside it sees
    // its steps at any level.
    let (filter, handle) = reload::Layer::new(filter);
    let format = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(format.with_filter(filter))
        .with(crate::metrics::step_timer())
        .try_init()
        .ok()
        .map(|()| LevelControl { handle, from_environment })
}

impl LevelControl {
    pub fn set_level(&self, level: &str) -> Result<(), LevelError> {
        if self.from_environment {
            return Err(LevelError::Overridden);
        }
        let filter = EnvFilter::try_new(level).map_err(|e| LevelError::Filter(e.to_string()))?;
        self.handle.reload(filter).map_err(|e| LevelError::Gone(e.to_string()))
    }
}
