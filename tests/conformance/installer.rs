//! The DaemonSet installer of `deploy/`: its pod specs, as the manifests give
//! them, run as static pods under the real kubelet on berth, against a fake
//! host root (a hostPath) with a stand-in `systemctl`. Three runs: an install
//! that also switches kubelet, a second one that must change nothing (and keep
//! the operator's edit of config.toml), and the cleanup, which must leave the
//! host root as it found it.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::cri::v1::{ContainerFilter, ContainerStatusRequest, ListContainersRequest};
use serde_json::{Value, json};

use crate::support::berth::{Berth, berth_binary};
use crate::support::http_server::BackgroundServer;
use crate::support::installer::installer_image;
use crate::support::kubelet::{Kubelet, NODE_NAME};
use crate::support::registry::Registry;
use crate::support::tools;

const WAIT: Duration = Duration::from_secs(120);

/// Stands in for the host's systemctl: records each call and keeps the
/// unit's state in files beside itself.
const STAND_IN_SYSTEMCTL: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$*" >>"$dir/calls"
case $1 in
  is-enabled) [ -f "$dir/enabled" ] ;;
  is-active) [ -f "$dir/active" ] ;;
  enable) touch "$dir/enabled" ;;
  disable) rm -f "$dir/enabled" ;;
  start | restart) [ "$2" = kubelet.service ] || touch "$dir/active" ;;
  stop) rm -f "$dir/active" ;;
  daemon-reload) ;;
  *) echo "stand-in systemctl: unexpected: $*" >&2; exit 1 ;;
esac
"#;

const KUBELET_CONFIG: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/containerd/containerd.sock\n";

