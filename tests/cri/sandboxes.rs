//! Pod sandboxes with real namespaces and Debian's CNI plugins: IPs, pod to pod
//! traffic, hostPort, DNS, hostname, sysctls, host network, and clean teardown.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use berth::cri::v1::{
    DnsConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PortMapping, Protocol, RemovePodSandboxRequest, RunPodSandboxRequest,
    StopPodSandboxRequest,
};
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::cni::{TestNetwork, iptables_rules_mentioning, nsenter};

pub use crate::support::pods::{container_pid, pod_config};

pub async fn berth_with(network: &TestNetwork) -> Berth {
    Berth::builder().cni_conflist(&network.conflist()).start().await
}

pub async fn run(berth: &Berth, config: PodSandboxConfig) -> Result<String, tonic::Status> {
    let request = RunPodSandboxRequest { config: Some(config), runtime_handler: String::new() };
    berth.runtime().await.run_pod_sandbox(request).await.map(|r| r.into_inner().pod_sandbox_id)
}

pub async fn stop(berth: &Berth, id: &str) {
    berth.runtime().await.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

pub async fn remove(berth: &Berth, id: &str) {
    berth.runtime().await.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id.into() }).await.unwrap();
}

pub async fn status(berth: &Berth, id: &str) -> berth::cri::v1::PodSandboxStatusResponse {
    let request = PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: true };
    berth.runtime().await.pod_sandbox_status(request).await.unwrap().into_inner()
}

/// The verbose details berth gives for a sandbox.
pub async fn details(berth: &Berth, id: &str) -> serde_json::Value {
    serde_json::from_str(&status(berth, id).await.info["info"]).unwrap()
}

/// The pinned namespace file of `kind` (`net`, `ipc`, `uts`).
pub async fn pin(berth: &Berth, id: &str, kind: &str) -> String {
    details(berth, id).await["namespaces"][kind].as_str().unwrap_or_else(|| panic!("no {kind} pin")).to_string()
}

fn pod_mounts(id: &str) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(id)).count()
}

#[tokio::test]
async fn a_pod_gets_an_ip_and_teardown_leaves_nothing() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let id = run(&berth, pod_config("web")).await.unwrap();
    assert_eq!(id.len(), 64);

    let reply = status(&berth, &id).await;
    let pod = reply.status.unwrap();
    assert_eq!(pod.state(), PodSandboxState::SandboxReady);
    let ip = pod.network.expect("network status").ip;
    assert!(ip.starts_with(network.gateway.trim_end_matches(".1")), "{ip} in {}", network.subnet);
    assert!(pod.created_at > 1_600_000_000_000_000_000);
    let netns = pin(&berth, &id, "net").await;
    let addrs = nsenter(&[("--net", &netns)], &["ip", "-o", "addr"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(addrs.contains(&format!("{ip}/24")) && addrs.contains("eth0"), "{addrs}");
    assert!(addrs.contains("127.0.0.1/8"), "loopback is up: {addrs}");
    assert_eq!(network.veths(), 1);
    assert_eq!(network.allocated_ips(), vec![ip.clone()]);
    assert!(pod_mounts(&id) >= 4, "net, ipc, uts pins and shm");
    let shm = details(&berth, &id).await["namespaces"]["shm"].as_str().unwrap().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let shm_mount =
        mounts.lines().find(|l| l.split_whitespace().nth(4) == Some(shm.as_str())).expect("pod shm mounted");
    assert!(shm_mount.contains(" - tmpfs ") && shm_mount.contains("size=65536k"), "{shm_mount}");

    stop(&berth, &id).await;
    let pod = status(&berth, &id).await.status.unwrap();
    assert_eq!(pod.state(), PodSandboxState::SandboxNotready, "stopped sandboxes stay listed, not ready");
    assert_eq!(network.veths(), 0);
    assert!(network.allocated_ips().is_empty());
    assert_eq!(pod_mounts(&id), 0, "namespaces released at stop");
    stop(&berth, &id).await;

    remove(&berth, &id).await;
    remove(&berth, &id).await;
    let err = berth
        .runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(iptables_rules_mentioning(&id[..12]).is_empty());
    assert!(iptables_rules_mentioning(&ip).is_empty());
    assert!(!berth.paths.run_root.join("pods").join(&id).exists());
    assert!(!berth.paths.state_root.join("pods").join(&id).exists());
}

#[tokio::test]
async fn two_pods_reach_each_other() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let a = run(&berth, pod_config("a")).await.unwrap();
    let b = run(&berth, pod_config("b")).await.unwrap();
    let ip_b = status(&berth, &b).await.status.unwrap().network.unwrap().ip;
    let netns_a = pin(&berth, &a, "net").await;
    let ping = nsenter(&[("--net", &netns_a)], &["busybox", "ping", "-c", "1", "-W", "5", &ip_b]);
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    for id in [a, b] {
        remove(&berth, &id).await;
    }
    assert_eq!(network.veths(), 0);
}

