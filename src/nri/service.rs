//! berth's side of NRI: the socket plugins connect to, their registration and
//! first synchronisation, and the lifecycle events sent to them.
//!
//! - **Registration.** A connected plugin must call RegisterPlugin within the
//!   registration timeout; berth then calls its Configure (which says what it
//!   subscribes to) and Synchronize (every pod and container), and only then
//!   adds it to the plugins events go to, in the order of their indexes.
//! - **Nothing is missed while a plugin synchronises.** A CRI call that makes a
//!   pod or a container holds a read guard of `sync` from before its event to
//!   the save of its record; a synchronisation holds the write guard from its
//!   snapshot to the plugin's joining. So a new pod or container is either in
//!   the snapshot or sent to the plugin as an event, never neither.
//! - **Events go one at a time**, to each subscribed plugin in order, each
//!   answered before the next is sent (`dispatch`): plugins see the order berth
//!   acts in. A plugin that does not answer within the request timeout, or
//!   whose connection breaks, is disconnected and the CRI call goes on; an
//!   error a plugin returns fails the CRI call (for the events that may fail).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use prost::Message as _;
use tokio::net::UnixListener;
use tokio::sync::{RwLock, RwLockReadGuard, oneshot};

use super::api;
use super::lock;
use super::peer::{self, Handler, Peer, PeerError};
use super::ttrpc;
use crate::config::NriConfig;
use crate::container::ContainerRecord;
use crate::sandbox::SandboxRecord;
use crate::store::Store;

const RUNTIME_SERVICE: &str = "nri.pkg.api.v1alpha1.Runtime";
const PLUGIN_SERVICE: &str = "nri.pkg.api.v1alpha1.Plugin";
/// The NRI version whose API berth speaks.
const NRI_VERSION: &str = "v0.12.2";
/// Every event NRI defines (`1 << (event - 1)` for events 1..=14).
const VALID_EVENTS: i32 = (1 << 14) - 1;

#[derive(Debug, thiserror::Error)]
pub enum NriError {
    /// A plugin refused the operation: the CRI call fails with its reason.
    #[error("NRI plugin {plugin} refused {event}: {message}")]
    Refused { plugin: String, event: &'static str, message: String },
    /// berth cannot apply what a plugin asked for.
    #[error("NRI plugin {plugin}: {message}")]
    Unsupported { plugin: String, message: String },
    /// Two plugins adjusted the same thing.
    #[error("NRI plugins {first} and {second} both adjust {field}")]
    Conflict { field: String, first: String, second: String },
    #[error("NRI socket {path}: {source}")]
    Socket {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for NriError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            NriError::Refused { .. } => crate::error::ErrorKind::FailedPrecondition,
            NriError::Unsupported { .. } | NriError::Conflict { .. } => crate::error::ErrorKind::FailedPrecondition,
            NriError::Socket { .. } => crate::error::ErrorKind::Internal,
        }
    }
}

/// A registered plugin.
struct Plugin {
    /// `<index>-<name>`, as NRI names plugins.
    name: String,
    index: String,
    /// Bit `1 << (event - 1)` for each event it subscribed to.
    events: i32,
    peer: Peer,
}

impl Plugin {
    fn wants(&self, event: api::Event) -> bool {
        self.events & (1 << (event as i32 - 1)) != 0
    }
}

/// What plugins may ask of berth's containers (the Runtime service's
/// UpdateContainers): given by the container service once both exist.
pub trait ContainerControl: Send + Sync {
    /// New resources for a container, without telling the plugins again.
    fn update(&self, id: String, resources: api::LinuxResources) -> BoxFuture<'static, Result<(), String>>;
    /// Stops a container at once, as an eviction.
    fn evict(&self, id: String, reason: String);
}

pub struct Nri {
    control: std::sync::OnceLock<std::sync::Weak<dyn ContainerControl>>,
    config: NriConfig,
    store: Arc<Store>,
    /// Registered plugins, by index; held across each event, one at a time.
    plugins: tokio::sync::Mutex<Vec<Plugin>>,
    /// How many there are, read without the lock: with none, an event costs
    /// nothing (not even building its message).
    registered: std::sync::atomic::AtomicUsize,
    sync: RwLock<()>,
    /// Containers whose StopContainer was sent: it is sent once, whether
    /// StopContainer, the container's own exit or RemoveContainer comes first.
    stopped: Mutex<HashSet<String>>,
    /// berth bound `socket_path`: its file is berth's to remove at shutdown.
    listening: std::sync::atomic::AtomicBool,
}

