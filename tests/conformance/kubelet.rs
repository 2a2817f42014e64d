//! A real kubelet drives berth: static pods from a manifest directory, no API
//! server. Every effect is checked through berth's own socket (ListPodSandbox,
//! ListContainers, ContainerStatus, ExecSync) or from the host (the hostPort,
//! log files, mounts); kubelet's judgement (readiness, restart counts) through
//! its read-only `/pods`. One kubelet runs every scenario, side by side, to
//! keep the run short.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use berth::cri::v1::{
    Container, ContainerFilter, ContainerState, ContainerStatus, ContainerStatusRequest, ExecSyncRequest,
    ListContainersRequest, ListPodSandboxRequest, PodSandbox,
};
use serde_json::{Value, json};

use crate::support::berth::Berth;
use crate::support::cni::{TestNetwork, iptables_rules_mentioning};
use crate::support::containers::{log_lines, mounts_mentioning};
use crate::support::image::ImageBuilder;
use crate::support::kubelet::{Kubelet, NODE_NAME};
use crate::support::registry::Registry;
use crate::support::tools;

/// Bounds of the waits; none is a timing assertion. Generous: CI runs both
/// kubelets, critest and crictl at once on two cores.
const WAIT: Duration = Duration::from_secs(180);
/// kubelet's container garbage collection (which removes what a deleted pod
/// left) runs once a minute.
const CLEANUP_WAIT: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(250);

#[tokio::test]
async fn kubelet_runs_static_pods_on_berth() {
    static_pods_on_berth(&tools::kubelet()).await;
}

/// The oldest kubelet a control plane of the same release supports.
#[tokio::test]
async fn the_oldest_supported_kubelet_runs_static_pods_on_berth() {
    static_pods_on_berth(&tools::kubelet_oldest()).await;
}

