//! The files a pod's containers mount: `resolv.conf` and `hostname`.

use std::path::Path;

use super::error::SandboxError;
use super::record::DnsConfig;

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// `resolv.conf` from the pod's DNS config, or the host's when it has none.
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Result<String, SandboxError> {
    let Some(dns) = dns.filter(|d| !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty()) else {
        return std::fs::read_to_string(HOST_RESOLV_CONF).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(String::new()),
            _ => Err(SandboxError::host(HOST_RESOLV_CONF, e)),
        });
    };
    for value in dns.servers.iter().chain(&dns.searches).chain(&dns.options) {
        if value.contains(['\n', '\r']) || value.trim().is_empty() {
            return Err(SandboxError::invalid("dns_config", format!("malformed entry {value:?}")));
        }
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(text)
}

/// Writes `content` to `path` through a temp file and a rename.
pub fn write_atomic(path: &Path, content: &str) -> Result<(), SandboxError> {
    crate::files::write_atomic(path, content.as_bytes(), 0o644)
        .map_err(|e| SandboxError::host(path.display().to_string(), e))
}

/// A hostname the kernel and DNS accept: RFC 1123 labels, at most 64 bytes (UTS limit).
pub fn validate_hostname(hostname: &str) -> Result<(), SandboxError> {
    let valid = !hostname.is_empty()
        && hostname.len() <= 64
        && hostname.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid { Ok(()) } else { Err(SandboxError::invalid("hostname", format!("{hostname:?} is not a valid hostname"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n"
        );
        let bad = DnsConfig { servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()], ..Default::default() };
        assert!(resolv_conf(Some(&bad)).is_err());
    }

    #[test]
    fn hostnames() {
        validate_hostname("web-0").unwrap();
        validate_hostname("a.b-c.d").unwrap();
        for bad in ["", "-a", "a_b", "a..b", &"x".repeat(65)] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
    }
}
