//! CRI stats messages from the domain's usage figures.

use std::collections::HashMap;

use crate::cri::v1 as cri;

use crate::container::{ContainerFilter, ContainerUsage};
use crate::daemon::{MetricDescriptor, MetricKind, PodMetrics, PodUsage, Sample};
use crate::sandbox::SandboxFilter;
use crate::stats::{CgroupUsage, InterfaceUsage};

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn cpu(timestamp: i64, usage: &CgroupUsage, nano_cores: Option<u64>) -> Option<cri::CpuUsage> {
    let total = usage.cpu_ns?;
    Some(cri::CpuUsage {
        timestamp,
        usage_core_nano_seconds: value(total),
        usage_nano_cores: nano_cores.and_then(value),
        // Pressure stall information is not read yet.
        psi: None,
    })
}

fn memory(timestamp: i64, usage: &CgroupUsage) -> Option<cri::MemoryUsage> {
    let m = usage.memory.as_ref()?;
    Some(cri::MemoryUsage {
        timestamp,
        working_set_bytes: value(m.working_set),
        available_bytes: m.available.and_then(value),
        usage_bytes: value(m.usage),
        rss_bytes: value(m.rss),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: None,
    })
}

pub fn container_stats(usage: ContainerUsage) -> cri::ContainerStats {
    let c = &usage.container;
    let swap = usage.cgroup.memory.as_ref().and_then(|m| m.swap_usage).map(|swap| cri::SwapUsage {
        timestamp: usage.timestamp,
        swap_available_bytes: None,
        swap_usage_bytes: value(swap),
    });
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: c.id.clone(),
            metadata: Some(cri::ContainerMetadata { name: c.metadata.name.clone(), attempt: c.metadata.attempt }),
            labels: c.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            annotations: c.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }),
        cpu: cpu(usage.timestamp, &usage.cgroup, usage.nano_cores),
        memory: memory(usage.timestamp, &usage.cgroup),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: usage.timestamp,
            fs_id: Some(cri::FilesystemIdentifier { mountpoint: usage.layer_mountpoint.display().to_string() }),
            used_bytes: value(usage.writable_layer.bytes),
            inodes_used: value(usage.writable_layer.inodes),
        }),
        swap,
        // Block I/O usage is not read yet.
        io: None,
    }
}

fn interface(i: &InterfaceUsage) -> cri::NetworkInterfaceUsage {
    cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    }
}

pub fn pod_stats(usage: PodUsage) -> cri::PodSandboxStats {
    let s = &usage.sandbox;
    let network = (!usage.interfaces.is_empty()).then(|| cri::NetworkUsage {
        timestamp: usage.timestamp,
        // CNI names the pod's interface eth0; without one, the first is the default.
        default_interface: usage
            .interfaces
            .iter()
            .find(|i| i.name == "eth0")
            .or(usage.interfaces.first())
            .map(interface),
        interfaces: usage.interfaces.iter().map(interface).collect(),
    });
    let linux = cri::LinuxPodSandboxStats {
        cpu: cpu(usage.timestamp, &usage.cgroup, usage.nano_cores),
        memory: memory(usage.timestamp, &usage.cgroup),
        network,
        process: usage
            .cgroup
            .processes
            .map(|count| cri::ProcessUsage { timestamp: usage.timestamp, process_count: value(count) }),
        containers: Vec::new(),
        io: None,
    };
    let attributes = cri::PodSandboxAttributes {
        id: s.id.clone(),
        metadata: Some(cri::PodSandboxMetadata {
            name: s.metadata.name.clone(),
            uid: s.metadata.uid.clone(),
            namespace: s.metadata.namespace.clone(),
            attempt: s.metadata.attempt,
        }),
        labels: s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        annotations: s.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let containers = usage.containers.into_iter().map(container_stats).collect();
    cri::PodSandboxStats {
        attributes: Some(attributes),
        linux: Some(cri::LinuxPodSandboxStats { containers, ..linux }),
        windows: None,
    }
}

pub fn container_filter(filter: Option<cri::ContainerStatsFilter>) -> ContainerFilter {
    let Some(f) = filter else { return ContainerFilter::default() };
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state: None,
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        labels: f.label_selector.into_iter().collect(),
    }
}

pub fn pod_filter(filter: Option<cri::PodSandboxStatsFilter>) -> SandboxFilter {
    let Some(f) = filter else { return SandboxFilter::default() };
    let labels: HashMap<String, String> = f.label_selector;
    SandboxFilter { id: (!f.id.is_empty()).then_some(f.id), state: None, labels: labels.into_iter().collect() }
}

pub fn metric_descriptor(d: &MetricDescriptor) -> cri::MetricDescriptor {
    cri::MetricDescriptor {
        name: d.name.to_string(),
        help: d.help.to_string(),
        label_keys: d.labels.iter().map(|label| label.to_string()).collect(),
    }
}

fn metric(sample: Sample) -> cri::Metric {
    let metric_type = match sample.kind {
        MetricKind::Counter => cri::MetricType::Counter,
        MetricKind::Gauge => cri::MetricType::Gauge,
    };
    cri::Metric {
        name: sample.name.to_string(),
        // Zero: gathered live, as the CRI asks.
        timestamp: 0,
        metric_type: metric_type.into(),
        label_values: sample.labels,
        value: value(sample.value),
    }
}

pub fn pod_metrics(pod: PodMetrics) -> cri::PodSandboxMetrics {
    cri::PodSandboxMetrics {
        pod_sandbox_id: pod.pod_id,
        metrics: pod.samples.into_iter().map(metric).collect(),
        container_metrics: pod
            .containers
            .into_iter()
            .map(|c| cri::ContainerMetrics {
                container_id: c.container_id,
                metrics: c.samples.into_iter().map(metric).collect(),
            })
            .collect(),
    }
}
