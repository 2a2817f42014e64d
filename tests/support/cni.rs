//! A private CNI network per test: its own bridge, subnet and IPAM state, so
//! tests run in parallel, and a Drop that deletes the bridge whatever happened.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

use tempfile::TempDir;

pub struct TestNetwork {
    pub bridge: String,
    /// `10.X.Y.0/24`
    pub subnet: String,
    /// The host's address on the bridge, `10.X.Y.1`.
    pub gateway: String,
    ipam_dir: TempDir,
}

impl TestNetwork {
    pub fn new() -> TestNetwork {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let id = berth::ids::new_id();
        // The second octet from the process, the third from a counter: unique
        // among this run's tests, and unlikely to meet another run's.
        let second = 100 + (std::process::id() % 100) as u8;
        let third = NEXT.fetch_add(1, Ordering::SeqCst);
        TestNetwork {
            bridge: format!("bt{}", &id[..8]),
            subnet: format!("10.{second}.{third}.0/24"),
            gateway: format!("10.{second}.{third}.1"),
            ipam_dir: tempfile::Builder::new().prefix("berth-test-ipam-").tempdir().expect("ipam dir"),
        }
    }

    /// bridge + host-local + portmap, as a `.conflist`.
    pub fn conflist(&self) -> String {
        self.conflist_with(&[])
    }

    /// The same with more plugins chained at the end.
    pub fn conflist_with(&self, extra_plugins: &[serde_json::Value]) -> String {
        let mut list = self.base_conflist();
        if let Some(plugins) = list["plugins"].as_array_mut() {
            plugins.extend(extra_plugins.iter().cloned());
        }
        list.to_string()
    }

    fn base_conflist(&self) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("net-{}", self.bridge),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.ipam_dir.path(),
                        "ranges": [[{"subnet": self.subnet, "gateway": self.gateway}]],
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        })
    }

    /// The host-side veth names of the pods on this network.
    pub fn veth_names(&self) -> Vec<String> {
        let output = Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]).output();
        let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|name| name.split('@').next().unwrap_or(name).to_string())
            .collect()
    }

    /// Addresses host-local still has handed out (one file per IP).
    pub fn allocated_ips(&self) -> Vec<String> {
        let dir = self.ipam_dir.path().join(format!("net-{}", self.bridge));
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect()
    }

    /// veths still attached to this network's bridge.
    pub fn veths(&self) -> usize {
        let output = Command::new("ip").args(["-o", "link", "show", "master", &self.bridge]).output();
        output.map(|o| String::from_utf8_lossy(&o.stdout).lines().count()).unwrap_or(0)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // A test that failed before its pods were stopped never ran CNI DEL:
        // portmap's rules for this network would outlive it.
        self.remove_port_mappings();
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
    }
}

impl TestNetwork {
    /// Deletes portmap's DNAT rules named after this network, and their chains.
    fn remove_port_mappings(&self) {
        let name = format!("\"net-{}\"", self.bridge);
        let iptables = |args: &[&str]| Command::new("iptables").arg("-w").args(["-t", "nat"]).args(args).output();
        let Ok(listing) = iptables(&["-L", "CNI-HOSTPORT-DNAT", "-n", "--line-numbers"]) else { return };
        let mut rules: Vec<(u32, String)> = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .filter(|line| line.contains(&name))
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                Some((fields.next()?.parse().ok()?, fields.next()?.to_string()))
            })
            .collect();
        // Highest first: deleting a rule renumbers those after it.
        rules.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
        for (number, chain) in rules {
            let _ = iptables(&["-D", "CNI-HOSTPORT-DNAT", &number.to_string()]);
            let _ = iptables(&["-F", &chain]);
            let _ = iptables(&["-X", &chain]);
        }
    }
}

/// iptables rules (nat and filter) that mention `needle`.
pub fn iptables_rules_mentioning(needle: &str) -> Vec<String> {
    let output = Command::new("iptables-save").output().expect("iptables-save");
    String::from_utf8_lossy(&output.stdout).lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// Runs `args` inside the namespaces given as (`--net`, path) pairs with nsenter.
pub fn nsenter(namespaces: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new("nsenter");
    for (kind, path) in namespaces {
        command.arg(format!("{kind}={path}"));
    }
    command.args(args).output().expect("nsenter")
}
