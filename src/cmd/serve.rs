//! `berth serve`: claim the state root, bind the socket, serve until a signal,
//! then shut down within a bound and remove the socket.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{SignalKind, signal};

use super::reload::Reloader;
use crate::config::{Config, ConfigSources};
use crate::daemon::Daemon;
use crate::logging::LevelControl;
use crate::metrics::{Metrics, Served};
use crate::server::{self, InFlight, ListenError};

/// How long in-flight calls get to finish after SIGTERM before berth exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state root {0} is in use by another berth")]
    StateRootLocked(PathBuf),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot open state: {0}")]
    Start(#[from] crate::daemon::StartError),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::EndpointError),
}

/// Serves until SIGTERM or SIGINT; SIGHUP reloads `sources` (see `reload`).
pub async fn run(config: Config, sources: ConfigSources, levels: Option<LevelControl>) -> Result<(), ServeError> {
    for dir in [&config.state_root, &config.run_root] {
        create_private_dir(dir)?;
    }
    // Two daemons on one state root would corrupt it, whatever their sockets.
    let _lock = lock_state_root(&config.lock_file(), &config.state_root)?;
    let socket = config.socket.clone();
    let mut terminate = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    // Recovery (temp layers, orphan snapshots, sandboxes whose namespaces are
    // gone) finishes before the socket exists: a client that can connect is
    // never answered from half-recovered state.
    let in_force = config.clone();
    let daemon = Daemon::open(config).await?;
    let metrics = Metrics::new(daemon.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let endpoint = match in_force.metrics.address.as_str() {
        "" => None,
        address => {
            let served = Served::start(address, metrics.clone()).await?;
            tracing::info!(address = %served.address, "metrics endpoint serving");
            Some(served)
        }
    };
    let owner = daemon.clone();
    let mut reloader = Reloader::new(sources, in_force, daemon.clone(), levels, metrics.clone(), endpoint);
    let listener = server::bind(&socket)?;
    let in_flight = InFlight::default();
    let mut serving = tokio::spawn(server::serve(daemon, listener, in_flight.clone(), metrics, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(socket = %socket.display(), version = env!("CARGO_PKG_VERSION"), "berth serving CRI");

    let outcome = loop {
        tokio::select! {
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break None }
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break None }
            _ = hangup.recv() => reloader.reload().await,
            finished = &mut serving => break Some(finished),
        }
    };
    let result = match outcome {
        Some(finished) => flatten(finished),
        None => {
            // Stop accepting, then wait for the calls being answered; idle
            // connections (kubelet's is never closed) are not waited for.
            let _ = stop_tx.send(());
            let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
                tokio::select! {
                    finished = &mut serving => flatten(finished),
                    () = in_flight.idle() => Ok(()),
                }
            })
            .await;
            serving.abort();
            drained.unwrap_or_else(|_| {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight calls still running; exiting anyway");
                Ok(())
            })
        }
    };
    drop(reloader);
    owner.shutdown();
    if let Err(e) = std::fs::remove_file(&socket) {
        tracing::warn!(socket = %socket.display(), error = %e, "could not remove socket");
    }
    tracing::info!("berth stopped");
    result
}

fn flatten(finished: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match finished {
        Ok(result) => result.map_err(ServeError::from),
        Err(join) => {
            tracing::error!(error = %join, "gRPC server task failed");
            Ok(())
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(|source| ServeError::Io { path: dir.to_path_buf(), source })
}

fn lock_state_root(lock_file: &Path, state_root: &Path) -> Result<Flock<File>, ServeError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_file)
        .map_err(|source| ServeError::Io { path: lock_file.to_path_buf(), source })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| ServeError::StateRootLocked(state_root.to_path_buf()))
}