async fn static_pods_on_berth(kubelet_binary: &std::path::Path) {
    // Dropped in reverse: kubelet first, then berth (and its containers), the
    // network, the registry.
    let registry = Registry::start().await;
    let network = TestNetwork::new();
    // The loopback registry needs no configuration: berth speaks HTTP to it.
    let berth = Berth::builder().cni_conflist(&network.conflist()).start().await;
    ImageBuilder::busybox().build().push(&registry, "test/busybox", "v1").await;
    let image = format!("{}/test/busybox:v1", registry.host());
    let kubelet = Kubelet::start(
        kubelet_binary,
        &berth,
        json!({
            // Crash-loop back-off from 1 s, doubling up to 8 s: a few restarts
            // within seconds, still growing. Both back-off gates are known to
            // every kubelet tested (alpha in 1.34). ImageVolume: beta and off
            // in 1.34, GA (locked on) in 1.37.
            "featureGates": {
                "ReduceDefaultCrashLoopBackOffDecay": true,
                "KubeletCrashLoopBackOffMax": true,
                "ImageVolume": true,
            },
            "crashLoopBackOff": {"maxContainerRestartPeriod": "8s"},
        }),
    )
    .await;
    let host_port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();

    let manifests = [
        ("sleeper", pod("sleeper", vec![container("sleep", &image, "exec sleep 100000")])),
        ("share", share_pod(&image)),
        ("web", web_pod(&image, host_port)),
        ("crash", pod("crash", vec![container("fail", &image, "echo failing; exit 1")])),
        ("probes", probes_pod(&image)),
        ("userns", userns_pod(&image)),
    ];
    for (name, manifest) in &manifests {
        kubelet.add_manifest(name, manifest);
    }
    let t = Checks { berth: &berth, kubelet: &kubelet };

    // A long-running container: running, and (checked again at the end) still
    // the same container, never restarted.
    let sleeper = t.running("sleeper", "sleep", 0).await;

    // Two containers sharing an emptyDir: what the writer wrote, the reader
    // sees (exec) and printed (its CRI log file).
    let reader = t.running("share", "reader", 0).await;
    t.running("share", "writer", 0).await;
    let seen = t.exec(&reader.id, &["cat", "/shared/message"]).await;
    assert_eq!(seen, "written by the writer\n");
    let reader_status = t.status(&reader.id).await;
    let reader_log = std::path::PathBuf::from(&reader_status.log_path);
    // kubelet's layout: <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<restart>.log
    let pod_log_dir = reader_log.parent().and_then(|p| p.parent()).expect("pod log dir");
    assert_eq!(pod_log_dir.parent(), Some(kubelet.pod_logs.as_path()), "{}", reader_log.display());
    let pod_log_dir_name = pod_log_dir.file_name().unwrap_or_default().to_string_lossy();
    assert!(pod_log_dir_name.starts_with(&format!("default_share-{NODE_NAME}_")), "{}", reader_log.display());
    assert!(reader_log.ends_with("reader/0.log"), "{}", reader_log.display());
    eventually("the reader's log shows the writer's message", WAIT, async || {
        log_lines(&reader_log).iter().any(|l| l == "read: written by the writer").then_some(())
    })
    .await;

    // hostPort: the pod's httpd answers on the host side of the bridge.
    t.running("web", "httpd", 0).await;
    let page = eventually("the hostPort answers", WAIT, async || http_get(&network.gateway, host_port)).await;
    assert!(page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("hello through the hostPort"), "{page}");

    // A container that always exits 1: kubelet restarts it with back-off, each
    // time a new container with the next attempt number. kubelet deletes a dead
    // attempt once the next one dies (it keeps one per container), so the
    // first ones may be gone already; each lives through a back-off of at
    // least a second, longer than a poll.
    let mut attempts = BTreeMap::new();
    let mut saw_back_off = false;
    eventually("the failing container restarted three times, and in CrashLoopBackOff", WAIT, async || {
        for c in t.containers("crash", "fail").await {
            attempts.insert(c.metadata.as_ref().map_or(0, |m| m.attempt), c.id);
        }
        let status = kubelet.container_status("crash", "fail").await;
        saw_back_off |= status.as_ref().is_some_and(|s| s["state"]["waiting"]["reason"] == "CrashLoopBackOff");
        (attempts.len() >= 4 && saw_back_off).then_some(())
    })
    .await;
    let seen: Vec<u32> = attempts.keys().copied().collect();
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "attempts seen with gaps: {attempts:?}");
    let ids: std::collections::BTreeSet<&String> = attempts.values().collect();
    assert_eq!(ids.len(), attempts.len(), "one container per attempt: {attempts:?}");
    // kubelet's container GC may already have removed the oldest ones.
    for (attempt, id) in &attempts {
        if let Some(status) = t.try_status(id).await
            && status.state() == ContainerState::ContainerExited
        {
            assert_eq!((status.exit_code, status.reason.as_str()), (1, "Error"), "attempt {attempt}: {status:?}");
        }
    }
    let restarts = eventually("kubelet counts the restarts", WAIT, async || {
        let status = kubelet.container_status("crash", "fail").await?;
        let count = status["restartCount"].as_u64()?;
        (count >= 3).then_some(count)
    })
    .await;
    assert!(restarts >= 3);

    // Readiness: an exec probe on /tmp/ready; ready, then not once the file goes.
    let ready = t.running("probes", "ready", 0).await;
    t.wait_ready("probes", "ready", true).await;
    t.exec(&ready.id, &["rm", "/tmp/ready"]).await;
    t.wait_ready("probes", "ready", false).await;
    // A failing readiness probe restarts nothing.
    assert_eq!(t.status(&ready.id).await.state(), ContainerState::ContainerRunning);

    // Liveness: an exec probe on /tmp/alive; once the file goes, kubelet kills
    // the container and starts attempt 1, which makes the file again.
    let live = t.running("probes", "live", 0).await;
    t.exec(&live.id, &["rm", "/tmp/alive"]).await;
    let second = t.running("probes", "live", 1).await;
    assert_ne!(second.id, live.id);
    if let Some(first) = t.try_status(&live.id).await {
        assert_eq!(first.state(), ContainerState::ContainerExited, "{first:?}");
    }
    eventually("kubelet counts the liveness restart", WAIT, async || {
        let status = kubelet.container_status("probes", "live").await?;
        (status["restartCount"].as_u64()? >= 1 && status["ready"] == true).then_some(())
    })
    .await;

    // hostUsers: false: kubelet picks the pod's IDs; its root is root inside
    // (its rootfs and an emptyDir writable), an unprivileged user outside.
    let userns = t.running("userns", "root", 0).await;
    let userns_log = std::path::PathBuf::from(t.status(&userns.id).await.log_path);
    let lines = eventually("the userns pod reports", WAIT, async || {
        let lines = log_lines(&userns_log);
        lines.iter().any(|l| l == "done").then_some(lines)
    })
    .await;
    let uid_map: Vec<u64> = lines[0].split_whitespace().filter_map(|n| n.parse().ok()).collect();
    assert!(uid_map.len() == 3 && uid_map[0] == 0 && uid_map[1] >= 65536, "kubelet's range: {lines:?}");
    assert_eq!(
        lines[1..],
        ["0", "rootfs-writable", "volume-writable", "0", "image-volume-read-only", "done"],
        "the emptyDir and the image volume ID-mapped into the pod: {lines:?}"
    );
    let exec_uid_map = t.exec(&userns.id, &["cat", "/proc/self/uid_map"]).await;
    assert_eq!(exec_uid_map.split_whitespace().nth(1), Some(uid_map[1].to_string().as_str()), "exec joins it too");

    // The long-running container never moved.
    let sleepers = t.containers("sleeper", "sleep").await;
    assert_eq!(sleepers.len(), 1, "{sleepers:?}");
    assert_eq!(sleepers[0].id, sleeper.id);
    assert_eq!(t.status(&sleeper.id).await.state(), ContainerState::ContainerRunning);
    assert_eq!(kubelet.container_status("sleeper", "sleep").await.unwrap()["restartCount"], 0);

    // Removing the manifests: kubelet stops and removes every pod, and
    // nothing is left behind.
    assert_eq!(t.sandboxes().await.len(), manifests.len());
    for (name, _) in &manifests {
        kubelet.remove_manifest(name);
    }
    eventually("berth has no pods and no containers left", CLEANUP_WAIT, async || {
        let (pods, containers) = (t.sandboxes().await, t.all_containers().await);
        (pods.is_empty() && containers.is_empty()).then_some(())
    })
    .await;
    eventually("kubelet forgets the pods", WAIT, async || kubelet.pods().await.is_empty().then_some(())).await;
    assert!(mounts_mentioning(&berth.dir().display().to_string()).is_empty(), "berth left mounts behind");
    explained("kubelet unmounts and removes its pod dirs", WAIT, async || {
        // kubelet bind-mounts its root dir onto itself (made rshared) for its
        // whole life; what matters is nothing mounted below it.
        let mounts = crate::support::footprint::mounts_under(&kubelet.root_dir);
        let pod_dirs = walk(&kubelet.root_dir.join("pods"));
        if mounts.is_empty() && pod_dirs.is_empty() {
            Ok(())
        } else {
            Err(format!("mounts {mounts:#?}, pod dirs {pod_dirs:#?}"))
        }
    })
    .await;
    assert_eq!(network.veths(), 0, "veths left on the bridge");
    assert!(network.allocated_ips().is_empty(), "IPs left allocated: {:?}", network.allocated_ips());
    assert!(iptables_rules_mentioning(&format!("--dport {host_port}")).is_empty(), "hostPort rules left");
}

