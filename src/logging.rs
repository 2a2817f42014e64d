//! Logging through `tracing`, to stderr (journald and kubectl logs both take it from there).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// `RUST_LOG`, when set, wins over the configured level so that an operator can
/// turn on debug output without editing the config.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
