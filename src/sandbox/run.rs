//! The `RunPodSandbox` RPC. All or nothing: each resource made is recorded in
//! `Made`, and a failure at any step undoes exactly those, in reverse order.

use std::collections::BTreeMap;

use super::error::SandboxError;
use super::infra::InfraProcess;
use super::namespaces::{self, NamespaceRequest};
use super::record::{
    self, DnsConfig, Metadata, NamespaceMode, NamespaceModes, PodNamespaces, PortMapping, SandboxRecord, SandboxState,
};
use super::{SHM_SIZE, SandboxService, files, shared_pid, sysctls};
use crate::config::CgroupDriver;
use crate::idmap::{IdMapping, UserNamespaceMappings};
use crate::ids::new_id;
use crate::network::{Attachment, Bandwidth, Dns, PortMapping as CniPortMapping};

/// Everything kubelet asks of a pod, in berth's terms.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub metadata: Metadata,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub namespace_modes: NamespaceModes,
    pub sysctls: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub user_namespace: UserNamespaceRequest,
}

/// The user namespace kubelet asks for (`userns_options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UserNamespaceRequest {
    /// The node's: no user namespace of the pod's own.
    #[default]
    Node,
    /// One of the pod's own, with these mappings.
    Pod { uids: Vec<IdMapping>, gids: Vec<IdMapping> },
}

const USERNS_FIELD: &str = "linux.security_context.namespace_options.userns_options";

/// What a run has made so far, to undo on failure.
#[derive(Default)]
struct Made {
    name: bool,
    dirs: bool,
    namespaces: Option<PodNamespaces>,
    network: bool,
    infra: Option<InfraProcess>,
    infra_cgroups: Vec<std::path::PathBuf>,
}

const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";