/// The checks through berth's socket, with kubelet's view beside them.
struct Checks<'a> {
    berth: &'a Berth,
    kubelet: &'a Kubelet,
}

impl Checks<'_> {
    async fn sandboxes(&self) -> Vec<PodSandbox> {
        let request = ListPodSandboxRequest { filter: None };
        self.berth.runtime().await.list_pod_sandbox(request).await.expect("ListPodSandbox").into_inner().items
    }

    async fn all_containers(&self) -> Vec<Container> {
        let request = ListContainersRequest { filter: None };
        self.berth.runtime().await.list_containers(request).await.expect("ListContainers").into_inner().containers
    }

    /// Containers named `container` of static pod `pod`, selected by the
    /// labels kubelet puts on them.
    async fn containers(&self, pod: &str, container: &str) -> Vec<Container> {
        let filter = ContainerFilter {
            label_selector: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), format!("{pod}-{NODE_NAME}")),
                ("io.kubernetes.container.name".to_string(), container.to_string()),
            ]),
            ..Default::default()
        };
        let request = ListContainersRequest { filter: Some(filter) };
        self.berth.runtime().await.list_containers(request).await.expect("ListContainers").into_inner().containers
    }

    /// Waits for a running `container` of `pod` with this attempt number.
    async fn running(&self, pod: &str, container: &str, attempt: u32) -> Container {
        let what = format!("{pod}/{container} attempt {attempt} running");
        eventually(&what, WAIT, async || {
            self.containers(pod, container).await.into_iter().find(|c| {
                c.state() == ContainerState::ContainerRunning
                    && c.metadata.as_ref().is_some_and(|m| m.attempt == attempt)
            })
        })
        .await
    }

    async fn try_status(&self, id: &str) -> Option<ContainerStatus> {
        let request = ContainerStatusRequest { container_id: id.into(), verbose: false };
        self.berth.runtime().await.container_status(request).await.ok()?.into_inner().status
    }

    async fn status(&self, id: &str) -> ContainerStatus {
        self.try_status(id).await.unwrap_or_else(|| panic!("no ContainerStatus for {id}"))
    }

    /// ExecSync through berth; the command must succeed. Returns its stdout.
    async fn exec(&self, id: &str, cmd: &[&str]) -> String {
        let request =
            ExecSyncRequest { container_id: id.into(), cmd: cmd.iter().map(|s| s.to_string()).collect(), timeout: 10 };
        let reply = self.berth.runtime().await.exec_sync(request).await.expect("ExecSync").into_inner();
        assert_eq!(reply.exit_code, 0, "{cmd:?}: {}", String::from_utf8_lossy(&reply.stderr));
        String::from_utf8_lossy(&reply.stdout).into_owned()
    }

    /// Waits until kubelet holds `container` of `pod` as ready (or not).
    async fn wait_ready(&self, pod: &str, container: &str, ready: bool) {
        let what = format!("kubelet holds {pod}/{container} ready={ready}");
        eventually(&what, WAIT, async || {
            let status = self.kubelet.container_status(pod, container).await?;
            (status["ready"] == ready).then_some(())
        })
        .await;
    }
}

