//! The `StopContainer` RPC: idempotent, and succeeds for an unknown ID.

use tracing::Instrument;

use std::str::FromStr;
use std::time::Duration;

use super::record::{self, ContainerRecord, ContainerState};
use super::{ContainerError, ContainerService, is_monitor_of};
use crate::runtime::Signal;

/// How long a container may take to die after SIGKILL before the stop fails
/// (a process stuck in the kernel, in D state, outlives any signal).
const KILL_WAIT: Duration = Duration::from_secs(30);

/// How long a container whose runtime refused SIGKILL is given to show it had
/// exited anyway.
const KILL_REFUSED_GRACE: Duration = Duration::from_secs(1);

impl ContainerService {
    /// Sends the image's StopSignal (SIGTERM by default), waits up to `timeout`
    /// seconds, then SIGKILLs every process of the container. kubelet calls this
    /// several times; a stopped or unknown container is no error.
    pub async fn stop(&self, wanted: &str, timeout: i64) -> Result<(), ContainerError> {
        let Some(id) = self.resolve(wanted)? else { return Ok(()) };
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(container) = record::get(&self.store, &id)? else { return Ok(()) };
        self.stop_locked(&container, timeout).await
    }

    /// The work of a stop, for a caller holding the container's lock.
    pub(super) async fn stop_locked(&self, container: &ContainerRecord, timeout: i64) -> Result<(), ContainerError> {
        let id = container.id.as_str();
        if container.state == ContainerState::Exited {
            return Ok(());
        }
        if !is_monitor_of(container.monitor_pid, id) {
            self.fold_exit(id).await?;
            return Ok(());
        }
        let runtime = self.runtime_for(container)?;
        if container.state == ContainerState::Running && timeout > 0 {
            let signal = effective_stop_signal(container, &container.config());
            tracing::info!(container = %id, %signal, timeout, "stopping container");
            let kill = runtime.kill(id, signal, false);
            if let Err(e) = kill
                .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "runtime", what = "kill"))
                .await
            {
                tracing::debug!(container = %id, error = %e, "stop signal not delivered");
            }
            let grace = Duration::from_secs(timeout.unsigned_abs());
            let exited = self
                .wait_exit(container, grace)
                .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "exit wait"));
            if exited.await {
                self.fold_exit(id).await?;
                return Ok(());
            }
        }
        let kill = runtime.kill(id, Signal::SIGKILL, true);
        if let Err(e) = kill
            .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "runtime", what = "kill --all"))
            .await
        {
            // The runtime refuses to signal a container that has just exited;
            // otherwise its failure is the stop's, reported now for the retry
            // rather than after waiting for an exit nothing was sent to cause.
            if self.wait_exit(container, KILL_REFUSED_GRACE).await {
                self.fold_exit(id).await?;
                return Ok(());
            }
            return Err(e.into());
        }
        let exited = self
            .wait_exit(container, KILL_WAIT)
            .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "exit wait"));
        if !exited.await {
            return Err(ContainerError::StopTimedOut { id: id.to_string(), seconds: KILL_WAIT.as_secs() });
        }
        self.fold_exit(id).await?;
        Ok(())
    }
}

/// The signal StopContainer sends first: the config's `stop_signal` (CRI 1.33+)
/// when set, else the image's StopSignal, else SIGTERM. ContainerStatus reports it.
pub fn effective_stop_signal(container: &ContainerRecord, config: &crate::cri::v1::ContainerConfig) -> Signal {
    configured_stop_signal(config.stop_signal).unwrap_or_else(|| stop_signal(&container.image.stop_signal))
}

/// A CRI `Signal` as the kernel's: None for RUNTIME_DEFAULT, for a value the
/// enum does not have, and for the real-time signals (CreateContainer refuses
/// those: berth's runtime seam signals by name).
pub(super) fn configured_stop_signal(value: i32) -> Option<Signal> {
    let name = crate::cri::v1::Signal::try_from(value).ok()?.as_str_name().strip_prefix("SIGNAL_")?;
    match name {
        "RUNTIME_DEFAULT" => None,
        // Linux's aliases, under the names nix knows.
        "SIGCLD" => Some(Signal::SIGCHLD),
        "SIGIOT" => Some(Signal::SIGABRT),
        "SIGPOLL" => Some(Signal::SIGIO),
        other => Signal::from_str(other).ok(),
    }
}

/// The CRI's name for `signal`, for ContainerStatus.
pub fn cri_signal(signal: Signal) -> crate::cri::v1::Signal {
    crate::cri::v1::Signal::from_str_name(&format!("SIGNAL_{}", signal.as_str()))
        .unwrap_or(crate::cri::v1::Signal::RuntimeDefault)
}

/// An image's StopSignal (`SIGUSR1`, `USR1` or `10`); SIGTERM when unset or unknown.
fn stop_signal(name: &str) -> Signal {
    let name = name.trim();
    if name.is_empty() {
        return Signal::SIGTERM;
    }
    let parsed = match name.parse::<i32>() {
        Ok(number) => Signal::try_from(number).ok(),
        Err(_) => {
            let upper = name.to_ascii_uppercase();
            let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
            Signal::from_str(&full).ok()
        }
    };
    parsed.unwrap_or_else(|| {
        tracing::warn!(signal = name, "unknown StopSignal in the image; using SIGTERM");
        Signal::SIGTERM
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_stop_signals_and_their_cri_names() {
        use crate::cri::v1::Signal as Cri;
        assert_eq!(configured_stop_signal(Cri::RuntimeDefault as i32), None);
        assert_eq!(configured_stop_signal(Cri::Sigusr1 as i32), Some(Signal::SIGUSR1));
        assert_eq!(configured_stop_signal(Cri::Sigcld as i32), Some(Signal::SIGCHLD));
        assert_eq!(configured_stop_signal(Cri::Sigrtmin as i32), None, "real-time: refused at create");
        assert_eq!(configured_stop_signal(9999), None);
        assert_eq!(cri_signal(Signal::SIGTERM), Cri::Sigterm);
        assert_eq!(cri_signal(Signal::SIGUSR1), Cri::Sigusr1);
    }

    #[test]
    fn stop_signal_forms() {
        assert_eq!(stop_signal(""), Signal::SIGTERM);
        assert_eq!(stop_signal("SIGUSR1"), Signal::SIGUSR1);
        assert_eq!(stop_signal("usr1"), Signal::SIGUSR1);
        assert_eq!(stop_signal("9"), Signal::SIGKILL);
        assert_eq!(stop_signal("SIGBOGUS"), Signal::SIGTERM);
    }
}
