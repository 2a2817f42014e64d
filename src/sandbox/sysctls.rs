//! Which sysctls a pod may set: only those its own namespaces scope, as
//! kubelet and runc define them.

use std::collections::BTreeMap;

use super::error::SandboxError;

/// `net.ipv4.ip_forward` -> `net/ipv4/ip_forward`. A name that already uses
/// `/` keeps its dots (`net/ipv4/conf/eth0.100/forwarding`), as kubelet allows.
pub fn to_path(name: &str) -> String {
    if name.contains('/') { name.to_string() } else { name.replace('.', "/") }
}

fn dotted(name: &str) -> String {
    if name.contains('/') { name.replace('/', ".") } else { name.to_string() }
}

/// Refuses sysctls that are not namespaced, or whose namespace the pod shares
/// with the host.
pub fn validate(sysctls: &BTreeMap<String, String>, host_network: bool, host_ipc: bool) -> Result<(), SandboxError> {
    for (name, value) in sysctls {
        let field = format!("linux.sysctls[{name}]");
        if name.is_empty() || name.contains("..") || name.starts_with(['.', '/']) || value.contains('\n') {
            return Err(SandboxError::invalid(&field, "malformed sysctl"));
        }
        let key = dotted(name);
        let ipc = key.starts_with("kernel.shm")
            || key.starts_with("kernel.msg")
            || key == "kernel.sem"
            || key.starts_with("fs.mqueue.");
        let net = key.starts_with("net.");
        if !ipc && !net {
            return Err(SandboxError::invalid(&field, "not a namespaced sysctl: it would change the whole node"));
        }
        if net && host_network {
            return Err(SandboxError::invalid(&field, "a host-network pod cannot set net.* sysctls"));
        }
        if ipc && host_ipc {
            return Err(SandboxError::invalid(&field, "a host-IPC pod cannot set IPC sysctls"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_string(), "1".to_string())])
    }

    #[test]
    fn namespaced_sysctls_pass_and_others_do_not() {
        for ok in [
            "net.ipv4.ip_forward",
            "kernel.shmmax",
            "kernel.msgmax",
            "kernel.sem",
            "fs.mqueue.msg_max",
            "net/ipv4/conf/eth0.100/forwarding",
        ] {
            validate(&one(ok), false, false).unwrap();
        }
        for bad in ["kernel.hostname", "vm.swappiness", "fs.file-max", "kernel.domainname", "", "../../x"] {
            assert!(validate(&one(bad), false, false).is_err(), "{bad}");
        }
        assert!(validate(&one("net.ipv4.ip_forward"), true, false).is_err());
        assert!(validate(&one("kernel.shmmax"), false, true).is_err());
        assert_eq!(to_path("net.ipv4.ip_forward"), "net/ipv4/ip_forward");
        assert_eq!(to_path("net/ipv4/conf/eth0.100/forwarding"), "net/ipv4/conf/eth0.100/forwarding");
    }
}
