//! berth's own Prometheus metrics: per-RPC latency, per-step latency, image pulls,
//! and what runs.
//! Served by `endpoint` when `metrics.address` is set; RPC latencies are
//! recorded either way (an observation costs a few atomic adds).

mod endpoint;
mod steps;

pub use endpoint::{EndpointError, Served};
pub use steps::{RPC_SPAN, STEP_TARGET, StepTimer, step_timer};

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::daemon::Daemon;

/// Upper bounds of the RPC latency buckets, seconds: from a cached status call
/// to a pull of a large image.
const RPC_BUCKETS: [f64; 17] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

type RpcLabels = [(&'static str, String); 2];

pub struct Metrics {
    registry: Registry,
    rpc_durations: Family<RpcLabels, Histogram>,
}

impl Metrics {
    pub fn new(daemon: Arc<Daemon>) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let rpc_durations =
            Family::<RpcLabels, Histogram>::new_with_constructor(|| Histogram::new(RPC_BUCKETS.iter().copied()));
        // The encoder ends every help text with a period of its own.
        registry.register(
            "berth_grpc_request_duration_seconds",
            "Time berth took to answer CRI calls, by method and gRPC code",
            rpc_durations.clone(),
        );
        registry.register(
            "berth_step_duration_seconds",
            "Time each step of a CRI call took (a CNI plugin, a runtime command, a store commit), by call and step",
            steps::STEP_DURATIONS.clone(),
        );
        registry.register_collector(Box::new(DaemonCollector(daemon)));
        Arc::new(Metrics { registry, rpc_durations })
    }

    /// Records one answered CRI call; `code` is the gRPC code's name (`OK`, `NotFound`).
    pub fn observe_rpc(&self, method: &str, code: &str, seconds: f64) {
        let labels = [("method", method.to_string()), ("code", code.to_string())];
        self.rpc_durations.get_or_create(&labels).observe(seconds);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Reads the daemon's figures at each scrape, so gauges are never stale.
struct DaemonCollector(Arc<Daemon>);

impl std::fmt::Debug for DaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DaemonCollector")
    }
}

impl Collector for DaemonCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = match self.0.figures() {
            Ok(figures) => figures,
            Err(e) => {
                // A scrape with fewer series beats a failed scrape.
                tracing::warn!(error = %e, "metrics: cannot read the daemon's figures");
                return Ok(());
            }
        };
        let pulls = [("success", figures.pulls.succeeded), ("failure", figures.pulls.failed)];
        let mut family = encoder.encode_descriptor(
            "berth_image_pulls",
            "Image pulls answered, by result",
            None,
            MetricType::Counter,
        )?;
        for (result, count) in pulls {
            ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
        }
        let bytes = ConstCounter::new(figures.pulls.bytes);
        bytes.encode(encoder.encode_descriptor(
            "berth_image_pull_bytes",
            "Compressed layer bytes received from registries",
            None,
            bytes.metric_type(),
        )?)?;

        let pods = [("ready", figures.pods_ready), ("notready", figures.pods_not_ready)];
        let mut family =
            encoder.encode_descriptor("berth_pod_sandboxes", "Pod sandboxes, by state", None, MetricType::Gauge)?;
        for (state, count) in pods {
            ConstGauge::new(count as i64).encode(family.encode_family(&[("state", state)])?)?;
        }
        let containers = [
            ("created", figures.containers_created),
            ("running", figures.containers_running),
            ("exited", figures.containers_exited),
        ];
        let mut family =
            encoder.encode_descriptor("berth_containers", "Containers, by state", None, MetricType::Gauge)?;
        for (state, count) in containers {
            ConstGauge::new(count as i64).encode(family.encode_family(&[("state", state)])?)?;
        }
        let monitors = ConstGauge::new(figures.monitors as i64);
        monitors.encode(encoder.encode_descriptor(
            "berth_monitors",
            "Container monitor processes running",
            None,
            monitors.metric_type(),
        )?)?;
        Ok(())
    }
}