impl SandboxService {
    pub async fn run(&self, spec: PodSpec) -> Result<String, SandboxError> {
        self.validate(&spec)?;
        let handler = self.handlers.get(&spec.runtime_handler)?;
        let user_namespace = self.user_namespace(&spec, handler.features().user_namespaces, &handler.name)?;
        let handler = handler.name.clone();
        let id = new_id();
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        let mut made = Made::default();
        match self.run_steps(&spec, &id, &handler, user_namespace, &mut made).await {
            Ok(()) => {
                tracing::info!(sandbox = %id, pod = %spec.metadata.key(), "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(pod = %spec.metadata.key(), error = %e, "RunPodSandbox failed; undoing");
                self.undo(&spec, &id, made).await;
                self.forget_lock(&id);
                Err(e)
            }
        }
    }

    async fn run_steps(
        &self,
        spec: &PodSpec,
        id: &str,
        handler: &str,
        user_namespace: Option<UserNamespaceMappings>,
        made: &mut Made,
    ) -> Result<(), SandboxError> {
        record::reserve_name(&self.store, &spec.metadata, id)?;
        made.name = true;

        let (state_dir, run_dir) = (self.state_dir(id), self.run_dir(id));
        made.dirs = true;
        for dir in [&state_dir, &run_dir] {
            std::fs::create_dir_all(dir).map_err(|e| SandboxError::host(dir.display().to_string(), e))?;
        }
        let host_network = spec.namespace_modes.network == NamespaceMode::Node;
        let host_ipc = spec.namespace_modes.ipc == NamespaceMode::Node;
        // A pod that names no hostname (crictl's and critest's pods) gets the
        // node's, as on containerd and cri-o.
        let hostname = if host_network || spec.hostname.is_empty() {
            nix::unistd::gethostname().map_err(|e| SandboxError::host("gethostname", e))?.to_string_lossy().into_owned()
        } else {
            spec.hostname.clone()
        };
        let resolv_conf = state_dir.join("resolv.conf");
        let hostname_file = state_dir.join("hostname");
        tracing::debug_span!(target: crate::metrics::STEP_TARGET, "pod files").in_scope(|| {
            files::write_atomic(&resolv_conf, &files::resolv_conf(spec.dns.as_ref())?)?;
            files::write_atomic(&hostname_file, &format!("{hostname}\n"))
        })?;

        let ns_dir = run_dir.join("ns");
        let request_hostname = hostname.clone();
        let step = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "namespaces pin");
        let pins = tokio::task::spawn_blocking(move || {
            let _step = step.entered();
            namespaces::create(&NamespaceRequest {
                dir: &ns_dir,
                network: !host_network,
                ipc: !host_ipc,
                uts: !host_network,
                hostname: &request_hostname,
                shm_size: (!host_ipc).then_some(SHM_SIZE),
                user: user_namespace.as_ref(),
            })
        })
        .await
        .map_err(|e| SandboxError::host("namespace task", e))??;
        made.namespaces = Some(pins.clone());

        let mut ips = Vec::new();
        if let Some(netns) = pins.net.clone() {
            let attachment = self.attachment(spec, id, netns)?;
            let network = self.network.attach(&attachment).await?;
            made.network = true;
            ips = network.ips.iter().map(ToString::to_string).collect();
        }
        let (apply_pins, apply_sysctls) = (pins.clone(), spec.sysctls.clone());
        tokio::task::spawn_blocking(move || namespaces::apply_sysctls(&apply_pins, &apply_sysctls))
            .await
            .map_err(|e| SandboxError::host("sysctl task", e))??;

        if spec.namespace_modes.pid == NamespaceMode::Pod {
            let (process, cgroup_dirs) = self.start_infra(&pins, id, &spec.cgroup_parent).await?;
            made.infra = Some(process);
            made.infra_cgroups = cgroup_dirs;
        }

        let sandbox = SandboxRecord {
            id: id.to_string(),
            metadata: spec.metadata.clone(),
            state: SandboxState::Ready,
            created_at: crate::time::now_nanos(),
            hostname,
            log_directory: spec.log_directory.clone(),
            runtime_handler: handler.to_string(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            namespace_modes: spec.namespace_modes.clone(),
            cgroup_parent: spec.cgroup_parent.clone(),
            sysctls: spec.sysctls.clone(),
            dns: spec.dns.clone(),
            port_mappings: spec.port_mappings.clone(),
            namespaces: pins,
            user_namespace,
            ips,
            resolv_conf,
            hostname_file,
            infra: made.infra,
            infra_cgroups: made.infra_cgroups.clone(),
        };
        // Plugins see the pod before anyone else: it is saved, and so listed,
        // only once they agreed; a plugin synchronising now waits for the save.
        let _sync = self.nri.block_sync().await;
        self.nri.run_pod_sandbox(&sandbox).await?;
        record::save(&self.store, &sandbox)
    }

    async fn undo(&self, spec: &PodSpec, id: &str, made: Made) {
        if let Some(process) = made.infra {
            shared_pid::stop_infra(process, made.infra_cgroups.clone()).await;
        }
        if made.network
            && let Err(e) = self.network.detach(id, made.namespaces.as_ref().and_then(|n| n.net.as_deref())).await
        {
            tracing::warn!(sandbox = %id, error = %e, "undo: network teardown failed");
        }
        if let Some(pins) = &made.namespaces {
            namespaces::release(pins);
        }
        if made.dirs {
            for dir in [self.run_dir(id), self.state_dir(id)] {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if made.name
            && let Err(e) = record::release_name(&self.store, &spec.metadata.key(), id)
        {
            tracing::warn!(sandbox = %id, error = %e, "undo: cannot release the pod's name");
        }
    }

    fn validate(&self, spec: &PodSpec) -> Result<(), SandboxError> {
        let m = &spec.metadata;
        for (field, value) in
            [("metadata.name", &m.name), ("metadata.namespace", &m.namespace), ("metadata.uid", &m.uid)]
        {
            if value.is_empty() {
                return Err(SandboxError::invalid(field, "must not be empty"));
            }
            if value.contains(['/', '\0']) || value.len() > 253 {
                return Err(SandboxError::invalid(field, format!("{value:?} is not a valid name")));
            }
        }
        let modes = &spec.namespace_modes;
        if modes.network != NamespaceMode::Node && !spec.hostname.is_empty() {
            files::validate_hostname(&spec.hostname)?;
        }
        sysctls::validate(&spec.sysctls, modes.network == NamespaceMode::Node, modes.ipc == NamespaceMode::Node)?;
        if !spec.cgroup_parent.is_empty() {
            let systemd = self.config.cgroup_driver == CgroupDriver::Systemd;
            let slice = spec.cgroup_parent.ends_with(".slice") && !spec.cgroup_parent.contains('/');
            if systemd && !slice {
                return Err(SandboxError::invalid(
                    "linux.cgroup_parent",
                    format!(
                        "{:?}: the systemd cgroup driver wants a slice name like kubepods-pod1.slice",
                        spec.cgroup_parent
                    ),
                ));
            }
            if !systemd && (!spec.cgroup_parent.starts_with('/') || spec.cgroup_parent.contains("..")) {
                return Err(SandboxError::invalid(
                    "linux.cgroup_parent",
                    format!("{:?}: the cgroupfs driver wants an absolute cgroup path", spec.cgroup_parent),
                ));
            }
        }
        for (i, port) in spec.port_mappings.iter().enumerate() {
            if port.container_port == 0 {
                return Err(SandboxError::invalid(&format!("port_mappings[{i}].container_port"), "must be 1-65535"));
            }
        }
        Ok(())
    }

    /// The pod's own user namespace, if it asks for one that berth can make:
    /// one range of each kind mapping the pod's root to an unprivileged host
    /// ID, with the pod's own network, IPC and PID namespaces (a pod's root
    /// may touch only what its user namespace owns), on a handler that can.
    fn user_namespace(
        &self,
        spec: &PodSpec,
        handler_supports: bool,
        handler: &str,
    ) -> Result<Option<UserNamespaceMappings>, SandboxError> {
        let UserNamespaceRequest::Pod { uids, gids } = &spec.user_namespace else { return Ok(None) };
        let one = |kind: &str, mappings: &[IdMapping]| -> Result<IdMapping, SandboxError> {
            let field = format!("{USERNS_FIELD}.{kind}");
            let [mapping] = mappings else {
                return Err(SandboxError::invalid(
                    &field,
                    format!("{} mappings given; berth takes exactly one, as kubelet sends", mappings.len()),
                ));
            };
            if mapping.container_id != 0 || mapping.length == 0 {
                return Err(SandboxError::invalid(&field, "the mapping must start at the pod's root, container ID 0"));
            }
            if mapping.host_id == 0 {
                return Err(SandboxError::invalid(&field, "the mapping must not give the pod the host's root"));
            }
            if mapping.host_id.checked_add(mapping.length - 1).is_none() {
                return Err(SandboxError::invalid(&field, "the mapping runs past the largest ID"));
            }
            Ok(*mapping)
        };
        let mappings = UserNamespaceMappings { uids: one("uids", uids)?, gids: one("gids", gids)? };
        let modes = &spec.namespace_modes;
        for (kind, mode) in [("network", modes.network), ("ipc", modes.ipc), ("pid", modes.pid)] {
            if mode == NamespaceMode::Node {
                return Err(SandboxError::invalid(
                    &format!("linux.security_context.namespace_options.{kind}"),
                    "a pod in its own user namespace cannot use the node's namespace",
                ));
            }
        }
        if !handler_supports {
            return Err(SandboxError::invalid(
                USERNS_FIELD,
                format!("runtime handler {handler:?} cannot run pods in a user namespace (see its features in Status)"),
            ));
        }
        searchable_by_the_pod(&self.config.run_root)?;
        Ok(Some(mappings))
    }

    fn attachment(&self, spec: &PodSpec, id: &str, netns: std::path::PathBuf) -> Result<Attachment, SandboxError> {
        let port_mappings = spec
            .port_mappings
            .iter()
            .filter(|p| p.host_port != 0)
            .map(|p| CniPortMapping {
                host_port: p.host_port,
                container_port: p.container_port,
                protocol: p.protocol.clone(),
                host_ip: p.host_ip.clone(),
            })
            .collect();
        let rate = |key: &str| -> Result<Option<u64>, SandboxError> {
            spec.annotations
                .get(key)
                .map(|q| {
                    parse_quantity(q).ok_or_else(|| {
                        SandboxError::invalid(
                            &format!("annotations[{key}]"),
                            format!("{q:?} is not a bandwidth quantity"),
                        )
                    })
                })
                .transpose()
        };
        let (ingress, egress) = (rate(INGRESS_BANDWIDTH)?, rate(EGRESS_BANDWIDTH)?);
        let bandwidth = (ingress.is_some() || egress.is_some()).then(|| Bandwidth {
            // The bandwidth plugin wants bits per second and a burst; kubelet
            // and containerd use a burst as large as the rate can be.
            ingress_rate: ingress.unwrap_or(0),
            ingress_burst: ingress.map(|_| u64::from(u32::MAX)).unwrap_or(0),
            egress_rate: egress.unwrap_or(0),
            egress_burst: egress.map(|_| u64::from(u32::MAX)).unwrap_or(0),
        });
        let dns = spec.dns.as_ref().map(|d| Dns {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        });
        Ok(Attachment {
            container_id: id.to_string(),
            netns,
            ifname: "eth0".into(),
            pod_namespace: spec.metadata.namespace.clone(),
            pod_name: spec.metadata.name.clone(),
            pod_uid: spec.metadata.uid.clone(),
            port_mappings,
            bandwidth,
            dns,
        })
    }
}

/// The pod's root (an unprivileged host user) walks down to its rootfs under
/// the run root: every directory on the way must be searchable by others.
fn searchable_by_the_pod(run_root: &std::path::Path) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in run_root.ancestors() {
        let mode =
            std::fs::metadata(dir).map_err(|e| SandboxError::host(dir.display().to_string(), e))?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(SandboxError::invalid(
                USERNS_FIELD,
                format!(
                    "{} (mode {:o}) is not searchable by others, so a pod's root cannot reach its files under the run root {}; \
                     make it o+x (berth makes its own directories 0711)",
                    dir.display(),
                    mode & 0o7777,
                    run_root.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A Kubernetes quantity as bits per second: `10M` = 10,000,000; `1Gi` = 2^30.
fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    let value = number * factor;
    (value.is_finite() && value >= 1.0).then_some(value as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn bandwidth_quantities() {
        assert_eq!(parse_quantity("10M"), Some(10_000_000));
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("1.5k"), Some(1500));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("0"), None);
    }
}
