//! Attach and detach through Debian's real plugins (`/usr/lib/cni`): a throwaway netns, a
//! bridge with host-local IPAM and IP masquerading, then portmap. Needs root; skipped otherwise.
//! Nothing routes off the machine: the bridge gets no address (no `isGateway`, so forwarding is
//! not switched on either) and no traffic is sent. Everything is removed by [`Host`]'s `Drop`,
//! even when an assertion fails.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::{Value, json};

use super::*;

const DEBIAN_CNI_BIN: &str = "/usr/lib/cni";
/// The chains portmap shares between all pods and never deletes.
const PORTMAP_SHARED_CHAIN_PREFIX: &str = "CNI-HOSTPORT-";

/// The tests share the portmap chains: one at a time, so one's cleanup cannot pull them from
/// under another.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The host-side resources of one test, all with unique names.
struct Host {
    dir: tempfile::TempDir,
    netns_name: String,
    bridge: String,
    container_id: String,
    subnet_prefix: String,
    host_port: u16,
    portmap_chains_existed: bool,
}

impl Host {
    /// A missing prerequisite fails the test: a skipped test must not pass.
    fn set_up() -> Host {
        assert!(nix::unistd::geteuid().is_root(), "needs root: run the suite as root (hack/test.sh)");
        assert!(
            Path::new(DEBIAN_CNI_BIN).join("bridge").exists(),
            "needs Debian's CNI plugins in {DEBIAN_CNI_BIN}: hack/setup.sh installs them"
        );
        let random = random_bytes(40);
        let suffix = hex::encode(&random[..3]);
        let host = Host {
            dir: tempfile::tempdir().expect("a temp dir"),
            netns_name: format!("berth-test-{suffix}"),
            bridge: format!("bt{suffix}"),
            container_id: hex::encode(&random[8..40]),
            subnet_prefix: format!("10.{}.{}", 200 + random[3] % 50, random[4]),
            host_port: 30000 + u16::from_be_bytes([random[5], random[6]]) % 10000,
            portmap_chains_existed: iptables_save().contains(&format!(":{PORTMAP_SHARED_CHAIN_PREFIX}DNAT")),
        };
        let created = run("ip", &["netns", "add", &host.netns_name]).is_some();
        assert!(created, "ip netns add {}", host.netns_name);
        host
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.netns_name)
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn network(&self, ip_masq: bool) -> Network {
        let conf_dir = self.dir.path().join("conf");
        std::fs::create_dir_all(&conf_dir).unwrap();
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": "berth-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "ipMasq": ip_masq,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{}.0/24", self.subnet_prefix)}]],
                        "dataDir": self.ipam_dir(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(conf_dir.join("10-test.conflist"), conflist.to_string()).unwrap();
        let config = CniConfig { conf_dir, bin_dirs: vec![PathBuf::from(DEBIAN_CNI_BIN)], ..CniConfig::default() };
        Network::new(&config, self.dir.path().join("cache"))
    }

    fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            netns: self.netns_path(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "real-plugins".into(),
            pod_uid: "uid-real".into(),
            port_mappings: vec![PortMapping {
                host_port: self.host_port,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            bandwidth: None,
            dns: None,
        }
    }

    /// What iptables holds about this pod (the plugins' rule comments carry the container ID).
    fn iptables_lines(&self) -> Vec<String> {
        iptables_save().lines().filter(|line| line.contains(&self.container_id[..16])).map(str::to_string).collect()
    }

    /// Host-local's record of the allocation.
    fn allocation_file(&self, ip: &IpAddr) -> PathBuf {
        self.ipam_dir().join("berth-test").join(ip.to_string())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // The pod's veth dies with its netns (which a test may have deleted already).
        if self.netns_path().exists() {
            let _ = run("ip", &["netns", "del", &self.netns_name]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
        remove_rules_mentioning(&self.container_id);
        if !self.portmap_chains_existed {
            remove_unused_portmap_chains();
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    assert!(read.is_ok(), "reading /dev/urandom");
    bytes
}

/// Stdout of a successful run, `None` otherwise.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Process::new(program).args(args).stdin(Stdio::null()).output().ok()?;
    if !output.status.success() {
        eprintln!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr).trim());
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn iptables_save() -> String {
    run("iptables-save", &[]).unwrap_or_default()
}

/// Applies `-D` / `-F` / `-X` commands in one transaction, leaving everything else alone.
fn iptables_restore(script: &str) {
    use std::io::Write;
    let child = Process::new("iptables-restore").arg("--noflush").stdin(Stdio::piped()).spawn();
    let Ok(mut child) = child else { return };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(script.as_bytes());
    }
    if !child.wait().is_ok_and(|status| status.success()) {
        eprintln!("iptables cleanup failed; left over:\n{script}");
    }
}

/// Rules whose text mentions `needle` (rule comments name the container), and the chains
/// they jump to (the per-pod CNI-* chains), table by table.
fn remove_rules_mentioning(needle: &str) {
    let dump = iptables_save();
    let mut script = String::new();
    for (table, lines) in tables(&dump) {
        let rules: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("-A ") && l.contains(needle)).collect();
        if rules.is_empty() {
            continue;
        }
        let chains: Vec<&str> = rules
            .iter()
            .filter_map(|rule| rule.split(" -j ").nth(1)?.split_whitespace().next())
            .filter(|target| target.starts_with("CNI-") && !target.starts_with(PORTMAP_SHARED_CHAIN_PREFIX))
            .collect();
        script.push_str(&format!("*{table}\n"));
        rules.iter().for_each(|rule| script.push_str(&format!("-D {}\n", &rule[3..])));
        chains.iter().for_each(|chain| script.push_str(&format!("-F {chain}\n-X {chain}\n")));
        script.push_str("COMMIT\n");
    }
    if !script.is_empty() {
        iptables_restore(&script);
    }
}

/// portmap's shared chains and the jumps to them, if no pod's rule is left in them.
fn remove_unused_portmap_chains() {
    let dump = iptables_save();
    let Some((_, nat)) = tables(&dump).into_iter().find(|(table, _)| *table == "nat") else { return };
    let dnat = format!("-A {PORTMAP_SHARED_CHAIN_PREFIX}DNAT ");
    if nat.iter().any(|line| line.starts_with(&dnat)) {
        return;
    }
    let mut script = String::from("*nat\n");
    let jumps = nat.iter().filter(|l| l.starts_with("-A ") && l.contains(&format!("-j {PORTMAP_SHARED_CHAIN_PREFIX}")));
    jumps.for_each(|rule| script.push_str(&format!("-D {}\n", &rule[3..])));
    let chains = nat.iter().filter_map(|line| line.strip_prefix(':')?.split_whitespace().next());
    let shared: Vec<&str> = chains.filter(|chain| chain.starts_with(PORTMAP_SHARED_CHAIN_PREFIX)).collect();
    shared.iter().for_each(|chain| script.push_str(&format!("-F {chain}\n")));
    shared.iter().for_each(|chain| script.push_str(&format!("-X {chain}\n")));
    script.push_str("COMMIT\n");
    if !shared.is_empty() {
        iptables_restore(&script);
    }
}

/// `iptables-save` output split into (table, lines).
fn tables(dump: &str) -> Vec<(&str, Vec<&str>)> {
    let mut tables: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in dump.lines() {
        if let Some(name) = line.strip_prefix('*') {
            tables.push((name, Vec::new()));
        } else if let Some((_, lines)) = tables.last_mut() {
            lines.push(line);
        }
    }
    tables
}

/// The host end of the pod's veth: the result's interface that is neither in the sandbox
/// nor the bridge.
fn host_veth(result: &Value, bridge: &str) -> Option<String> {
    let interfaces = result.get("interfaces")?.as_array()?;
    interfaces
        .iter()
        .filter(|iface| iface.get("sandbox").is_none())
        .filter_map(|iface| iface.get("name")?.as_str())
        .find(|name| *name != bridge)
        .map(str::to_string)
}

fn link_exists(name: &str) -> bool {
    Process::new("ip").args(["link", "show", name]).stderr(Stdio::null()).output().is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn bridge_and_portmap_attach_then_detach_leave_nothing() {
    let _serial = SERIAL.lock().await;
    let host = Host::set_up();
    let network = host.network(true);

    let pod = network.attach(&host.attachment()).await.unwrap();
    let ip = pod.ips[0];
    assert!(ip.to_string().starts_with(&format!("{}.", host.subnet_prefix)), "{ip} outside the subnet");
    assert_eq!(pod.interface.as_deref(), Some("eth0"));
    let addresses = run("ip", &["-n", &host.netns_name, "-o", "addr"]).unwrap_or_default();
    assert!(addresses.contains(" eth0 ") && addresses.contains(&format!("inet {ip}/24")), "{addresses}");
    let veth = host_veth(&pod.raw_result, &host.bridge).unwrap();
    assert!(link_exists(&veth), "{veth}");
    assert!(host.allocation_file(&ip).exists());
    let rules = host.iptables_lines();
    assert!(rules.iter().any(|r| r.contains("dnat")), "portmap set up no DNAT: {rules:?}");
    assert!(rules.iter().any(|r| r.contains("-s ") && r.contains(&ip.to_string())), "no masquerade: {rules:?}");
    assert_eq!(network.cached(&host.container_id), Some(pod));

    network.detach(&host.container_id, None).await.unwrap();
    assert!(!link_exists(&veth), "{veth} is still there");
    assert!(!host.allocation_file(&ip).exists(), "host-local kept {ip}");
    assert_eq!(host.iptables_lines(), Vec::<String>::new());
    assert_eq!(network.cached(&host.container_id), None);
    network.detach(&host.container_id, None).await.unwrap();
}

/// The spec lets DEL run without a netns; Debian's bridge then only releases the address
/// (it skips masquerade teardown, so masquerading is off here) and portmap needs no netns.
#[tokio::test]
async fn detach_after_the_netns_is_gone_still_releases_address_and_ports() {
    let _serial = SERIAL.lock().await;
    let host = Host::set_up();
    let network = host.network(false);
    let pod = network.attach(&host.attachment()).await.unwrap();
    let ip = pod.ips[0];
    assert!(!host.iptables_lines().is_empty());

    assert!(run("ip", &["netns", "del", &host.netns_name]).is_some());
    network.detach(&host.container_id, Some(&host.netns_path())).await.unwrap();
    assert!(!host.allocation_file(&ip).exists(), "host-local kept {ip}");
    assert_eq!(host.iptables_lines(), Vec::<String>::new());
}
