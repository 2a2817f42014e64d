//! The `CreateContainer` RPC. All or nothing: each resource made is recorded in
//! `Made`, and a failure at any step undoes exactly those, in reverse order.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tracing::Instrument;

use crate::cri::v1::ContainerConfig;

use super::events::EventKind;
use super::image_volumes::{self, ImageVolume};
use super::record::{self, ContainerRecord, ImageUsed, Metadata, ProcessUser};
use super::rootfs::{self, RootfsPaths};
use super::spec::{SpecInput, build_spec};
use super::staging::{self, StagedMounts};
use super::{ContainerError, ContainerService};
use crate::config::resolve_binary;
use crate::idmap::PodUserNamespace;
use crate::ids::new_id;
use crate::monitor::{self, MonitorArgs};
use crate::sandbox::{SandboxRecord, SandboxState};

/// What a create has made so far, to undo on failure.
#[derive(Default)]
struct Made {
    name: Option<String>,
    lease: bool,
    dirs: bool,
    rootfs: bool,
    image_volumes: Vec<ImageVolume>,
    /// NRI plugins were told of the container: they hear of its end too.
    announced: Option<ContainerRecord>,
    /// A monitor was started: the runtime may hold the container even when the
    /// monitor's answer was a failure or never came.
    monitor: bool,
}

/// The snapshot lease a container holds on its image.
pub(super) fn lease_holder(id: &str) -> String {
    format!("container/{id}")
}

impl ContainerService {
    /// Creates a container in `sandbox`; it runs nothing until started.
    pub async fn create(
        self: &Arc<Self>,
        sandbox: &SandboxRecord,
        config: ContainerConfig,
    ) -> Result<String, ContainerError> {
        validate(&config)?;
        if sandbox.state != SandboxState::Ready {
            return Err(ContainerError::SandboxNotReady(sandbox.id.clone()));
        }
        let id = new_id();
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        // An NRI plugin synchronising meanwhile waits for the save (nri/service.rs).
        let sync = self.nri.block_sync().await;
        let mut made = Made::default();
        match self.create_steps(sandbox, &config, &id, &mut made).await {
            Ok(container) => {
                drop(sync);
                tracing::info!(container = %id, sandbox = %sandbox.id, name = %container.metadata.name, "container created");
                self.watch(&container);
                self.events.publish(&id, &sandbox.id, EventKind::Created);
                self.nri.post_create_container(sandbox, &container).await;
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(sandbox = %sandbox.id, error = %e, "CreateContainer failed; undoing");
                self.undo_create(&id, sandbox, made).await;
                self.forget(&id);
                Err(e)
            }
        }
    }

    async fn create_steps(
        &self,
        sandbox: &SandboxRecord,
        config: &ContainerConfig,
        id: &str,
        made: &mut Made,
    ) -> Result<ContainerRecord, ContainerError> {
        let metadata = config.metadata.clone().unwrap_or_default();
        let key = record::name_key(&sandbox.id, &Metadata { name: metadata.name, attempt: metadata.attempt });
        record::reserve_name(&self.store, &key, id)?;
        made.name = Some(key);

        let requested = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let image = self
            .images
            .lease(&super::create::lease_holder(id), &requested)
            .instrument(tracing::debug_span!(target: crate::metrics::STEP_TARGET, "image lease"))
            .await?
            .ok_or_else(|| ContainerError::ImageNotFound(requested.clone()))?;
        made.lease = true;

        let (state_dir, run_dir) = (self.state_dir(id), self.run_dir(id));
        made.dirs = true;
        for dir in [&state_dir, &run_dir] {
            std::fs::create_dir_all(dir).map_err(|e| ContainerError::host(dir.display().to_string(), e))?;
        }
        let user = pod_user_namespace(sandbox)?;
        let paths = self.rootfs_paths(id);
        let lower = image.lower_dirs.clone();
        let mount_paths = RootfsPaths { layer: paths.layer.clone(), mount_point: paths.mount_point.clone() };
        made.rootfs = true;
        let rootfs_user = user.clone();
        let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "rootfs mount");
        tokio::task::spawn_blocking(move || {
            step.in_scope(|| rootfs::mount_rootfs(&lower, &mount_paths, rootfs_user.as_deref()))
        })
        .await
        .map_err(|e| ContainerError::host("rootfs task", e))??;
        let mut staged = StagedMounts::new();
        self.mount_image_volumes(id, config, user.as_ref(), &mut made.image_volumes, &mut staged).await?;

