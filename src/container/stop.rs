//! The `StopContainer` RPC: idempotent, and succeeds for an unknown ID.

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
            let signal = stop_signal(&container.image.stop_signal);
            tracing::info!(container = %id, %signal, timeout, "stopping container");
            if let Err(e) = runtime.kill(id, signal, false).await {
                tracing::debug!(container = %id, error = %e, "stop signal not delivered");
            }
            if self.wait_exit(container, Duration::from_secs(timeout.unsigned_abs())).await {
                self.fold_exit(id).await?;
                return Ok(());
            }
        }
        if let Err(e) = runtime.kill(id, Signal::SIGKILL, true).await {
            // The runtime refuses to signal a container that has just exited;
            // otherwise its failure is the stop's, reported now for the retry
            // rather than after waiting for an exit nothing was sent to cause.
            if self.wait_exit(container, KILL_REFUSED_GRACE).await {
                self.fold_exit(id).await?;
                return Ok(());
            }
            return Err(e.into());
        }
        if !self.wait_exit(container, KILL_WAIT).await {
            return Err(ContainerError::StopTimedOut { id: id.to_string(), seconds: KILL_WAIT.as_secs() });
        }
        self.fold_exit(id).await?;
        Ok(())
    }
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
    fn stop_signal_forms() {
        assert_eq!(stop_signal(""), Signal::SIGTERM);
        assert_eq!(stop_signal("SIGUSR1"), Signal::SIGUSR1);
        assert_eq!(stop_signal("usr1"), Signal::SIGUSR1);
        assert_eq!(stop_signal("9"), Signal::SIGKILL);
        assert_eq!(stop_signal("SIGBOGUS"), Signal::SIGTERM);
    }
}
