//! ListMetricDescriptors and ListPodSandboxMetrics (the cadvisor-style metrics
//! kubelet serves when it takes stats from the runtime), and berth's own
//! Prometheus endpoint, checked with the official OpenMetrics parser.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::cri::v1::{
    ContainerStatusRequest, ListMetricDescriptorsRequest, ListPodSandboxMetricsRequest, Metric, MetricType,
    PodSandboxMetrics, PodSandboxStatusRequest, VersionRequest,
};
use serde_json::Value;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, pod_network_options, security_context, sh, wait_for_line};

const WAIT: Duration = Duration::from_secs(60);

async fn pod_metrics(bed: &Bed, pod: &str) -> PodSandboxMetrics {
    let all = bed.berth.runtime().await.list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {}).await;
    all.unwrap().into_inner().pod_metrics.into_iter().find(|p| p.pod_sandbox_id == pod).expect("the pod's metrics")
}

fn value_of(metrics: &[Metric], name: &str, labels: &[&str]) -> Option<u64> {
    metrics
        .iter()
        .find(|m| m.name == name && labels.iter().all(|l| m.label_values.iter().any(|v| v == l)))
        .and_then(|m| m.value.as_ref())
        .map(|v| v.value)
}

#[tokio::test]
async fn pod_metrics_are_described_and_follow_cpu_memory_and_network() {
    let network = TestNetwork::new();
    let bed = Bed::with(Berth::builder().cni_conflist(&network.conflist())).await;
    let pod = bed.pod_with(crate::support::pods::pod_config("metrics"), "").await.unwrap();
    let status = PodSandboxStatusRequest { pod_sandbox_id: pod.id.clone(), verbose: false };
    let status = bed.berth.runtime().await.pod_sandbox_status(status).await.unwrap().into_inner();
    let ip = status.status.unwrap().network.expect("a pod IP").ip;
    let mut server = sh("server", &bed.busybox, "echo ready; while :; do nc -l -p 8080 > /dev/null; done");
    security_context(&mut server).namespace_options = Some(pod_network_options());
    let server_log = pod.log_path(&server);
    let server = bed.run(&pod, server).await;
    let mut busy = sh("busy", &bed.busybox, "while :; do :; done");
    // Half a CPU: a quota for container_spec_cpu_quota, still a second of CPU in two.
    let limits = berth::cri::v1::LinuxContainerResources { cpu_period: 100_000, cpu_quota: 50_000, ..Default::default() };
    busy.linux.get_or_insert_with(Default::default).resources = Some(limits);
    let busy = bed.run(&pod, busy).await;
    wait_for_line(&server_log, "ready").await;

    let descriptors = bed.berth.runtime().await.list_metric_descriptors(ListMetricDescriptorsRequest {}).await;
    let descriptors = descriptors.unwrap().into_inner().descriptors;
    let described: HashMap<&str, usize> = descriptors.iter().map(|d| (d.name.as_str(), d.label_keys.len())).collect();
    for wanted in [
        "container_cpu_usage_seconds_total",
        "container_memory_working_set_bytes",
        "container_network_receive_bytes_total",
        "container_fs_usage_bytes",
        "container_processes",
        "container_spec_cpu_quota",
        "container_spec_memory_reservation_limit_bytes",
        "container_ulimits_soft",
    ] {
        assert!(described.contains_key(wanted), "{wanted} is described: {descriptors:?}");
    }

    // 64 KiB into the pod through the bridge.
    crate::support::containers::send_when_listening(&ip, 8080, &[b'x'; 65536]).await;
    let deadline = Instant::now() + WAIT;
    // Until the busy loop has a whole second of CPU (the CRI's integer values
    // carry seconds as whole seconds) and the traffic crossed eth0.
    let metrics = loop {
        let metrics = pod_metrics(&bed, &pod.id).await;
        let busy_cpu = metrics
            .container_metrics
            .iter()
            .find(|c| c.container_id == busy)
            .and_then(|c| value_of(&c.metrics, "container_cpu_usage_seconds_total", &["total"]));
        let rx = value_of(&metrics.metrics, "container_network_receive_bytes_total", &["eth0"]);
        if busy_cpu >= Some(1) && rx >= Some(65536) {
            break metrics;
        }
        assert!(Instant::now() < deadline, "busy CPU {busy_cpu:?} s, eth0 rx {rx:?} bytes: {metrics:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    let all = metrics.metrics.iter().chain(metrics.container_metrics.iter().flat_map(|c| c.metrics.iter()));
    for metric in all {
        let keys = described.get(metric.name.as_str()).unwrap_or_else(|| panic!("{} is not described", metric.name));
        assert_eq!(metric.label_values.len(), *keys, "{metric:?}");
        assert_eq!(metric.timestamp, 0, "gathered live");
    }
    assert_eq!(&metrics.metrics[0].label_values[..2], [pod.id.as_str(), "POD"]);
    let counter = metrics.metrics.iter().find(|m| m.name == "container_network_receive_bytes_total").unwrap();
    assert_eq!(counter.metric_type, MetricType::Counter as i32);

    let of =
        |id: &str| metrics.container_metrics.iter().find(|c| c.container_id == id).expect("listed").metrics.clone();
    let (busy_metrics, server_metrics) = (of(&busy), of(&server));
    assert_eq!(&busy_metrics[0].label_values[..2], [busy.as_str(), "busy"]);
    let gauge = busy_metrics.iter().find(|m| m.name == "container_memory_working_set_bytes").expect("working set");
    assert_eq!(gauge.metric_type, MetricType::Gauge as i32);
    assert!(gauge.value.as_ref().unwrap().value > 0);
    let idle_cpu = value_of(&server_metrics, "container_cpu_usage_seconds_total", &["total"]);
    assert!(idle_cpu.is_some_and(|seconds| seconds < 1), "nc sleeps: {idle_cpu:?}");
    assert!(value_of(&busy_metrics, "container_processes", &[]) >= Some(1));
    assert!(value_of(&busy_metrics, "container_threads", &[]) >= Some(1));
    assert!(value_of(&busy_metrics, "container_file_descriptors", &[]) >= Some(3), "sh's stdio at least");
    assert!(value_of(&busy_metrics, "container_fs_usage_bytes", &[]).is_some());
    assert!(value_of(&busy_metrics, "container_fs_limit_bytes", &[]) > Some(0));
    assert_eq!(value_of(&busy_metrics, "container_spec_cpu_quota", &[]), Some(50_000));
    assert_eq!(value_of(&server_metrics, "container_spec_cpu_quota", &[]), None, "no quota, no sample (cadvisor's rule)");
    assert_eq!(value_of(&busy_metrics, "container_spec_memory_reservation_limit_bytes", &[]), Some(0));
    assert!(value_of(&busy_metrics, "container_ulimits_soft", &["max_open_files"]) > Some(0));
    let started = value_of(&busy_metrics, "container_start_time_seconds", &[]).expect("a start time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(started <= now && started + 600 > now, "started at {started}, now {now}");
}

/// The samples of an OpenMetrics text, as Python's prometheus_client parses
/// them: (sample name, labels, value).
fn parse_openmetrics(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    const PARSER: &str = "import json, sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        samples = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
        print(json.dumps(samples))\n";
    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's python3 (hack/setup.sh installs python3-prometheus-client)");
    python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(output.status.success(), "not OpenMetrics text: {}\n{text}", String::from_utf8_lossy(&output.stderr));
    let samples: Vec<(String, HashMap<String, String>, Value)> = serde_json::from_slice(&output.stdout).unwrap();
    samples.into_iter().map(|(name, labels, value)| (name, labels, value.as_f64().unwrap_or(f64::NAN))).collect()
}

fn metrics_address(berth: &Berth) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = berth.log();
        let line = log.lines().find(|line| line.contains("metrics endpoint serving")).map(without_colours);
        if let Some(address) = line.and_then(|l| l.split("address=").nth(1).map(|a| a.trim().to_string())) {
            return address;
        }
        assert!(Instant::now() < deadline, "berth never said where its metrics are: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A log line without its ANSI colour sequences (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test]
async fn metrics_endpoint_serves_openmetrics_with_rpcs_pulls_and_what_runs() {
    let bed = Bed::with(Berth::builder().config("[metrics]\naddress = \"127.0.0.1:0\"")).await;
    let pod = bed.pod("scraped").await;
    let running = bed.run(&pod, sh("sleeper", &bed.busybox, "sleep 1000")).await;
    let exited = bed.run_to_exit(&pod, sh("done", &bed.busybox, "true")).await;
    let mut runtime = bed.berth.runtime().await;
    runtime.version(VersionRequest::default()).await.unwrap();
    let missing = ContainerStatusRequest { container_id: "f".repeat(64), verbose: false };
    assert!(runtime.container_status(missing).await.is_err());

    let address = metrics_address(&bed.berth);
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let samples = parse_openmetrics(&response.text().await.unwrap());
    let value = |name: &str, labels: &[(&str, &str)]| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, value)| *value)
    };

    let count = "berth_grpc_request_duration_seconds_count";
    assert_eq!(value(count, &[("method", "Version"), ("code", "OK")]), Some(1.0));
    assert_eq!(value(count, &[("method", "ContainerStatus"), ("code", "NotFound")]), Some(1.0));
    assert!(value(count, &[("method", "PullImage"), ("code", "OK")]) >= Some(1.0));
    assert!(value("berth_grpc_request_duration_seconds_bucket", &[("method", "Version"), ("le", "+Inf")]) == Some(1.0));
    assert_eq!(value("berth_image_pulls_total", &[("result", "success")]), Some(1.0));
    assert!(value("berth_image_pull_bytes_total", &[]) > Some(0.0), "the busybox layer came over the wire");
    assert_eq!(value("berth_pod_sandboxes", &[("state", "ready")]), Some(1.0));
    assert_eq!(value("berth_containers", &[("state", "running")]), Some(1.0));
    assert_eq!(value("berth_containers", &[("state", "exited")]), Some(1.0));
    assert_eq!(value("berth_monitors", &[]), Some(1.0), "the running container's monitor only");
    drop((running, exited));

    let missing = reqwest::get(format!("http://{address}/other")).await.unwrap();
    assert_eq!(missing.status(), 404);

    // A connection that never sends its request is closed, not held forever.
    let mut silent = tokio::net::TcpStream::connect(&address).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut rest)).await;
    assert!(closed.is_ok(), "the endpoint held a silent connection open");
}