        let handler = self.handlers.get(&sandbox.runtime_handler)?;
        let mut spec = {
            let runtime = handler.runtime();
            let input = SpecInput {
                container_id: id,
                config,
                sandbox,
                image: &image.config,
                rootfs: &paths.mount_point,
                host: &self.host,
                features: runtime.features(),
                staged: &staged,
                user_namespace: user.as_deref(),
                run_dir: &run_dir,
            };
            // Reads the rootfs (/etc/passwd and /etc/group): small reads, no await.
            let _step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "spec build").entered();
            tokio::task::block_in_place(|| build_spec(&input))?
        };
        let stop_signal = image.config.config().as_ref().and_then(|c| c.stop_signal().clone()).unwrap_or_default();
        let used = ImageUsed {
            requested,
            id: image.record.id.clone(),
            reference: image.reference.clone(),
            top_chain_id: image.record.top_chain_id().unwrap_or_default().to_string(),
            stop_signal,
        };
        let log_path = log_path(sandbox, config);
        // NRI plugins see the container before anyone else can: its record is
        // saved only once they agreed.
        if self.nri.is_active() {
            let draft = ContainerRecord::new(
                id.to_string(),
                sandbox.id.clone(),
                config,
                used.clone(),
                handler.name.clone(),
                log_path.clone(),
                0,
                0,
            );
            made.announced = Some(draft.clone());
            let adjustments = self.nri.create_container(sandbox, &draft).await?;
            crate::nri::adjust::apply(&mut spec, &adjustments, self.host.min_oom_score_adj)?;
        }
        // The runtime's own preparation last, on the spec as plugins left it
        // (the runtime may look up mount destinations in the rootfs).
        tokio::task::block_in_place(|| handler.runtime().prepare_spec(&mut spec, &run_dir))?;

        let spec_json = serde_json::to_vec_pretty(&spec).map_err(|e| ContainerError::host("config.json", e))?;
        let spec_path = run_dir.join("config.json");
        tracing::debug_span!(target: crate::metrics::STEP_TARGET, "spec write").in_scope(|| {
            crate::files::write_atomic(&spec_path, &spec_json, 0o600)
                .map_err(|e| ContainerError::host(spec_path.display().to_string(), e))
        })?;

        if let Some(dir) = log_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(dir).map_err(|e| ContainerError::host(dir.display().to_string(), e))?;
        }
        let args = MonitorArgs {
            id: id.to_string(),
            bundle: run_dir.clone(),
            runtime_kind: handler.kind,
            runtime: resolve_binary(&handler.binary).unwrap_or_else(|| handler.binary.clone()),
            runtime_root: handler.root.clone(),
            systemd_cgroup: handler.systemd_cgroup,
            runtime_timeout: handler.timeout,
            log_path: log_path.clone().unwrap_or_else(|| PathBuf::from("/dev/null")),
            exit_file: self.exit_file(id),
            socket_dir: run_dir.clone(),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            berth_binary: None,
        };
        made.monitor = true;
        let staged_in = run_dir.clone();
        // The monitor runs the runtime's `create`: this step includes it.
        let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "monitor spawn");
        let started = tokio::task::spawn_blocking(move || {
            let started = step.in_scope(|| monitor::spawn(&args))?;
            // The container's mount namespace holds its own copies now.
            staging::unmount_all(&staged_in)?;
            Ok::<_, ContainerError>(started)
        })
        .await
        .map_err(|e| ContainerError::host("monitor task", e))??;

        let user = spec.process().as_ref().map(|p| p.user()).map(|u| ProcessUser {
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
        });
        let mut container = ContainerRecord::new(
            id.to_string(),
            sandbox.id.clone(),
            config,
            used,
            handler.name.clone(),
            log_path,
            started.pid,
            started.container_pid,
        );
        container.user = user.unwrap_or_default();
        container.image_volumes = std::mem::take(&mut made.image_volumes);
        container.cgroup = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.cgroups_path().as_ref())
            .map(|path| crate::stats::cgroup::hierarchy_path(&path.to_string_lossy()))
            .unwrap_or_default();
        record::save(&self.store, &container)?;
        Ok(container)
    }

    async fn undo_create(&self, id: &str, sandbox: &SandboxRecord, made: Made) {
        if let Some(announced) = &made.announced {
            self.nri.remove_container(sandbox, announced).await;
        }
        if made.monitor
            && let Ok(handler) = self.handlers.get(&sandbox.runtime_handler)
            && let Err(e) = handler.runtime().delete(id, true).await
        {
            tracing::warn!(container = %id, error = %e, "undo: cannot delete the container from its runtime");
        }
        if made.rootfs
            && let Err(e) = rootfs::unmount_rootfs(&self.rootfs_paths(id))
        {
            tracing::warn!(container = %id, error = %e, "undo: cannot unmount the rootfs");
        }
        if let Err(e) = staging::unmount_all(&self.run_dir(id)) {
            tracing::warn!(container = %id, error = %e, "undo: cannot unmount the staged mounts");
        }
        if made.dirs {
            for dir in [self.run_dir(id), self.state_dir(id)] {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if made.lease
            && let Err(e) = self.images.release_lease(&lease_holder(id)).await
        {
            tracing::warn!(container = %id, error = %e, "undo: cannot release the image lease");
        }
        if let Some(key) = made.name
            && let Err(e) = record::release_name(&self.store, &key, id)
        {
            tracing::warn!(container = %id, error = %e, "undo: cannot release the container's name");
        }
    }
}

/// The pod's user namespace, open, when it has one of its own.
fn pod_user_namespace(sandbox: &SandboxRecord) -> Result<Option<Arc<PodUserNamespace>>, ContainerError> {
    let Some(mappings) = sandbox.user_namespace else { return Ok(None) };
    let pin = sandbox
        .namespaces
        .user
        .as_deref()
        .ok_or_else(|| ContainerError::host("the pod's user namespace", "not pinned"))?;
    let user = PodUserNamespace::open(pin, mappings).map_err(|e| ContainerError::host(pin.display().to_string(), e))?;
    Ok(Some(Arc::new(user)))
}

/// The container's log file: the pod's log directory joined with the config's
/// relative path; none when kubelet asks for no log.
fn log_path(sandbox: &SandboxRecord, config: &ContainerConfig) -> Option<PathBuf> {
    if sandbox.log_directory.is_empty() || config.log_path.is_empty() {
        return None;
    }
    Some(Path::new(&sandbox.log_directory).join(&config.log_path))
}

fn validate(config: &ContainerConfig) -> Result<(), ContainerError> {
    let metadata = config.metadata.as_ref().ok_or_else(|| ContainerError::invalid("config.metadata", "must be set"))?;
    if metadata.name.is_empty() {
        return Err(ContainerError::invalid("config.metadata.name", "must not be empty"));
    }
    if metadata.name.contains(['/', '\0']) || metadata.name.len() > 253 {
        return Err(ContainerError::invalid(
            "config.metadata.name",
            format!("{:?} is not a valid name", metadata.name),
        ));
    }
    let image = config.image.as_ref().map(|i| i.image.trim()).unwrap_or_default();
    if image.is_empty() {
        return Err(ContainerError::invalid("config.image.image", "must not be empty"));
    }
    let log_path = Path::new(&config.log_path);
    if log_path.is_absolute() || log_path.components().any(|c| c == Component::ParentDir) {
        return Err(ContainerError::invalid(
            "config.log_path",
            format!("{:?} must be relative to the pod's log directory, without ..", config.log_path),
        ));
    }
    for (i, mount) in config.mounts.iter().enumerate() {
        if !Path::new(&mount.container_path).is_absolute() {
            return Err(ContainerError::invalid(
                &format!("config.mounts[{i}].container_path"),
                format!("{:?} is not an absolute path", mount.container_path),
            ));
        }
        if mount.host_path.is_empty() && !image_volumes::is_image_volume(mount) {
            return Err(ContainerError::invalid(&format!("config.mounts[{i}].host_path"), "must not be empty"));
        }
        image_volumes::validate(i, mount)?;
    }
    if config.stop_signal != 0 && super::stop::configured_stop_signal(config.stop_signal).is_none() {
        return Err(ContainerError::invalid(
            "config.stop_signal",
            format!("{} is not a signal berth can send (real-time signals are not supported)", config.stop_signal),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::v1::{ContainerMetadata, ImageSpec, Mount};

    fn config() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: "app".into(), attempt: 0 }),
            image: Some(ImageSpec { image: "busybox".into(), ..Default::default() }),
            log_path: "app/0.log".into(),
            ..Default::default()
        }
    }

    fn refused_field(config: ContainerConfig) -> String {
        match validate(&config) {
            Err(ContainerError::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert!(validate(&config()).is_ok());
        assert_eq!(refused_field(ContainerConfig { metadata: None, ..config() }), "config.metadata");
        let unnamed = ContainerConfig { metadata: Some(ContainerMetadata::default()), ..config() };
        assert_eq!(refused_field(unnamed), "config.metadata.name");
        assert_eq!(refused_field(ContainerConfig { image: None, ..config() }), "config.image.image");
        assert_eq!(refused_field(ContainerConfig { log_path: "../x.log".into(), ..config() }), "config.log_path");
        assert_eq!(refused_field(ContainerConfig { log_path: "/var/x.log".into(), ..config() }), "config.log_path");
        let mount = Mount { container_path: "data".into(), host_path: "/tmp".into(), ..Default::default() };
        assert_eq!(
            refused_field(ContainerConfig { mounts: vec![mount], ..config() }),
            "config.mounts[0].container_path"
        );
    }
}