/// Accepts one connection inside `netns` on `port` and answers `reply`.
fn serve_once_in(netns: &str, port: u16, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
    let netns = std::fs::File::open(netns).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
        ready_tx.send(()).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        stream.write_all(reply).unwrap();
    });
    ready_rx.recv().unwrap();
    server
}

/// A pod whose TCP port 8080 is published on a free host port.
fn ported_pod_config(name: &str) -> (PodSandboxConfig, u16) {
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let mut config = pod_config(name);
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp as i32,
        container_port: 8080,
        host_port: host_port as i32,
        host_ip: String::new(),
    }];
    (config, host_port)
}

#[tokio::test]
async fn a_host_port_forwards_to_the_pod() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let (config, host_port) = ported_pod_config("ported");
    let id = run(&berth, config).await.unwrap();
    let server = serve_once_in(&pin(&berth, &id, "net").await, 8080, b"hello from the pod");
    let mut stream = std::net::TcpStream::connect((network.gateway.as_str(), host_port)).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    server.join().unwrap();
    assert_eq!(answer, "hello from the pod");
    remove(&berth, &id).await;
    assert!(iptables_rules_mentioning(&format!("--dport {host_port}")).is_empty(), "hostPort rules removed");
}

/// The test bed's own cleanup: a test that fails with its pod still up (no
/// CNI DEL ever runs) must not leave portmap's rules behind its network.
#[tokio::test]
async fn a_dropped_network_takes_its_host_port_rules() {
    let network = TestNetwork::new();
    let mut berth = berth_with(&network).await;
    let (config, host_port) = ported_pod_config("left-up");
    run(&berth, config).await.unwrap();
    let rules = format!("--dport {host_port}");
    assert!(!iptables_rules_mentioning(&rules).is_empty(), "portmap's rules are in place");
    berth.kill();
    drop(berth);
    drop(network);
    assert!(iptables_rules_mentioning(&rules).is_empty(), "{:?}", iptables_rules_mentioning(&rules));
}

/// The test bed's own cleanup: a test that ends with its pods up (it failed,
/// say) has berth remove them as its guard goes, CNI DEL included, so nothing
/// is left even for its network's cleanup to find.
#[tokio::test]
async fn a_dropped_berth_takes_its_pods_networking_with_it() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let (config, host_port) = ported_pod_config("left-running");
    run(&berth, config).await.unwrap();
    let rules = format!("--dport {host_port}");
    assert!(!iptables_rules_mentioning(&rules).is_empty(), "portmap's rules are in place");
    assert_eq!((network.veths(), network.allocated_ips().len()), (1, 1));
    drop(berth);
    assert!(iptables_rules_mentioning(&rules).is_empty(), "{:?}", iptables_rules_mentioning(&rules));
    assert_eq!(network.veths(), 0, "the pod's veth is gone");
    assert_eq!(network.allocated_ips(), Vec::<String>::new(), "its address went back to IPAM");
}