/// Polls `check` until it gives a value; panics after `timeout`.
async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "never happened within {timeout:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it is Ok; panics after `timeout` with its last error.
async fn explained<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(Instant::now() < deadline, "never happened within {timeout:?}: {what}; last: {last}"),
        }
        tokio::time::sleep(POLL).await;
    }
}


/// Every path below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        found.push(entry.path());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(walk(&entry.path()));
        }
    }
    found
}

/// A plain `GET /` to `ip:port`; the whole answer, or None while nothing answers.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&format!("{ip}:{port}").parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

/// A static pod: a short grace period (busybox's `sleep` as PID 1 ignores
/// SIGTERM), containers `containers`.
fn pod(name: &str, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": containers},
    })
}

fn container(name: &str, image: &str, script: &str) -> Value {
    json!({"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", script]})
}

fn share_pod(image: &str) -> Value {
    let mut writer = container(
        "writer",
        image,
        "echo 'written by the writer' > /shared/.message && mv /shared/.message /shared/message; exec sleep 100000",
    );
    writer["volumeMounts"] = json!([{"name": "shared", "mountPath": "/shared"}]);
    let mut reader = container(
        "reader",
        image,
        "until [ -f /shared/message ]; do sleep 0.2; done; echo \"read: $(cat /shared/message)\"; exec sleep 100000",
    );
    reader["volumeMounts"] = json!([{"name": "shared", "mountPath": "/shared", "readOnly": true}]);
    let mut pod = pod("share", vec![writer, reader]);
    pod["spec"]["volumes"] = json!([{"name": "shared", "emptyDir": {}}]);
    pod
}

fn web_pod(image: &str, host_port: u16) -> Value {
    let mut httpd = container(
        "httpd",
        image,
        "mkdir -p /www && echo 'hello through the hostPort' > /www/index.html && exec busybox httpd -f -p 8080 -h /www",
    );
    httpd["ports"] = json!([{"containerPort": 8080, "hostPort": host_port, "protocol": "TCP"}]);
    pod("web", vec![httpd])
}

/// `hostUsers: false`: the pod in a user namespace of its own, with an emptyDir
/// and an image volume (kubelet's ImageVolume: the busybox image at /tools).
fn userns_pod(image: &str) -> Value {
    let script = "cat /proc/self/uid_map; id -u; \
        touch /rootfs-file && echo rootfs-writable; touch /scratch/file && echo volume-writable; \
        stat -c %u /tools/bin/busybox; touch /tools/file 2>/dev/null || echo image-volume-read-only; \
        echo done; exec sleep 100000";
    let mut root = container("root", image, script);
    root["volumeMounts"] = json!([
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "tools", "mountPath": "/tools"},
    ]);
    let mut pod = pod("userns", vec![root]);
    pod["spec"]["hostUsers"] = json!(false);
    pod["spec"]["volumes"] = json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "tools", "image": {"reference": image, "pullPolicy": "IfNotPresent"}},
    ]);
    pod
}

/// `ready` has an exec readiness probe on /tmp/ready, `live` an exec liveness
/// probe on /tmp/alive; each makes its file at start. Probes run every second.
fn probes_pod(image: &str) -> Value {
    let probe = |file: &str, failures: u32| json!({"exec": {"command": ["cat", file]}, "periodSeconds": 1, "failureThreshold": failures, "timeoutSeconds": 5});
    let mut ready = container("ready", image, "touch /tmp/ready; exec sleep 100000");
    ready["readinessProbe"] = probe("/tmp/ready", 1);
    let mut live = container("live", image, "touch /tmp/alive; exec sleep 100000");
    // Two failures: a probe that runs before a fresh attempt has made its file
    // must not kill it.
    live["livenessProbe"] = probe("/tmp/alive", 2);
    pod("probes", vec![ready, live])
}
