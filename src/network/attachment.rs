//! What the sandbox layer asks for, checked, and turned into what plugins receive: `CNI_ARGS`
//! and the runtime config of the well-known capabilities (CNI conventions, "Dynamic plugin
//! specific fields").

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::NetworkError;

/// One pod's attachment to the network in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The sandbox ID; CNI's `CNI_CONTAINERID` and the key of the result cache.
    pub container_id: String,
    /// The pinned netns: a bind mount of an nsfs file.
    pub netns: PathBuf,
    /// The interface to create in the netns (`eth0`).
    pub ifname: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
    pub bandwidth: Option<Bandwidth>,
    pub dns: Option<Dns>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// 0 means the port is not published on the host; such a mapping is not passed on.
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (any case).
    pub protocol: String,
    /// Empty: every host address.
    pub host_ip: String,
}

/// Traffic shaping, in bits per second (rates) and bits (bursts), as the bandwidth plugin expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What attaching gave the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetwork {
    /// The pod's addresses in the order the result lists them, so the primary comes first;
    /// both families are kept for dual stack.
    pub ips: Vec<IpAddr>,
    /// The interface in the netns that carries the primary address, when the result says.
    pub interface: Option<String>,
    /// The last plugin's result, as it printed it.
    pub raw_result: Value,
}

impl Attachment {
    /// Refuses what would break the CNI protocol or the cache layout, before any plugin runs.
    pub(super) fn validate(&self) -> Result<(), NetworkError> {
        validate_container_id(&self.container_id)?;
        validate_ifname(&self.ifname)?;
        for (what, value) in
            [("pod namespace", &self.pod_namespace), ("pod name", &self.pod_name), ("pod UID", &self.pod_uid)]
        {
            // `;` and `=` are CNI_ARGS's separators: a value holding one would forge a key.
            if value.contains([';', '=']) {
                return Err(invalid(what, format!("{value:?} contains ';' or '='")));
            }
        }
        for mapping in &self.port_mappings {
            protocol(&mapping.protocol)?;
            if mapping.container_port == 0 {
                return Err(invalid("port mapping", "container port 0".into()));
            }
            if !mapping.host_ip.is_empty() && mapping.host_ip.parse::<IpAddr>().is_err() {
                return Err(invalid("port mapping", format!("host IP {:?} is not an address", mapping.host_ip)));
            }
        }
        if !is_netns(&self.netns) {
            return Err(invalid("netns", format!("{} is not a network namespace", self.netns.display())));
        }
        Ok(())
    }

    /// `CNI_ARGS`, with the keys kubelet's dockershim set and every plugin in the wild expects.
    pub(super) fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod_namespace, self.pod_name, self.container_id, self.pod_uid
        )
    }

    /// Every capability this pod has a value for; each plugin is later given only those it
    /// declares.
    pub(super) fn runtime_config(&self, pod_cidr: Option<&str>) -> Map<String, Value> {
        let mut config = Map::new();
        let mappings: Vec<Value> = self
            .port_mappings
            .iter()
            .filter(|m| m.host_port != 0)
            .map(|m| {
                json!({
                    "hostPort": m.host_port,
                    "containerPort": m.container_port,
                    "protocol": m.protocol.to_lowercase(),
                    "hostIP": m.host_ip,
                })
            })
            .collect();
        if !mappings.is_empty() {
            config.insert("portMappings".into(), Value::Array(mappings));
        }
        if let Some(b) = &self.bandwidth {
            let bandwidth = json!({
                "ingressRate": b.ingress_rate,
                "ingressBurst": b.ingress_burst,
                "egressRate": b.egress_rate,
                "egressBurst": b.egress_burst,
            });
            config.insert("bandwidth".into(), bandwidth);
        }
        if let Some(dns) = &self.dns {
            let dns = json!({"servers": dns.servers, "searches": dns.searches, "options": dns.options});
            config.insert("dns".into(), dns);
        }
        if let Some(cidr) = pod_cidr.filter(|cidr| !cidr.is_empty()) {
            config.insert("ipRanges".into(), json!([[{ "subnet": cidr }]]));
        }
        config
    }
}

/// The CNI spec's rule for container IDs; it also keeps the ID safe as a cache file name.
pub(super) fn validate_container_id(id: &str) -> Result<(), NetworkError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if id.is_empty() || !id.chars().all(allowed) || id.starts_with('.') {
        return Err(invalid("container ID", format!("{id:?} is not [A-Za-z0-9_.-]+")));
    }
    Ok(())
}

/// The CNI spec's rule for interface names (those of Linux).
fn validate_ifname(name: &str) -> Result<(), NetworkError> {
    let bad_char = |c: char| c == '/' || c == ':' || c.is_whitespace();
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || name.contains(bad_char) {
        return Err(invalid("interface name", format!("{name:?} is not a valid Linux interface name")));
    }
    Ok(())
}

fn protocol(name: &str) -> Result<(), NetworkError> {
    match name.to_lowercase().as_str() {
        "tcp" | "udp" | "sctp" => Ok(()),
        _ => Err(invalid("port mapping", format!("protocol {name:?} is not tcp, udp or sctp"))),
    }
}

/// Whether `path` is a live network namespace: a pinned netns whose bind mount is gone is a
/// plain empty file, which plugins must not be handed.
pub(super) fn is_netns(path: &Path) -> bool {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    statfs(path).is_ok_and(|fs| fs.filesystem_type() == NSFS_MAGIC)
}

fn invalid(what: &'static str, reason: String) -> NetworkError {
    NetworkError::InvalidArgument { what, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            container_id: "abc123".into(),
            netns: "/proc/self/ns/net".into(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "uid-1".into(),
            ..Attachment::default()
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity() {
        assert_eq!(
            attachment().cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=uid-1"
        );
    }

    #[test]
    fn runtime_config_skips_unpublished_ports_and_absent_values() {
        let mut a = attachment();
        a.port_mappings = vec![
            PortMapping { host_port: 0, container_port: 53, protocol: "udp".into(), host_ip: String::new() },
            PortMapping { host_port: 8080, container_port: 80, protocol: "TCP".into(), host_ip: "127.0.0.1".into() },
        ];
        let config = a.runtime_config(None);
        assert_eq!(
            Value::Object(config),
            json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]})
        );
        assert!(attachment().runtime_config(Some("")).is_empty());
    }

    #[test]
    fn bad_input_is_refused() {
        let cases: [fn(&mut Attachment); 7] = [
            |a| a.container_id = "../x".into(),
            |a| a.container_id = String::new(),
            |a| a.ifname = "a-very-long-ifname0".into(),
            |a| a.ifname = "eth 0".into(),
            |a| a.pod_name = "web;K8S_POD_UID=x".into(),
            |a| a.netns = "/etc/hostname".into(),
            |a| {
                a.port_mappings =
                    vec![PortMapping { host_port: 1, container_port: 1, protocol: "icmp".into(), host_ip: "".into() }]
            },
        ];
        for change in cases {
            let mut a = attachment();
            change(&mut a);
            assert!(matches!(a.validate(), Err(NetworkError::InvalidArgument { .. })), "{a:?} was accepted");
        }
        attachment().validate().unwrap();
    }
}
