//! crictl as its README shows it: minimal pod and container files, `runp`,
//! `create`, `start`, `exec -it`, `logs -f`, `port-forward`, `stats`,
//! `inspect`, `stopp`, `rmp`; and pulls from loopback registries that no
//! configuration names.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::crictl::{Crictl, json_file};
use crate::support::image::ImageBuilder;
use crate::support::registry::Registry;

/// The README's pod file, with its log directory in the test's own dir.
fn readme_pod(name: &str, log_directory: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "attempt": 1, "uid": format!("{name}-uid")},
        "log_directory": log_directory,
        "linux": {}
    })
}

/// The README's container file: busybox by its short name, no namespace options.
fn readme_container(name: &str, command: &[&str]) -> Value {
    json!({
        "metadata": {"name": name},
        "image": {"image": "busybox"},
        "command": command,
        "log_path": format!("{name}.0.log"),
        "linux": {}
    })
}

struct Setup {
    crictl: Crictl,
    // Dropped in this order: berth and its pods before the network and registry.
    berth: Berth,
    network: TestNetwork,
    registry: Registry,
}

/// A berth whose `docker.io` is mirrored to a loopback registry, on a bridge
/// network with portmap.
async fn setup() -> Setup {
    let registry = Registry::start().await;
    ImageBuilder::busybox().build().push(&registry, "library/busybox", "latest").await;
    let network = TestNetwork::new();
    let berth = Berth::builder()
        .config(&format!("[registries.\"docker.io\"]\nmirrors = [\"{}\"]\n", registry.url()))
        .cni_conflist(&network.conflist())
        .start()
        .await;
    Setup { crictl: Crictl::for_berth(&berth), berth, network, registry }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn container_state(crictl: &Crictl, id: &str) -> String {
    crictl.json(&["inspect", id])["status"]["state"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_walkthrough() {
    let Setup { crictl, berth, network: _network, registry: _registry } = setup().await;
    let dir = berth.dir().to_path_buf();
    let logs = dir.join("pod-logs");
    std::fs::create_dir_all(&logs).expect("log dir");

    tokio::task::spawn_blocking(move || {
        let pulled = crictl.run(&["pull", "busybox"]);
        assert!(pulled.starts_with("Image is up to date for sha256:"), "{pulled}");
        let images = crictl.run(&["images"]);
        assert!(images.contains("docker.io/library/busybox"), "{images}");

        // runp: a pod without a hostname gets the node's.
        let pod_file = json_file(&dir, "pod-config.json", &readme_pod("nginx-sandbox", &logs.display().to_string()));
        let pod = crictl.run(&["runp", &pod_file]);
        assert_eq!(pod.len(), 64, "{pod}");
        let pods = crictl.run(&["pods"]);
        assert!(pods.contains("nginx-sandbox") && pods.contains("Ready"), "{pods}");
        let node = nix::unistd::gethostname().expect("hostname").to_string_lossy().into_owned();
        let inspected = crictl.json(&["inspectp", &pod]);
        assert_eq!(inspected["status"]["state"], "SANDBOX_READY");

        // create + start: the README's `top` container, then others beside it.
        let top_file = json_file(&dir, "container-config.json", &readme_container("busybox", &["top"]));
        let top = crictl.run(&["create", &pod, &top_file, &pod_file]);
        assert_eq!(container_state(&crictl, &top), "CONTAINER_CREATED");
        let listed = crictl.run(&["ps", "-a"]);
        assert!(listed.contains(&top[..13]) && listed.contains("Created"), "{listed}");
        crictl.run(&["start", &top]);
        assert_eq!(container_state(&crictl, &top), "CONTAINER_RUNNING");
        let inspect = crictl.json(&["inspect", &top]);
        assert!(inspect["info"]["pid"].as_i64().unwrap_or(0) > 0, "{inspect}");
        assert_eq!(inspect["status"]["metadata"]["name"], "busybox");

        // exec -it: on a terminal, as a user types.
        let shown = crictl.on_terminal(&["exec", "-i", "-t", &top, "ls", "/"], b"");
        assert!(shown.contains("bin") && shown.contains("etc"), "{shown}");
        let shown = crictl.on_terminal(&["exec", "-it", &top, "sh"], b"echo typed-$((40+2))\nhostname\nexit 0\n");
        assert!(shown.contains("typed-42"), "{shown}");
        assert!(shown.contains(&node), "the node's hostname in {shown}");

        // port-forward to a server in the pod.
        let web_file = json_file(
            &dir,
            "web.json",
            &readme_container(
                "web",
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && echo served-from-the-pod > /www/index.html && exec httpd -f -p 80 -h /www",
                ],
            ),
        );
        let web = crictl.run(&["create", &pod, &web_file, &pod_file]);
        crictl.run(&["start", &web]);
        let port = free_port();
        let mut forward = crictl.spawn(&["port-forward", &pod, &format!("{port}:80")]);
        let mut forwarding = BufReader::new(forward.stdout());
        let mut line = String::new();
        forwarding.read_line(&mut line).expect("port-forward's first line");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        let page = http_get_when_served(port);
        assert!(page.contains("served-from-the-pod"), "{page}");
        drop(forward);

        // logs -f follows a container to its end.
        let counter_file = json_file(
            &dir,
            "counter.json",
            &readme_container(
                "counter",
                &["sh", "-c", "for i in 0 1 2 3 4 5 6 7 8 9; do echo line-$i; sleep 0.3; done"],
            ),
        );
        let counter = crictl.run(&["create", &pod, &counter_file, &pod_file]);
        crictl.run(&["start", &counter]);
        let followed = crictl.spawn(&["logs", "-f", &counter]).wait(Duration::from_secs(60));
        assert!(followed.status.success(), "{followed:?}");
        let text = String::from_utf8_lossy(&followed.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let expected: Vec<String> = (0..10).map(|i| format!("line-{i}")).collect();
        assert_eq!(lines, expected, "logs -f ends with the container, every line once");

        // stats: the running container with its memory.
        let stats = crictl.json(&["stats", "-o", "json", "--id", &top]);
        let entry = &stats["stats"][0];
        assert_eq!(entry["attributes"]["id"], top.as_str(), "{stats}");
        let working_set: u64 = entry["memory"]["workingSetBytes"]["value"].as_str().unwrap_or("0").parse().unwrap_or(0);
        assert!(working_set > 0, "{stats}");

        // stopp + rmp take the pod and its containers.
        crictl.run(&["stopp", &pod]);
        assert!(crictl.run(&["pods"]).contains("NotReady"));
        crictl.run(&["rmp", &pod]);
        assert_eq!(crictl.run(&["pods", "-q"]), "");
        assert_eq!(crictl.run(&["ps", "-a", "-q"]), "");
    })
    .await
    .expect("the walkthrough");
}

/// A pod that asked for a PID namespace per container, and containers files
/// that name no namespace options (the CRI default, POD): they run, sharing
/// one PID namespace for the pod, as on containerd.
#[tokio::test(flavor = "multi_thread")]
async fn containers_asking_for_the_pod_pid_namespace_share_one() {
    let Setup { crictl, berth, network: _network, registry: _registry } = setup().await;
    let dir = berth.dir().to_path_buf();
    tokio::task::spawn_blocking(move || {
        crictl.run(&["pull", "busybox"]);
        let mut pod = readme_pod("per-container-pid", &dir.display().to_string());
        pod["linux"] = json!({"security_context": {"namespace_options": {"pid": 1}}});
        let pod_file = json_file(&dir, "pod.json", &pod);
        let pod = crictl.run(&["runp", &pod_file]);
        let mut ids = Vec::new();
        for name in ["first", "second"] {
            let file = json_file(
                &dir,
                &format!("{name}.json"),
                &readme_container(name, &["sleep", &format!("{}", 1000 + ids.len())]),
            );
            let id = crictl.run(&["create", &pod, &file, &pod_file]);
            crictl.run(&["start", &id]);
            ids.push(id);
        }
        let seen = crictl.run(&["exec", &ids[1], "ps", "-o", "args"]);
        assert!(seen.contains("sleep 1000") && seen.contains("sleep 1001"), "{seen}");
        let own = crictl.run(&["exec", &ids[0], "cat", "/proc/1/cmdline"]);
        assert!(!own.contains("sleep"), "PID 1 is the pod's infra process, not a container: {own}");
        crictl.run(&["rmp", "--force", &pod]);
    })
    .await
    .expect("the pod");
}

/// `crictl pull` from `127.0.0.1:PORT` and `localhost:PORT` with no registry
/// configured speaks HTTP; with the default turned off, the TLS failure says
/// what went wrong.
#[tokio::test(flavor = "multi_thread")]
async fn loopback_registries_are_plain_http_by_default() {
    let registry = Registry::start().await;
    ImageBuilder::busybox().build().push(&registry, "loop/x", "1").await;
    let berth = Berth::start().await;
    let crictl = Crictl::for_berth(&berth);
    let port = registry.port();
    let strict = Berth::builder().config("[images]\nloopback_plain_http = false\n").start().await;
    let strict_crictl = Crictl::for_berth(&strict);
    tokio::task::spawn_blocking(move || {
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
            let pulled = crictl.run(&["pull", &format!("{host}/loop/x:1")]);
            assert!(pulled.contains("sha256:"), "{pulled}");
        }
        let refused = strict_crictl.output(&["pull", &format!("127.0.0.1:{port}/loop/x:1")]);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("seems to speak plain HTTP"), "{stderr}");
        assert!(stderr.contains("plain_http = true"), "{stderr}");
    })
    .await
    .expect("pulls");
}

/// `GET /` on the forwarded port, once the pod's server answers.
fn http_get_when_served(port: u16) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        })();
        match attempt {
            Ok(reply) if reply.starts_with("HTTP/1.") => return reply,
            _ if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("the forwarded port never served: {other:?}"),
        }
    }
}