#[tokio::test]
async fn dns_hostname_and_sysctls_are_the_pods() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let mut config = pod_config("named");
    config.hostname = "my-pod-0".into();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    config.linux.as_mut().unwrap().sysctls = HashMap::from([
        ("net.ipv4.ip_unprivileged_port_start".to_string(), "80".to_string()),
        ("kernel.shmmni".to_string(), "1234".to_string()),
    ]);
    let id = run(&berth, config).await.unwrap();
    let info = details(&berth, &id).await;
    let resolv = std::fs::read_to_string(info["resolvConf"].as_str().unwrap()).unwrap();
    assert_eq!(resolv, "search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
    let hostname = std::fs::read_to_string(info["hostnameFile"].as_str().unwrap()).unwrap();
    assert_eq!(hostname, "my-pod-0\n");
    let uts = nsenter(&[("--uts", info["namespaces"]["uts"].as_str().unwrap())], &["hostname"]);
    assert_eq!(String::from_utf8_lossy(&uts.stdout).trim(), "my-pod-0");
    let net = nsenter(
        &[("--net", info["namespaces"]["net"].as_str().unwrap())],
        &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
    );
    assert_eq!(String::from_utf8_lossy(&net.stdout).trim(), "80");
    let ipc = nsenter(&[("--ipc", info["namespaces"]["ipc"].as_str().unwrap())], &["cat", "/proc/sys/kernel/shmmni"]);
    assert_eq!(String::from_utf8_lossy(&ipc.stdout).trim(), "1234");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap();
    assert_ne!(host.trim(), "80", "the host's value is untouched");
    remove(&berth, &id).await;
}

#[tokio::test]
async fn bad_sysctls_are_refused_and_nothing_is_left() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    for (name, host_network) in [("vm.swappiness", false), ("kernel.hostname", false), ("net.ipv4.ip_forward", true)] {
        let mut config = pod_config("sysctl");
        let options = NamespaceOption {
            network: if host_network { NamespaceMode::Node } else { NamespaceMode::Pod } as i32,
            ..container_pid()
        };
        config.linux = Some(LinuxPodSandboxConfig {
            sysctls: HashMap::from([(name.to_string(), "1".to_string())]),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(options),
                ..Default::default()
            }),
            ..Default::default()
        });
        let err = run(&berth, config).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert!(err.message().contains(name), "{}", err.message());
    }
    let listed = berth.runtime().await.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner();
    assert!(listed.items.is_empty());
}

#[tokio::test]
async fn a_host_network_pod_uses_the_hosts_network_and_hostname() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let mut config = pod_config("hostnet");
    config.linux = Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption { network: NamespaceMode::Node as i32, ..container_pid() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run(&berth, config).await.unwrap();
    let reply = status(&berth, &id).await;
    let pod = reply.status.unwrap();
    assert!(pod.network.is_none(), "no pod IP of its own");
    assert_eq!(pod.linux.unwrap().namespaces.unwrap().options.unwrap().network(), NamespaceMode::Node);
    assert_eq!(network.veths(), 0);
    let info = details(&berth, &id).await;
    assert!(info["namespaces"]["net"].is_null() && info["namespaces"]["uts"].is_null());
    let hostname = std::fs::read_to_string(info["hostnameFile"].as_str().unwrap()).unwrap();
    assert_eq!(hostname.trim(), nix::unistd::gethostname().unwrap().to_string_lossy());
    remove(&berth, &id).await;
}

#[tokio::test]
async fn duplicates_unknown_handlers_and_bad_metadata_are_refused() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let id = run(&berth, pod_config("dup")).await.unwrap();
    let err = run(&berth, pod_config("dup")).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let mut next_attempt = pod_config("dup");
    next_attempt.metadata.as_mut().unwrap().attempt = 1;
    let second = run(&berth, next_attempt).await.unwrap();

    let request = RunPodSandboxRequest { config: Some(pod_config("kata")), runtime_handler: "kata".into() };
    let err = berth.runtime().await.run_pod_sandbox(request).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut nameless = pod_config("x");
    nameless.metadata.as_mut().unwrap().name.clear();
    let err = run(&berth, nameless).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("metadata.name"));
    let err = berth.runtime().await.run_pod_sandbox(RunPodSandboxRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Once removed, the name is free again.
    remove(&berth, &id).await;
    let again = run(&berth, pod_config("dup")).await.unwrap();
    for id in [second, again] {
        remove(&berth, &id).await;
    }
}