#[tokio::test]
async fn the_daemonset_installs_berth_changes_nothing_twice_and_uninstalls() {
    let registry = Registry::start().await;
    let berth = Berth::builder().start().await;
    installer_image(&berth_binary()).push(&registry, "berth/installer", "test").await;
    let image = format!("{}/berth/installer:test", registry.host());

    // A host root as a node has it: the directories the installer writes to
    // exist, kubelet has its kubeadm config, there is no CNI config yet.
    let host = tempfile::Builder::new().prefix("berth-test-host-").tempdir().unwrap();
    for dir in ["usr/local/bin", "etc/systemd/system", "etc/cni/net.d", "run", "var/lib/kubelet"] {
        std::fs::create_dir_all(host.path().join(dir)).unwrap();
    }
    std::fs::write(host.path().join("var/lib/kubelet/config.yaml"), KUBELET_CONFIG).unwrap();
    // systemd makes a node's root a shared mount, which the installer's
    // HostToContainer propagation asks for.
    let _shared = SharedMount::new(host.path());
    let original = snapshot(host.path(), false);
    let stand_in = tempfile::Builder::new().prefix("berth-test-systemctl-").tempdir().unwrap();
    let systemctl = stand_in.path().join("systemctl");
    std::fs::write(&systemctl, STAND_IN_SYSTEMCTL).unwrap();
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let api = FakeApiServer::start();
    let kubelet = Kubelet::start(&tools::kubelet(), &berth, json!({})).await;
    let fixture =
        Fixture { berth: &berth, kubelet: &kubelet, host: host.path(), stand_in: stand_in.path(), api: &api, image };

    // First run, with the kubelet switch opted in.
    let log = fixture.run("first", "berth-switch-kubelet.yaml", "done: berth").await;
    let root = host.path();
    assert_eq!(std::fs::read(root.join("usr/local/bin/berth")).unwrap(), std::fs::read(berth_binary()).unwrap());
    let monitor = berth_binary().with_file_name("berth-monitor");
    assert_eq!(std::fs::read(root.join("usr/local/bin/berth-monitor")).unwrap(), std::fs::read(monitor).unwrap());
    let defaults = crate::support::berth::run_berth(&["config", "--default"]).stdout;
    assert_eq!(std::fs::read(root.join("etc/berth/config.toml")).unwrap(), defaults);
    assert_eq!(
        std::fs::read(root.join("etc/systemd/system/berth.service")).unwrap(),
        deploy_file("systemd/berth.service")
    );
    assert_eq!(
        std::fs::read(root.join("etc/cni/net.d/10-berth.conflist")).unwrap(),
        deploy_file("cni/10-berth.conflist")
    );
    let kubelet_config = std::fs::read_to_string(root.join("var/lib/kubelet/config.yaml")).unwrap();
    assert!(kubelet_config.ends_with("containerRuntimeEndpoint: unix:///run/berth/berth.sock\n"), "{kubelet_config}");
    assert!(!kubelet_config.contains("containerd"), "{kubelet_config}");
    let recorded = std::fs::read_to_string(root.join("etc/berth/installed.manifest")).unwrap();
    assert_eq!(recorded.lines().count(), 5, "two binaries, config, unit, CNI: {recorded}");
    assert_eq!(
        fixture.calls(),
        [
            "daemon-reload",
            "is-enabled --quiet berth.service",
            "enable berth.service",
            "is-active --quiet berth.service",
            "start berth.service",
            "restart kubelet.service"
        ]
    );
    for line in [
        "binary /usr/local/bin/berth: written",
        "binary /usr/local/bin/berth-monitor: written",
        "config /etc/berth/config.toml: written",
        "service: started",
        "service: answering",
    ] {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
    assert!(log.contains("kubelet: switched (kubelet restarted)"), "{log}");
    let annotated =
        json!({"berth.dev/installed-version": env!("CARGO_PKG_VERSION"), "berth.dev/kubelet-switched": "true"});
    assert_eq!(
        api.node_patches(),
        std::slice::from_ref(&annotated),
        "the node's annotations say what was done:\n{log}"
    );

    // Second run: the operator has changed the config meanwhile.
    let config = root.join("etc/berth/config.toml");
    let edited = format!("{}\n# the operator's\n", std::fs::read_to_string(&config).unwrap());
    std::fs::write(&config, &edited).unwrap();
    let before = snapshot(root, true);
    let log = fixture.run("second", "berth-switch-kubelet.yaml", "done: berth").await;
    assert_eq!(snapshot(root, true), before, "a second run changes nothing:\n{log}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    for line in [
        "binary /usr/local/bin/berth: unchanged",
        "binary /usr/local/bin/berth-monitor: unchanged",
        "config /etc/berth/config.toml: kept (changed by the operator)",
        "CNI /etc/cni/net.d/10-berth.conflist: unchanged",
        "service: running",
        "service: answering",
        "kubelet: unchanged",
    ] {
        assert!(log.contains(line), "{line:?} in:\n{log}");
    }
    assert_eq!(fixture.calls(), ["is-enabled --quiet berth.service", "is-active --quiet berth.service"]);
    assert_eq!(api.node_patches(), [annotated.clone(), annotated]);

    // The operator takes the edit back, then cleans up: the host root is as it was.
    std::fs::write(&config, defaults).unwrap();
    let log = fixture.run("cleanup", "berth-cleanup.yaml", "done: uninstalled").await;
    assert_eq!(snapshot(root, false), original, "uninstall restores the host root:\n{log}");
    assert_eq!(
        fixture.calls(),
        [
            "restart kubelet.service",
            "is-active --quiet berth.service",
            "stop berth.service",
            "is-enabled --quiet berth.service",
            "disable berth.service",
            "daemon-reload"
        ]
    );
    let removed = json!({"berth.dev/installed-version": null, "berth.dev/kubelet-switched": null});
    assert_eq!(api.node_patches().last(), Some(&removed), "the annotations go with the install");
}

struct Fixture<'a> {
    berth: &'a Berth,
    kubelet: &'a Kubelet,
    host: &'a Path,
    stand_in: &'a Path,
    api: &'a FakeApiServer,
    image: String,
}

