//! The `RemovePodSandbox` RPC: idempotent, and succeeds for an unknown ID.

use super::SandboxService;
use super::error::SandboxError;
use super::record;

impl SandboxService {
    /// Stops the sandbox if needed, then deletes its files and its record.
    pub async fn remove(&self, wanted: &str) -> Result<(), SandboxError> {
        let Some(id) = self.resolve(wanted)? else { return Ok(()) };
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let Some(mut sandbox) = record::get(&self.store, &id)? else { return Ok(()) };
        self.stop_locked(&mut sandbox).await?;
        self.nri.remove_pod_sandbox(&sandbox).await;
        let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "dirs remove").entered();
        for dir in [self.run_dir(&id), self.state_dir(&id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(SandboxError::host(dir.display().to_string(), e));
            }
        }
        drop(step);
        record::delete(&self.store, &sandbox)?;
        drop(_guard);
        self.forget_lock(&id);
        tracing::info!(sandbox = %id, "pod sandbox removed");
        Ok(())
    }
}