#[tokio::test]
async fn list_filters_by_id_prefix_state_and_labels() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let a = run(&berth, pod_config("la")).await.unwrap();
    let b = run(&berth, pod_config("lb")).await.unwrap();
    stop(&berth, &b).await;
    let list = |filter: PodSandboxFilter| {
        let berth = &berth;
        async move {
            let request = ListPodSandboxRequest { filter: Some(filter) };
            let items = berth.runtime().await.list_pod_sandbox(request).await.unwrap().into_inner().items;
            items.into_iter().map(|i| i.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(PodSandboxFilter::default()).await.len(), 2);
    assert_eq!(list(PodSandboxFilter { id: a[..10].to_string(), ..Default::default() }).await, vec![a.clone()]);
    let ready = PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 };
    assert_eq!(list(PodSandboxFilter { state: Some(ready), ..Default::default() }).await, vec![a.clone()]);
    let not_ready = PodSandboxStateValue { state: PodSandboxState::SandboxNotready as i32 };
    assert_eq!(list(PodSandboxFilter { state: Some(not_ready), ..Default::default() }).await, vec![b.clone()]);
    let labels = HashMap::from([("app".to_string(), "lb".to_string())]);
    assert_eq!(list(PodSandboxFilter { label_selector: labels, ..Default::default() }).await, vec![b.clone()]);
    let status = berth
        .runtime()
        .await
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: a[..8].into(), verbose: false })
        .await
        .unwrap();
    assert_eq!(status.into_inner().status.unwrap().id, a, "a unique prefix names the sandbox");
    for id in [a, b] {
        remove(&berth, &id).await;
    }
}

#[tokio::test]
async fn stop_and_remove_of_unknown_ids_succeed() {
    let berth = Berth::start().await;
    let unknown = "f".repeat(64);
    stop(&berth, &unknown).await;
    remove(&berth, &unknown).await;
}

#[tokio::test]
async fn teardown_after_a_berth_restart_uses_the_cached_network() {
    let network = TestNetwork::new();
    let mut berth = berth_with(&network).await;
    let id = run(&berth, pod_config("survivor")).await.unwrap();
    let ip = status(&berth, &id).await.status.unwrap().network.unwrap().ip;
    berth.kill();
    // The network config vanishes while berth is down: DEL must use the cache.
    std::fs::remove_file(berth.paths.cni_conf_dir.join("10-test.conflist")).unwrap();
    berth.restart().await;
    let pod = status(&berth, &id).await.status.unwrap();
    assert_eq!(pod.state(), PodSandboxState::SandboxReady, "namespaces survived the restart");
    assert_eq!(pod.network.unwrap().ip, ip);
    remove(&berth, &id).await;
    assert_eq!(network.veths(), 0);
    assert!(network.allocated_ips().is_empty());
    assert_eq!(pod_mounts(&id), 0);
}

#[tokio::test]
async fn a_failing_network_plugin_undoes_everything() {
    let network = TestNetwork::new();
    // host-local cannot allocate from a subnet with no room: ADD fails in the first plugin.
    let broken = network.conflist().replace(&network.subnet, "10.250.250.0/31");
    let berth = Berth::builder().cni_conflist(&broken).start().await;
    let err = run(&berth, pod_config("doomed")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let listed = berth.runtime().await.list_pod_sandbox(ListPodSandboxRequest::default()).await.unwrap().into_inner();
    assert!(listed.items.is_empty());
    let pods = berth.paths.run_root.join("pods");
    assert!(std::fs::read_dir(&pods).map(|d| d.count()).unwrap_or(0) == 0, "no pod dirs left");
    assert_eq!(network.veths(), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&berth.paths.run_root.display().to_string()), "no pins left");
}