impl Fixture<'_> {
    /// Runs the pod of `manifest`'s DaemonSet as static pod `name` until its
    /// log says `done`; returns the log, and takes the pod away again.
    async fn run(&self, name: &str, manifest: &str, done: &str) -> String {
        let _ = std::fs::remove_file(self.stand_in.join("calls"));
        self.kubelet.add_manifest(name, &self.static_pod(name, manifest));
        let log = self.wait_for_log(name, done).await;
        self.kubelet.remove_manifest(name);
        self.wait_gone(name).await;
        log
    }

    /// The DaemonSet's pod template, as a static pod: its image the one the
    /// test built, the host root and systemctl the test's. Node affinity is the
    /// DaemonSet controller's business, not kubelet's: left out.
    fn static_pod(&self, name: &str, manifest: &str) -> Value {
        let text = String::from_utf8(deploy_file(&format!("kubernetes/{manifest}"))).unwrap();
        let daemonset: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(daemonset["kind"], "DaemonSet", "{manifest}");
        let mut spec = daemonset["spec"]["template"]["spec"].clone();
        spec.as_object_mut().unwrap().remove("affinity");
        spec.as_object_mut().unwrap().remove("priorityClassName");
        // A static pod has no service account: the fake API server's token
        // and CA are mounted where the service account's would be.
        assert_eq!(spec.as_object_mut().unwrap().remove("serviceAccountName"), Some("berth-installer".into()));
        let container = &mut spec["containers"][0];
        container["image"] = self.image.clone().into();
        let env = container["env"].as_array_mut().unwrap();
        env.push(json!({"name": "BERTH_SYSTEMCTL", "value": "/stand-in/systemctl"}));
        env.push(json!({"name": "BERTH_SOCKET", "value": "/berth-run/berth.sock"}));
        env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"}));
        env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": self.api.server.port().to_string()}));
        container["volumeMounts"].as_array_mut().unwrap().extend([
            json!({"name": "stand-in", "mountPath": "/stand-in"}),
            json!({"name": "berth-run", "mountPath": "/berth-run"}),
            json!({"name": "service-account", "mountPath": SERVICE_ACCOUNT, "readOnly": true}),
        ]);
        let volumes = spec["volumes"].as_array_mut().unwrap();
        assert_eq!(volumes[0]["hostPath"]["path"], "/", "the installer gets the host's root");
        volumes[0]["hostPath"]["path"] = self.host.display().to_string().into();
        volumes.extend([
            json!({"name": "stand-in", "hostPath": {"path": self.stand_in.display().to_string()}}),
            json!({"name": "berth-run", "hostPath": {"path": self.berth.paths.run_root.display().to_string()}}),
            json!({"name": "service-account", "hostPath": {"path": self.api.account.path().display().to_string()}}),
        ]);
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": daemonset["metadata"]["namespace"]},
            "spec": spec,
        })
    }

    async fn wait_for_log(&self, pod: &str, done: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let log = match self.installer_log(pod).await {
                Some(log) if log.lines().any(|l| l.contains(done)) => return log,
                Some(log) => log,
                None => String::new(),
            };
            assert!(log.lines().all(|l| !l.contains("berth-install: error")), "the installer failed:\n{log}");
            assert!(Instant::now() < deadline, "{pod}: no {done:?} within {WAIT:?}; log so far:\n{log}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The installer container's output, from its CRI log file.
    async fn installer_log(&self, pod: &str) -> Option<String> {
        let filter = ContainerFilter {
            label_selector: HashMap::from([("io.kubernetes.pod.name".to_string(), format!("{pod}-{NODE_NAME}"))]),
            ..Default::default()
        };
        let mut runtime = self.berth.runtime().await;
        let request = ListContainersRequest { filter: Some(filter) };
        let container = runtime.list_containers(request).await.ok()?.into_inner().containers.into_iter().next()?;
        let request = ContainerStatusRequest { container_id: container.id, verbose: false };
        let status = runtime.container_status(request).await.ok()?.into_inner().status?;
        let text = std::fs::read_to_string(status.log_path).ok()?;
        // CRI log lines: <time> <stream> <P|F> <content>
        Some(text.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect::<Vec<_>>().join("\n"))
    }

    async fn wait_gone(&self, pod: &str) {
        let deadline = Instant::now() + WAIT;
        while self.kubelet.pod_status(pod).await.is_some() || self.installer_log(pod).await.is_some() {
            assert!(Instant::now() < deadline, "{pod}: still there after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn calls(&self) -> Vec<String> {
        let calls = std::fs::read_to_string(self.stand_in.join("calls")).unwrap_or_default();
        calls.lines().map(str::to_string).collect()
    }
}

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const TOKEN: &str = "installer-token";

/// Stands in for the API server over HTTPS: records every request, answers
/// each with 200. `account` holds what a service account mounts: the token
/// and the CA (here the server's self-signed certificate).
struct FakeApiServer {
    server: BackgroundServer,
    account: tempfile::TempDir,
    requests: Arc<Mutex<Vec<ApiRequest>>>,
}

#[derive(Debug, Clone)]
struct ApiRequest {
    method: String,
    path: String,
    authorization: String,
    content_type: String,
    body: Value,
}

impl FakeApiServer {
    fn start() -> FakeApiServer {
        let account = tempfile::Builder::new().prefix("berth-test-account-").tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let cert = certified.cert.pem();
        std::fs::write(account.path().join("ca.crt"), &cert).unwrap();
        std::fs::write(account.path().join("token"), format!("{TOKEN}\n")).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let server = BackgroundServer::bind("api-server")
            .tls(cert.as_bytes(), certified.signing_key.serialize_pem().as_bytes())
            .serve(move |request: hyper::Request<hyper::body::Incoming>| {
                let recorded = recorded.clone();
                async move {
                    let header = |name: hyper::header::HeaderName| {
                        request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
                    };
                    let (method, path) = (request.method().to_string(), request.uri().path().to_string());
                    let (authorization, content_type) =
                        (header(hyper::header::AUTHORIZATION), header(hyper::header::CONTENT_TYPE));
                    let body = http_body_util::BodyExt::collect(request.into_body()).await.map(|b| b.to_bytes());
                    let body = body.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
                    recorded.lock().unwrap().push(ApiRequest { method, path, authorization, content_type, body });
                    hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                }
            });
        FakeApiServer { server, account, requests }
    }

    /// The annotations of every PATCH of the node, checked to be what an
    /// in-cluster client sends.
    fn node_patches(&self) -> Vec<Value> {
        let requests = self.requests.lock().unwrap().clone();
        requests
            .iter()
            .map(|r| {
                assert_eq!(
                    (r.method.as_str(), r.path.as_str()),
                    ("PATCH", format!("/api/v1/nodes/{NODE_NAME}").as_str()),
                    "{r:?}"
                );
                assert_eq!(r.authorization, format!("Bearer {TOKEN}"), "{r:?}");
                assert_eq!(r.content_type, "application/merge-patch+json", "{r:?}");
                r.body["metadata"]["annotations"].clone()
            })
            .collect()
    }
}

/// `dir` bound onto itself and made shared, until dropped.
struct SharedMount(PathBuf);

impl SharedMount {
    fn new(dir: &Path) -> SharedMount {
        use nix::mount::{MsFlags, mount};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind the host root onto itself");
        let shared = SharedMount(dir.to_path_buf());
        mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED, None::<&str>).expect("make it shared");
        shared
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn deploy_file(path: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

type Snapshot = BTreeMap<PathBuf, (u32, Option<(Vec<u8>, Option<(i64, i64)>)>)>;

/// Every file and directory below `root`: its mode, and for files their
/// content and (`with_times`) modification time: a rewrite with the same bytes
/// is a change too.
fn snapshot(root: &Path, with_times: bool) -> Snapshot {
    let mut entries = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.is_dir() {
                pending.push(path);
                entries.insert(relative, (meta.mode(), None));
            } else {
                let content = std::fs::read(&path).unwrap();
                let time = with_times.then(|| (meta.mtime(), meta.mtime_nsec()));
                entries.insert(relative, (meta.mode(), Some((content, time))));
            }
        }
    }
    entries
}