impl Nri {
    pub fn new(config: NriConfig, store: Arc<Store>) -> Arc<Nri> {
        Arc::new(Nri {
            control: std::sync::OnceLock::new(),
            config,
            store,
            plugins: tokio::sync::Mutex::new(Vec::new()),
            registered: std::sync::atomic::AtomicUsize::new(0),
            sync: RwLock::new(()),
            stopped: Mutex::new(HashSet::new()),
            listening: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// At shutdown: the socket berth bound goes with it, so that nothing
    /// connects to a runtime that is gone.
    pub fn stop_listening(&self) {
        if self.listening.swap(false, std::sync::atomic::Ordering::SeqCst)
            && let Err(e) = std::fs::remove_file(&self.config.socket_path)
        {
            tracing::warn!(socket = %self.config.socket_path.display(), error = %e, "could not remove the NRI socket");
        }
    }

    /// Where plugins' updates and evictions go.
    pub fn set_control(&self, control: std::sync::Weak<dyn ContainerControl>) {
        let _ = self.control.set(control);
    }

    /// Starts the pre-installed plugins, then listens on the configured socket;
    /// plugins that connect are registered on tasks of their own. Does nothing
    /// when NRI is off.
    pub fn listen(self: &Arc<Self>) -> Result<(), NriError> {
        if !self.config.enable {
            return Ok(());
        }
        self.launch_plugins();
        let path = self.config.socket_path.clone();
        let socket_error = |source| NriError::Socket { path: path.display().to_string(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(socket_error)?;
        }
        // A socket nobody answers on is left over; one that answers is
        // another runtime's, never taken from it.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())) {
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(socket_error(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process serves NRI here (set nri.socket_path, or nri.enable = false)",
                )));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener = UnixListener::bind(&path).map_err(socket_error)?;
        self.listening.store(true, std::sync::atomic::Ordering::SeqCst);
        set_mode(&path, 0o600);
        tracing::info!(socket = %path.display(), "serving NRI plugins");
        let nri = self.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        let nri = nri.clone();
                        tokio::spawn(async move { nri.register(stream).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "NRI socket: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Starts each executable `<index>-<name>` of the plugin directory, in
    /// the order of their names, with its end of a socket pair as descriptor 3
    /// (`NRI_PLUGIN_SOCKET`), as NRI launches pre-installed plugins.
    fn launch_plugins(self: &Arc<Self>) {
        let Ok(entries) = std::fs::read_dir(&self.config.plugin_path) else { return };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|entry| {
                use std::os::unix::fs::PermissionsExt;
                entry.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            match self.launch(&name) {
                Ok(()) => tracing::info!(plugin = %name, "NRI plugin started"),
                Err(e) => tracing::warn!(plugin = %name, error = %e, "cannot start the pre-installed NRI plugin"),
            }
        }
    }

    fn launch(self: &Arc<Self>, file: &str) -> Result<(), String> {
        let (index, name) = file.split_once('-').ok_or("its name is not <index>-<name>")?;
        validate_registration(&api::RegisterPluginRequest {
            plugin_name: name.into(),
            plugin_idx: index.into(),
            ..Default::default()
        })?;
        let config = [format!("{file}.conf"), format!("{name}.conf")]
            .iter()
            .find_map(|candidate| std::fs::read_to_string(self.config.plugin_config_path.join(candidate)).ok())
            .unwrap_or_default();
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        let theirs_fd = std::os::fd::AsRawFd::as_raw_fd(&theirs);
        let mut command = tokio::process::Command::new(self.config.plugin_path.join(file));
        command
            .env_clear()
            .env("NRI_PLUGIN_NAME", name)
            .env("NRI_PLUGIN_IDX", index)
            .env("NRI_PLUGIN_SOCKET", "3")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: dup2 is a plain system call, safe between fork and exec;
        // `theirs` stays open until the child has exec'd. dup2 clears
        // close-on-exec on descriptor 3, which the plugin inherits.
        unsafe {
            command.pre_exec(move || nix::unistd::dup2(theirs_fd, 3).map(drop).map_err(std::io::Error::from));
        }
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        drop(theirs);
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| e.to_string())?;
        let nri = self.clone();
        tokio::spawn(async move { nri.register_with(stream, config).await });
        // Reaped when it ends; it ends when its connection does.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// Registers one connected plugin, or drops it (logged) if it does not
    /// register, configure and synchronise in time.
    async fn register(self: Arc<Self>, stream: tokio::net::UnixStream) {
        self.register_with(stream, String::new()).await
    }

    /// `config`: what Configure hands the plugin (a pre-installed plugin's file).
    async fn register_with(self: Arc<Self>, stream: tokio::net::UnixStream, config: String) {
        let (registered, registration) = oneshot::channel();
        let handler = runtime_service(Mutex::new(Some(registered)), Arc::downgrade(&self));
        let peer = Peer::start(stream, peer::RUNTIME, handler);
        let timeout = self.config.plugin_registration_timeout;
        let request = match tokio::time::timeout(timeout, registration).await {
            Ok(Ok(request)) => request,
            _ => {
                tracing::warn!(?timeout, "an NRI plugin connected but did not register in time; disconnected");
                return;
            }
        };
        let name = format!("{}-{}", request.plugin_idx, request.plugin_name);
        match self.configure_and_join(peer, &request, &name, config).await {
            Ok(()) => tracing::info!(plugin = %name, "NRI plugin registered"),
            Err(e) => tracing::warn!(plugin = %name, error = %e, "NRI plugin disconnected during registration"),
        }
    }

    async fn configure_and_join(
        &self,
        peer: Peer,
        request: &api::RegisterPluginRequest,
        name: &str,
        config: String,
    ) -> Result<(), PeerError> {
        let timeout = self.config.plugin_registration_timeout;
        let configure = api::ConfigureRequest {
            config,
            runtime_name: "berth".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            registration_timeout: millis(timeout),
            request_timeout: millis(self.config.plugin_request_timeout),
            nri_version: NRI_VERSION.into(),
        };
        let configured: api::ConfigureResponse = peer.call(PLUGIN_SERVICE, "Configure", &configure, timeout).await?;
        let events = match configured.events {
            0 => VALID_EVENTS,
            events if events & !VALID_EVENTS != 0 => {
                return Err(PeerError::Status {
                    method: "Configure".into(),
                    code: ttrpc::code::INVALID_ARGUMENT,
                    message: format!("subscribes to unknown events ({events:#x})"),
                });
            }
            events => events,
        };
        // From the snapshot to joining, nothing new is made: see the module.
        let _sync = self.sync.write().await;
        let (pods, containers) = self.snapshot();
        let synchronize = api::SynchronizeRequest { pods, containers, more: false };
        let answer: api::SynchronizeResponse = peer.call(PLUGIN_SERVICE, "Synchronize", &synchronize, timeout).await?;
        if !answer.update.is_empty() {
            tracing::warn!(plugin = %name, "NRI plugin asked for container updates at synchronisation; not applied yet");
        }
        let plugin = Plugin { name: name.to_string(), index: request.plugin_idx.clone(), events, peer };
        let mut plugins = self.plugins.lock().await;
        let at = plugins.partition_point(|p| p.index <= plugin.index);
        plugins.insert(at, plugin);
        self.registered.store(plugins.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Every pod and container berth has, as NRI describes them.
    fn snapshot(&self) -> (Vec<api::PodSandbox>, Vec<api::Container>) {
        let pods = crate::sandbox::record::list(&self.store).unwrap_or_default();
        let containers = crate::container::record::list(&self.store).unwrap_or_default();
        (pods.iter().map(super::convert::pod).collect(), containers.iter().map(super::convert::container).collect())
    }

    /// Whether any plugin is registered. A plugin registering meanwhile waits
    /// for the CRI calls holding `block_sync`, and finds their work in its
    /// synchronisation.
    pub fn is_active(&self) -> bool {
        self.registered.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Held by a CRI call from before its event to the save of what it made.
    pub async fn block_sync(&self) -> RwLockReadGuard<'_, ()> {
        self.sync.read().await
    }

    /// Sends `event` to each subscribed plugin in turn; the first refusal
    /// ends it and is returned. Plugins that failed to answer are dropped.
    async fn dispatch<Answer: prost::Message + Default>(
        &self,
        event: api::Event,
        method: &'static str,
        request: &impl prost::Message,
    ) -> Result<Vec<(String, Answer)>, NriError> {
        let mut plugins = self.plugins.lock().await;
        if plugins.is_empty() {
            return Ok(Vec::new());
        }
        let timeout = self.config.plugin_request_timeout;
        let mut answers = Vec::new();
        let mut refused = None;
        let mut gone = Vec::new();
        for (i, plugin) in plugins.iter().enumerate().filter(|(_, p)| p.wants(event)) {
            match plugin.peer.call::<Answer>(PLUGIN_SERVICE, method, request, timeout).await {
                Ok(answer) => answers.push((plugin.name.clone(), answer)),
                Err(PeerError::Status { message, .. }) => {
                    refused = Some(NriError::Refused { plugin: plugin.name.clone(), event: method, message });
                    break;
                }
                Err(e) => {
                    tracing::warn!(plugin = %plugin.name, event = method, error = %e, "NRI plugin disconnected");
                    gone.push(i);
                }
            }
        }
        for i in gone.into_iter().rev() {
            plugins.remove(i);
        }
        plugins.retain(|plugin| plugin.peer.is_open());
        self.registered.store(plugins.len(), std::sync::atomic::Ordering::Relaxed);
        match refused {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }

    pub async fn run_pod_sandbox(&self, sandbox: &SandboxRecord) -> Result<(), NriError> {
        if !self.is_active() {
            return Ok(());
        }
        let request = api::RunPodSandboxRequest { pod: Some(super::convert::pod(sandbox)) };
        self.dispatch::<api::RunPodSandboxResponse>(api::Event::RunPodSandbox, "RunPodSandbox", &request).await?;
        Ok(())
    }

    /// A pod's new resources (UpdatePodSandboxResources); a refusal fails it.
    pub async fn update_pod_sandbox(
        &self,
        sandbox: &SandboxRecord,
        resources: Option<&crate::cri::v1::LinuxContainerResources>,
        overhead: Option<&crate::cri::v1::LinuxContainerResources>,
    ) -> Result<(), NriError> {
        if !self.is_active() {
            return Ok(());
        }
        let request = api::UpdatePodSandboxRequest {
            pod: Some(super::convert::pod(sandbox)),
            overhead_linux_resources: overhead.map(super::convert::resources),
            linux_resources: resources.map(super::convert::resources),
        };
        let method = "UpdatePodSandbox";
        self.dispatch::<api::UpdatePodSandboxResponse>(api::Event::UpdatePodSandbox, method, &request).await?;
        Ok(())
    }

    pub async fn post_update_pod_sandbox(&self, sandbox: &SandboxRecord) {
        if !self.is_active() {
            return;
        }
        let request = api::PostUpdatePodSandboxRequest { pod: Some(super::convert::pod(sandbox)) };
        let method = "PostUpdatePodSandbox";
        log_refusal(
            self.dispatch::<api::PostUpdatePodSandboxResponse>(api::Event::PostUpdatePodSandbox, method, &request).await,
        );
    }

    /// Told, not asked: a plugin's error is logged.
    pub async fn stop_pod_sandbox(&self, sandbox: &SandboxRecord) {
        if !self.is_active() {
            return;
        }
        let request = api::StopPodSandboxRequest { pod: Some(super::convert::pod(sandbox)) };
        let result = self.dispatch::<api::StopPodSandboxResponse>(api::Event::StopPodSandbox, "StopPodSandbox", &request);
        log_refusal(result.await);
    }

    pub async fn remove_pod_sandbox(&self, sandbox: &SandboxRecord) {
        if !self.is_active() {
            return;
        }
        let request = api::RemovePodSandboxRequest { pod: Some(super::convert::pod(sandbox)) };
        let method = "RemovePodSandbox";
        log_refusal(self.dispatch::<api::RemovePodSandboxResponse>(api::Event::RemovePodSandbox, method, &request).await);
    }

    /// Asks the plugins about a container about to be made; their adjustments,
    /// by plugin, for `adjust::apply`. The updates of other containers and the
    /// evictions they answer with are carried out as `UpdateContainers` would.
    pub async fn create_container(
        &self,
        sandbox: &SandboxRecord,
        container: &ContainerRecord,
    ) -> Result<Vec<(String, api::ContainerAdjustment)>, NriError> {
        if !self.is_active() {
            return Ok(Vec::new());
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::CreateContainerRequest { pod, container: subject };
        let answers =
            self.dispatch::<api::CreateContainerResponse>(api::Event::CreateContainer, "CreateContainer", &request).await?;
        let mut adjustments = Vec::new();
        for (plugin, answer) in answers {
            self.carry_out(&plugin, answer.update, answer.evict).await;
            adjustments.extend(answer.adjust.map(|adjust| (plugin, adjust)));
        }
        lock(&self.stopped).remove(&container.id);
        Ok(adjustments)
    }

    pub async fn post_create_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) {
        if !self.is_active() {
            return;
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::PostCreateContainerRequest { pod, container: subject };
        let method = "PostCreateContainer";
        log_refusal(self.dispatch::<api::PostCreateContainerResponse>(api::Event::PostCreateContainer, method, &request).await);
    }

    pub async fn post_start_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) {
        if !self.is_active() {
            return;
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::PostStartContainerRequest { pod, container: subject };
        let method = "PostStartContainer";
        log_refusal(self.dispatch::<api::PostStartContainerResponse>(api::Event::PostStartContainer, method, &request).await);
    }

    /// Asks the plugins about new resources for a container; a refusal fails
    /// UpdateContainerResources. What they answer with is carried out.
    pub async fn update_container(
        &self,
        sandbox: &SandboxRecord,
        container: &ContainerRecord,
        resources: &crate::cri::v1::LinuxContainerResources,
    ) -> Result<(), NriError> {
        if !self.is_active() {
            return Ok(());
        }
        let (pod, subject) = parts(sandbox, container);
        let request =
            api::UpdateContainerRequest { pod, container: subject, linux_resources: Some(super::convert::resources(resources)) };
        let answers =
            self.dispatch::<api::UpdateContainerResponse>(api::Event::UpdateContainer, "UpdateContainer", &request).await?;
        for (plugin, answer) in answers {
            self.carry_out(&plugin, answer.update, answer.evict).await;
        }
        Ok(())
    }

    /// The updates and evictions a plugin answered an event with.
    async fn carry_out(&self, plugin: &str, update: Vec<api::ContainerUpdate>, evict: Vec<api::ContainerEviction>) {
        if update.is_empty() && evict.is_empty() {
            return;
        }
        let Some(control) = self.control.get().and_then(std::sync::Weak::upgrade) else { return };
        let answer = update_containers(control.as_ref(), api::UpdateContainersRequest { update, evict }).await;
        for failed in answer.failed {
            tracing::warn!(%plugin, container = %failed.container_id, "an NRI plugin's container update failed");
        }
    }

    pub async fn post_update_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) {
        if !self.is_active() {
            return;
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::PostUpdateContainerRequest { pod, container: subject };
        let method = "PostUpdateContainer";
        log_refusal(self.dispatch::<api::PostUpdateContainerResponse>(api::Event::PostUpdateContainer, method, &request).await);
    }

    pub async fn start_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) -> Result<(), NriError> {
        if !self.is_active() {
            return Ok(());
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::StartContainerRequest { pod, container: subject };
        self.dispatch::<api::StartContainerResponse>(api::Event::StartContainer, "StartContainer", &request).await?;
        Ok(())
    }

    /// Sent once per container, by whichever of StopContainer, its exit and
    /// RemoveContainer comes first.
    pub async fn stop_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) {
        if !self.is_active() {
            return;
        }
        if !lock(&self.stopped).insert(container.id.clone()) {
            return;
        }
        let (pod, subject) = parts(sandbox, container);
        let request = api::StopContainerRequest { pod, container: subject };
        log_refusal(self.dispatch::<api::StopContainerResponse>(api::Event::StopContainer, "StopContainer", &request).await);
    }

    pub async fn remove_container(&self, sandbox: &SandboxRecord, container: &ContainerRecord) {
        if !self.is_active() {
            return;
        }
        self.stop_container(sandbox, container).await;
        let (pod, subject) = parts(sandbox, container);
        let request = api::RemoveContainerRequest { pod, container: subject };
        let method = "RemoveContainer";
        log_refusal(self.dispatch::<api::RemoveContainerResponse>(api::Event::RemoveContainer, method, &request).await);
        lock(&self.stopped).remove(&container.id);
    }
}

/// The pod and the container, as every container event carries them.
fn parts(sandbox: &SandboxRecord, container: &ContainerRecord) -> (Option<api::PodSandbox>, Option<api::Container>) {
    (Some(super::convert::pod(sandbox)), Some(super::convert::container(container)))
}

fn log_refusal<T>(result: Result<T, NriError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "an NRI plugin's error on a notification; ignored");
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// The Runtime service berth serves a plugin: RegisterPlugin hands the
/// registration to `register`'s waiter, once; UpdateContainers updates and
/// evicts containers.
fn runtime_service(
    registered: Mutex<Option<oneshot::Sender<api::RegisterPluginRequest>>>,
    nri: std::sync::Weak<Nri>,
) -> Handler {
    let registered = Arc::new(registered);
    Arc::new(move |request: ttrpc::Request| {
        let (registered, nri) = (registered.clone(), nri.clone());
        Box::pin(async move {
            match (request.service.as_str(), request.method.as_str()) {
                (RUNTIME_SERVICE, "RegisterPlugin") => {
                    let register = api::RegisterPluginRequest::decode(request.payload.as_slice()).map_err(|e| invalid(e.to_string()))?;
                    validate_registration(&register).map_err(invalid)?;
                    match lock(&registered).take() {
                        Some(waiter) => {
                            let _ = waiter.send(register);
                            Ok(api::Empty {}.encode_to_vec())
                        }
                        None => Err(invalid("the plugin is already registered".into())),
                    }
                }
                (RUNTIME_SERVICE, "UpdateContainers") => {
                    let update = api::UpdateContainersRequest::decode(request.payload.as_slice())
                        .map_err(|e| invalid(e.to_string()))?;
                    let control = nri.upgrade().and_then(|nri| nri.control.get().and_then(std::sync::Weak::upgrade));
                    let Some(control) = control else {
                        return Err(ttrpc::Status { code: ttrpc::code::UNAVAILABLE, message: "berth is stopping".into() });
                    };
                    Ok(update_containers(control.as_ref(), update).await.encode_to_vec())
                }
                (RUNTIME_SERVICE, method) => Err(ttrpc::Status {
                    code: ttrpc::code::UNIMPLEMENTED,
                    message: format!("{method} is not served by berth yet"),
                }),
                (service, method) => Err(ttrpc::Status {
                    code: ttrpc::code::UNIMPLEMENTED,
                    message: format!("{service}/{method}: no such service"),
                }),
            }
        })
    })
}

/// Applies a plugin's updates, in order; those that fail (and may not) are
/// answered back. Evictions stop their containers on tasks of their own: a
/// plugin may ask in the middle of an event, which the stop's own event would
/// otherwise wait behind.
async fn update_containers(control: &dyn ContainerControl, request: api::UpdateContainersRequest) -> api::UpdateContainersResponse {
    let mut failed = Vec::new();
    for update in request.update {
        let resources = update.linux.as_ref().and_then(|linux| linux.resources.clone()).unwrap_or_default();
        if let Err(e) = control.update(update.container_id.clone(), resources).await {
            tracing::warn!(container = %update.container_id, error = %e, "an NRI plugin's container update failed");
            if !update.ignore_failure {
                failed.push(update);
            }
        }
    }
    for eviction in request.evict {
        tracing::info!(container = %eviction.container_id, reason = %eviction.reason, "an NRI plugin evicts a container");
        control.evict(eviction.container_id, eviction.reason);
    }
    api::UpdateContainersResponse { failed }
}

fn invalid(message: String) -> ttrpc::Status {
    ttrpc::Status { code: ttrpc::code::INVALID_ARGUMENT, message }
}

/// NRI's rules for an external plugin: a name of `[A-Za-z0-9_.+-]`, an index
/// of two digits.
fn validate_registration(request: &api::RegisterPluginRequest) -> Result<(), String> {
    let name_ok = !request.plugin_name.is_empty()
        && request.plugin_name.chars().all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c));
    if !name_ok {
        return Err(format!("plugin name {:?}: use letters, digits and _.+-", request.plugin_name));
    }
    if request.plugin_idx.len() != 2 || !request.plugin_idx.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("plugin index {:?}: two digits", request.plugin_idx));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_follow_nris_naming_rules() {
        let request = |name: &str, idx: &str| api::RegisterPluginRequest {
            plugin_name: name.into(),
            plugin_idx: idx.into(),
            ..Default::default()
        };
        assert!(validate_registration(&request("cri-test-nri.v1+x_y", "00")).is_ok());
        assert!(validate_registration(&request("", "00")).is_err());
        assert!(validate_registration(&request("a b", "00")).is_err());
        assert!(validate_registration(&request("ok", "1")).is_err());
        assert!(validate_registration(&request("ok", "1a")).is_err());
    }
}