#[tokio::test]
async fn a_shared_pid_namespace_gets_an_infra_process_in_the_pod_cgroup() {
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let parent = CgroupParent::new();
    let mut config = pod_config("sharepid");
    config.linux = Some(LinuxPodSandboxConfig {
        cgroup_parent: parent.path.clone(),
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption { pid: NamespaceMode::Pod as i32, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let id = run(&berth, config).await.unwrap();
    let info = details(&berth, &id).await;
    let pid = info["infraPid"].as_i64().expect("an infra process");
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = proc_status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.trim_end().ends_with("\t1"), "PID 1 of its own PID namespace: {nspid}");
    use std::os::unix::fs::MetadataExt;
    let net_of = |path: &str| std::fs::metadata(path).unwrap().ino();
    assert_eq!(
        net_of(&format!("/proc/{pid}/ns/net")),
        net_of(info["namespaces"]["net"].as_str().unwrap()),
        "in the pod's netns"
    );
    let memory = format!("/sys/fs/cgroup/memory{}/berth-{id}", parent.path);
    let procs = std::fs::read_to_string(format!("{memory}/cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string(), "in the pod's cgroup parent");
    stop(&berth, &id).await;
    assert!(!std::path::Path::new(&memory).exists(), "its cgroup is removed at stop");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if !berth::procfs::is_alive(pid as i32) {
            break; // a zombie awaiting its new parent's reaping is gone for our purposes
        }
        assert!(std::time::Instant::now() < deadline, "infra process still running");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    remove(&berth, &id).await;
}

/// A cgroup parent of the test's own (`/berth-test-<id>`), removed from every
/// hierarchy on drop.
struct CgroupParent {
    path: String,
}

impl CgroupParent {
    fn new() -> Self {
        CgroupParent { path: format!("/berth-test-{}", &berth::ids::new_id()[..12]) }
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let dir = entry.path().join(self.path.trim_start_matches('/'));
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[tokio::test]
async fn a_cgroup_parent_must_fit_the_driver() {
    let systemd = Berth::builder().config("cgroup_driver = \"systemd\"").start().await;
    let mut config = pod_config("slice");
    config.linux.as_mut().unwrap().cgroup_parent = "/kubepods/pod1".into();
    let err = run(&systemd, config).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("linux.cgroup_parent") && err.message().contains("slice"), "{}", err.message());

    let cgroupfs = Berth::start().await;
    let mut config = pod_config("path");
    config.linux.as_mut().unwrap().cgroup_parent = "kubepods-pod1.slice".into();
    let err = run(&cgroupfs, config).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("absolute cgroup path"), "{}", err.message());
}

#[tokio::test]
async fn bandwidth_annotations_shape_the_pod_traffic() {
    let network = TestNetwork::new();
    let conflist =
        network.conflist_with(&[serde_json::json!({"type": "bandwidth", "capabilities": {"bandwidth": true}})]);
    let berth = Berth::builder().cni_conflist(&conflist).start().await;
    let mut config = pod_config("shaped");
    config.annotations = HashMap::from([("kubernetes.io/ingress-bandwidth".to_string(), "10M".to_string())]);
    let id = run(&berth, config).await.unwrap();
    let veths = network.veth_names();
    assert_eq!(veths.len(), 1);
    let qdisc = std::process::Command::new("tc").args(["qdisc", "show", "dev", &veths[0]]).output().unwrap();
    let qdisc = String::from_utf8_lossy(&qdisc.stdout);
    assert!(qdisc.contains("tbf") && qdisc.contains("10Mbit"), "ingress limited to 10 Mbit/s: {qdisc}");
    remove(&berth, &id).await;

    let mut bad = pod_config("badbw");
    bad.annotations = HashMap::from([("kubernetes.io/egress-bandwidth".to_string(), "fast".to_string())]);
    let err = run(&berth, bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("egress-bandwidth"), "{}", err.message());
}

#[tokio::test]
async fn a_crash_during_run_pod_sandbox_leaves_no_wedged_name() {
    // A plugin that hangs on ADD holds RunPodSandbox after the name, the
    // directories and the pins exist: then berth is killed.
    let plugins = tempfile::tempdir().unwrap();
    let hang = plugins.path().join("hang");
    let pid_file = plugins.path().join("hang.pid");
    let script =
        format!("#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho $$ > {}\nexec sleep 3600\n", pid_file.display());
    std::fs::write(&hang, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _reap = KillOnDrop(pid_file.clone());
    let hanging = r#"{"cniVersion":"1.0.0","name":"hang","plugins":[{"type":"hang"}]}"#;
    let mut berth = Berth::builder().cni_bin_dir(plugins.path()).cni_conflist(hanging).start().await;

    let mut client = berth.runtime().await;
    let request = RunPodSandboxRequest { config: Some(pod_config("crashy")), runtime_handler: String::new() };
    let call = tokio::spawn(async move { client.run_pod_sandbox(request).await });
    let pods = berth.paths.run_root.join("pods");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !pid_file.exists() {
        assert!(std::time::Instant::now() < deadline, "the plugin never ran");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let half_made = std::fs::read_dir(&pods).unwrap().next().unwrap().unwrap().path();
    assert!(pod_mounts(&half_made.file_name().unwrap().to_string_lossy()) > 0, "pins exist mid-run");
    berth.kill();
    let _ = call.await;
    drop(_reap);

    let network = TestNetwork::new();
    std::fs::write(berth.paths.cni_conf_dir.join("10-test.conflist"), network.conflist()).unwrap();
    berth.restart().await;
    assert!(!half_made.exists(), "the half-made pod's directory is gone");
    assert_eq!(pod_mounts(&half_made.file_name().unwrap().to_string_lossy()), 0, "its pins are gone");
    let id = run(&berth, pod_config("crashy")).await.expect("the same pod can be created again");
    remove(&berth, &id).await;
}

/// Kills the process whose pid the file holds, on drop.
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// UpdatePodSandboxResources (CRI 1.33+): the pod's cgroup parent gets the
/// containers' sum plus the overhead; an unknown pod is NotFound.
#[tokio::test]
async fn a_resized_pod_gets_its_new_limits_in_its_cgroup_parent() {
    use berth::cri::v1::{LinuxContainerResources, UpdatePodSandboxResourcesRequest};
    let parent = CgroupParent::new();
    // kubelet makes the pod's cgroup before RunPodSandbox.
    for hierarchy in ["memory", "cpu"] {
        std::fs::create_dir_all(std::path::Path::new("/sys/fs/cgroup").join(hierarchy).join(&parent.path[1..]))
            .unwrap();
    }
    let berth = Berth::start().await;
    let mut config = crate::support::containers::host_pod_config("resized");
    config.linux.as_mut().unwrap().cgroup_parent = parent.path.clone();
    let id = run(&berth, config).await.unwrap();

    let request = UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: id.clone(),
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 200 << 20,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            ..Default::default()
        }),
        overhead: Some(LinuxContainerResources {
            memory_limit_in_bytes: 10 << 20,
            cpu_quota: 5_000,
            ..Default::default()
        }),
    };
    berth.runtime().await.update_pod_sandbox_resources(request).await.expect("UpdatePodSandboxResources");
    let read = |hierarchy: &str, file: &str| {
        let path = std::path::Path::new("/sys/fs/cgroup").join(hierarchy).join(&parent.path[1..]).join(file);
        std::fs::read_to_string(&path).unwrap().trim().to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), (210u64 << 20).to_string());
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "55000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");

    let unknown = UpdatePodSandboxResourcesRequest { pod_sandbox_id: "f".repeat(64), ..Default::default() };
    let err = berth.runtime().await.update_pod_sandbox_resources(unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    remove(&berth, &id).await;
}

/// Pod cycles (run, stop, remove) on a real bridge network.
async fn pod_cycles(berth: &Berth, prefix: &str, count: usize) {
    for i in 0..count {
        let id = run(berth, pod_config(&format!("{prefix}-{i}"))).await.unwrap();
        stop(berth, &id).await;
        remove(berth, &id).await;
    }
}

#[tokio::test]
async fn two_hundred_pod_cycles_leave_the_daemons_memory_bounded() {
    // A leak of a few KiB per pod shows as growth from the second hundred on;
    // the first settles the allocator's arenas, threads and caches.
    const GROWTH_BUDGET_KIB: u64 = 4 << 10;
    const LEAK_BUDGET_KIB: u64 = 1 << 10;
    let network = TestNetwork::new();
    let berth = berth_with(&network).await;
    let pid = berth.pid().unwrap();
    let rss = || crate::support::streaming::rss_kib(pid);
    pod_cycles(&berth, "warm", 20).await;
    let settled = rss();
    pod_cycles(&berth, "first", 100).await;
    let first = rss();
    pod_cycles(&berth, "second", 100).await;
    let second = rss();
    eprintln!("berth RSS: {settled} KiB settled, {first} KiB after 100 pod cycles, {second} KiB after 200");
    assert!(
        second.saturating_sub(settled) < GROWTH_BUDGET_KIB,
        "grew {} KiB over 200 pod cycles (budget {GROWTH_BUDGET_KIB} KiB)",
        second.saturating_sub(settled)
    );
    assert!(
        second.saturating_sub(first) < LEAK_BUDGET_KIB,
        "grew {} KiB over the second 100 pod cycles (budget {LEAK_BUDGET_KIB} KiB): a leak per pod",
        second.saturating_sub(first)
    );
    assert_eq!(network.veths(), 0);
    assert!(network.allocated_ips().is_empty());
}

#[tokio::test]
async fn each_step_of_a_pod_is_timed_under_its_rpc_in_the_metrics() {
    use crate::support::metrics::{free_address, scrape, value};
    let network = TestNetwork::new();
    let address = free_address();
    let berth = Berth::builder()
        .cni_conflist(&network.conflist())
        .config(&format!("[metrics]\naddress = \"{address}\"\n"))
        .start()
        .await;
    let id = run(&berth, pod_config("timed")).await.unwrap();
    stop(&berth, &id).await;
    remove(&berth, &id).await;

    let scraped = scrape(&address);
    let count = |rpc: &str, step: &str| {
        value(&scraped, &format!("berth_step_duration_seconds_count{{rpc=\"{rpc}\",step=\"{step}\"}}"))
    };
    // The test network is bridge + host-local + portmap; host-local runs inside bridge.
    for (rpc, step) in [
        ("RunPodSandbox", "cni ADD bridge"),
        ("RunPodSandbox", "cni ADD portmap"),
        ("RunPodSandbox", "namespaces pin"),
        ("RunPodSandbox", "store commit"),
        ("StopPodSandbox", "cni DEL portmap"),
        ("StopPodSandbox", "cni DEL bridge"),
        ("StopPodSandbox", "namespaces release"),
        ("RemovePodSandbox", "dirs remove"),
    ] {
        assert!(count(rpc, step).is_some_and(|n| n >= 1.0), "no {step:?} under {rpc}:\n{scraped}");
    }
    assert_eq!(count("RunPodSandbox", "cni ADD loopback"), None, "berth brings lo up itself");
    // Each step took part of its call's time, never more than all of it.
    let seconds = |series: &str| value(&scraped, series).unwrap_or_default();
    let run_total = seconds("berth_grpc_request_duration_seconds_sum{method=\"RunPodSandbox\",code=\"OK\"}");
    let bridge = seconds("berth_step_duration_seconds_sum{rpc=\"RunPodSandbox\",step=\"cni ADD bridge\"}");
    assert!(bridge > 0.0 && bridge <= run_total, "bridge ADD {bridge} s of RunPodSandbox's {run_total} s");
}
