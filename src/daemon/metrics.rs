//! `ListMetricDescriptors` and `ListPodSandboxMetrics`: the cadvisor-named
//! metrics kubelet serves on `/metrics/cadvisor` when it takes pod and container
//! stats from the runtime instead of cadvisor.
//!
//! Every metric carries cadvisor's `id`, `name` and `image` labels (a container's
//! ID, name and image; a pod's ID, `POD` and no image), then its own. The CRI
//! carries values as integers and kubelet exposes them as they come, so a
//! `_seconds` metric is in whole seconds, as cri-o sends it: scaling nanoseconds
//! into a seconds-named metric would be a billion times off for every reader.

use std::path::Path;

use super::{Daemon, PodError, PodUsage};
use crate::container::ContainerUsage;
use crate::sandbox::SandboxFilter;
use crate::stats::{CgroupDetail, cgroup_detail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDescriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    /// Label names, in the order of every sample's values.
    pub labels: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: Vec<String>,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMetrics {
    pub container_id: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub pod_id: String,
    /// The pod's own metrics: its network.
    pub samples: Vec<Sample>,
    pub containers: Vec<ContainerMetrics>,
}

const BASE: &[&str] = &["id", "name", "image"];
const WITH_CPU: &[&str] = &["id", "name", "image", "cpu"];
const WITH_DEVICE: &[&str] = &["id", "name", "image", "device"];
const WITH_INTERFACE: &[&str] = &["id", "name", "image", "interface"];
const WITH_FAILURE: &[&str] = &["id", "name", "image", "failure_type", "scope"];
const WITH_ULIMIT: &[&str] = &["id", "name", "image", "ulimit"];
const WITH_DEVICE_OPERATION: &[&str] = &["id", "name", "image", "device", "major", "minor", "operation"];

const fn counter(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> MetricDescriptor {
    MetricDescriptor { name, help, kind: MetricKind::Counter, labels }
}

const fn gauge(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> MetricDescriptor {
    MetricDescriptor { name, help, kind: MetricKind::Gauge, labels }
}

const CPU_USAGE: MetricDescriptor =
    counter("container_cpu_usage_seconds_total", "Cumulative CPU time consumed in seconds.", WITH_CPU);
const CPU_USER: MetricDescriptor =
    counter("container_cpu_user_seconds_total", "Cumulative user CPU time consumed in seconds.", BASE);
const CPU_SYSTEM: MetricDescriptor =
    counter("container_cpu_system_seconds_total", "Cumulative system CPU time consumed in seconds.", BASE);
const CFS_PERIODS: MetricDescriptor =
    counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", BASE);
const CFS_THROTTLED_PERIODS: MetricDescriptor =
    counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", BASE);
const CFS_THROTTLED_SECONDS: MetricDescriptor =
    counter("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", BASE);
const MEMORY_USAGE: MetricDescriptor = gauge(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, including all memory regardless of when it was accessed.",
    BASE,
);
const MEMORY_WORKING_SET: MetricDescriptor =
    gauge("container_memory_working_set_bytes", "Current working set in bytes.", BASE);
const MEMORY_RSS: MetricDescriptor = gauge("container_memory_rss", "Size of RSS in bytes.", BASE);
const MEMORY_CACHE: MetricDescriptor = gauge("container_memory_cache", "Number of bytes of page cache memory.", BASE);
const MEMORY_MAPPED_FILE: MetricDescriptor =
    gauge("container_memory_mapped_file", "Size of memory mapped files in bytes.", BASE);
const MEMORY_SWAP: MetricDescriptor = gauge("container_memory_swap", "Container swap usage in bytes.", BASE);
const MEMORY_MAX_USAGE: MetricDescriptor =
    gauge("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", BASE);
const MEMORY_FAILCNT: MetricDescriptor =
    counter("container_memory_failcnt", "Number of memory usage hits limits.", BASE);
const MEMORY_FAILURES: MetricDescriptor =
    counter("container_memory_failures_total", "Cumulative count of memory allocation failures.", WITH_FAILURE);
const OOM_EVENTS: MetricDescriptor =
    counter("container_oom_events_total", "Count of out of memory events observed for the container.", BASE);
const NETWORK_RX_BYTES: MetricDescriptor =
    counter("container_network_receive_bytes_total", "Cumulative count of bytes received.", WITH_INTERFACE);
const NETWORK_RX_PACKETS: MetricDescriptor =
    counter("container_network_receive_packets_total", "Cumulative count of packets received.", WITH_INTERFACE);
const NETWORK_RX_DROPPED: MetricDescriptor = counter(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving.",
    WITH_INTERFACE,
);
const NETWORK_RX_ERRORS: MetricDescriptor = counter(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving.",
    WITH_INTERFACE,
);
const NETWORK_TX_BYTES: MetricDescriptor =
    counter("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", WITH_INTERFACE);
const NETWORK_TX_PACKETS: MetricDescriptor =
    counter("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", WITH_INTERFACE);
const NETWORK_TX_DROPPED: MetricDescriptor = counter(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting.",
    WITH_INTERFACE,
);
const NETWORK_TX_ERRORS: MetricDescriptor = counter(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting.",
    WITH_INTERFACE,
);
const FS_USAGE: MetricDescriptor = gauge(
    "container_fs_usage_bytes",
    "Number of bytes that are consumed by the container on this filesystem.",
    WITH_DEVICE,
);
const FS_LIMIT: MetricDescriptor = gauge(
    "container_fs_limit_bytes",
    "Number of bytes that can be consumed by the container on this filesystem.",
    WITH_DEVICE,
);
const FS_INODES_TOTAL: MetricDescriptor = gauge("container_fs_inodes_total", "Number of Inodes.", WITH_DEVICE);
const FS_INODES_FREE: MetricDescriptor = gauge("container_fs_inodes_free", "Number of available Inodes.", WITH_DEVICE);
const PROCESSES: MetricDescriptor =
    gauge("container_processes", "Number of processes running inside the container.", BASE);
const THREADS: MetricDescriptor = gauge("container_threads", "Number of threads running inside the container.", BASE);
const THREADS_MAX: MetricDescriptor = gauge(
    "container_threads_max",
    "Maximum number of threads allowed inside the container, infinity if value is zero.",
    BASE,
);
const FILE_DESCRIPTORS: MetricDescriptor =
    gauge("container_file_descriptors", "Number of open file descriptors for the container.", BASE);
const START_TIME: MetricDescriptor =
    gauge("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", BASE);
const LAST_SEEN: MetricDescriptor =
    gauge("container_last_seen", "Last time a container was seen by the exporter", BASE);
const MEMORY_KERNEL: MetricDescriptor =
    gauge("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", BASE);
const SOCKETS: MetricDescriptor = gauge("container_sockets", "Number of open sockets for the container.", BASE);
const SPEC_CPU_PERIOD: MetricDescriptor = gauge("container_spec_cpu_period", "CPU period of the container.", BASE);
const SPEC_CPU_SHARES: MetricDescriptor = gauge("container_spec_cpu_shares", "CPU share of the container.", BASE);
const SPEC_CPU_QUOTA: MetricDescriptor = gauge("container_spec_cpu_quota", "CPU quota of the container.", BASE);
const SPEC_MEMORY_RESERVATION: MetricDescriptor =
    gauge("container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", BASE);
const ULIMITS_SOFT: MetricDescriptor = gauge(
    "container_ulimits_soft",
    "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice",
    WITH_ULIMIT,
);
const SPEC_MEMORY_LIMIT: MetricDescriptor =
    gauge("container_spec_memory_limit_bytes", "Memory limit for the container.", BASE);
const SPEC_MEMORY_SWAP_LIMIT: MetricDescriptor =
    gauge("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", BASE);
const BLKIO_DEVICE_USAGE: MetricDescriptor =
    counter("container_blkio_device_usage_total", "Blkio Device bytes usage", WITH_DEVICE_OPERATION);
const FS_READS_BYTES: MetricDescriptor =
    counter("container_fs_reads_bytes_total", "Cumulative count of bytes read", WITH_DEVICE);
const FS_READS: MetricDescriptor =
    counter("container_fs_reads_total", "Cumulative count of reads completed", WITH_DEVICE);
const FS_WRITES_BYTES: MetricDescriptor =
    counter("container_fs_writes_bytes_total", "Cumulative count of bytes written", WITH_DEVICE);
const FS_WRITES: MetricDescriptor =
    counter("container_fs_writes_total", "Cumulative count of writes completed", WITH_DEVICE);

/// Every metric `ListPodSandboxMetrics` may send; kubelet drops any other.
pub const DESCRIPTORS: &[MetricDescriptor] = &[
    CPU_USAGE,
    CPU_USER,
    CPU_SYSTEM,
    CFS_PERIODS,
    CFS_THROTTLED_PERIODS,
    CFS_THROTTLED_SECONDS,
    MEMORY_USAGE,
    MEMORY_WORKING_SET,
    MEMORY_RSS,
    MEMORY_CACHE,
    MEMORY_MAPPED_FILE,
    MEMORY_SWAP,
    MEMORY_MAX_USAGE,
    MEMORY_FAILCNT,
    MEMORY_FAILURES,
    OOM_EVENTS,
    NETWORK_RX_BYTES,
    NETWORK_RX_PACKETS,
    NETWORK_RX_DROPPED,
    NETWORK_RX_ERRORS,
    NETWORK_TX_BYTES,
    NETWORK_TX_PACKETS,
    NETWORK_TX_DROPPED,
    NETWORK_TX_ERRORS,
    FS_USAGE,
    FS_LIMIT,
    FS_INODES_TOTAL,
    FS_INODES_FREE,
    PROCESSES,
    THREADS,
    THREADS_MAX,
    FILE_DESCRIPTORS,
    START_TIME,
    LAST_SEEN,
    MEMORY_KERNEL,
    SOCKETS,
    SPEC_CPU_PERIOD,
    SPEC_CPU_SHARES,
    SPEC_CPU_QUOTA,
    SPEC_MEMORY_LIMIT,
    SPEC_MEMORY_RESERVATION,
    SPEC_MEMORY_SWAP_LIMIT,
    BLKIO_DEVICE_USAGE,
    FS_READS_BYTES,
    FS_READS,
    FS_WRITES_BYTES,
    FS_WRITES,
    ULIMITS_SOFT,
];

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The filesystem the writable layers are on, as statvfs sees it.
#[derive(Debug, Clone, Copy, Default)]
struct LayerFilesystem {
    bytes: u64,
    inodes: u64,
    inodes_free: u64,
}

impl LayerFilesystem {
    fn of(path: &Path) -> Option<LayerFilesystem> {
        let fs = nix::sys::statvfs::statvfs(path).ok()?;
        let fragment = fs.fragment_size() as u64;
        Some(LayerFilesystem {
            bytes: (fs.blocks() as u64).saturating_mul(fragment),
            inodes: fs.files() as u64,
            inodes_free: fs.files_available() as u64,
        })
    }
}

/// Samples sharing one object's base label values.
struct Samples {
    base: [String; 3],
    out: Vec<Sample>,
}

impl Samples {
    fn new(id: &str, name: &str, image: &str) -> Samples {
        Samples { base: [id.to_string(), name.to_string(), image.to_string()], out: Vec::new() }
    }

    /// Adds a sample when the value was read; `extra` fills the labels after the base ones.
    fn add(&mut self, metric: MetricDescriptor, extra: &[&str], value: Option<u64>) {
        let Some(value) = value else { return };
        let mut labels = self.base.to_vec();
        labels.extend(extra.iter().map(|label| label.to_string()));
        debug_assert_eq!(labels.len(), metric.labels.len(), "{} label values", metric.name);
        self.out.push(Sample { name: metric.name, kind: metric.kind, labels, value });
    }
}

impl Daemon {
    pub fn metric_descriptors(&self) -> &'static [MetricDescriptor] {
        DESCRIPTORS
    }

    /// The metrics of every ready pod and its running containers.
    pub fn list_pod_metrics(&self) -> Result<Vec<PodMetrics>, PodError> {
        let pods = self.list_pod_stats(&SandboxFilter::default())?;
        let filesystem = LayerFilesystem::of(&self.config.state_root);
        let now = crate::time::now_nanos();
        Ok(pods.into_iter().map(|pod| self.pod_metrics(pod, filesystem, now)).collect())
    }

    fn pod_metrics(&self, pod: PodUsage, filesystem: Option<LayerFilesystem>, now: i64) -> PodMetrics {
        let mut samples = Samples::new(&pod.sandbox.id, "POD", "");
        for i in &pod.interfaces {
            let name = [i.name.as_str()];
            samples.add(NETWORK_RX_BYTES, &name, Some(i.rx_bytes));
            samples.add(NETWORK_RX_PACKETS, &name, Some(i.rx_packets));
            samples.add(NETWORK_RX_DROPPED, &name, Some(i.rx_dropped));
            samples.add(NETWORK_RX_ERRORS, &name, Some(i.rx_errors));
            samples.add(NETWORK_TX_BYTES, &name, Some(i.tx_bytes));
            samples.add(NETWORK_TX_PACKETS, &name, Some(i.tx_packets));
            samples.add(NETWORK_TX_DROPPED, &name, Some(i.tx_dropped));
            samples.add(NETWORK_TX_ERRORS, &name, Some(i.tx_errors));
        }
        let containers = pod
            .containers
            .iter()
            .map(|usage| {
                let detail = if usage.container.cgroup.is_empty() {
                    CgroupDetail::default()
                } else {
                    self.hierarchy.read_detail(&usage.container.cgroup)
                };
                ContainerMetrics {
                    container_id: usage.container.id.clone(),
                    samples: container_samples(usage, &detail, filesystem, now, cgroup_detail::block_device_name),
                }
            })
            .collect();
        PodMetrics { pod_id: pod.sandbox.id, samples: samples.out, containers }
    }
}

/// The samples of one container; `now` (Unix nanoseconds) is when it was seen,
/// `device_name` names a block device by its numbers.
fn container_samples(
    usage: &ContainerUsage,
    detail: &CgroupDetail,
    filesystem: Option<LayerFilesystem>,
    now: i64,
    device_name: impl Fn(u64, u64) -> String,
) -> Vec<Sample> {
    let c = &usage.container;
    let mut samples = Samples::new(&c.id, &c.metadata.name, &c.image.requested);
    let seconds = |ns: Option<u64>| ns.map(|ns| ns / NANOS_PER_SECOND);

    samples.add(CPU_USAGE, &["total"], seconds(usage.cgroup.cpu_ns));
    samples.add(CPU_USER, &[], seconds(detail.cpu_user_ns));
    samples.add(CPU_SYSTEM, &[], seconds(detail.cpu_system_ns));
    samples.add(CFS_PERIODS, &[], detail.cfs_periods);
    samples.add(CFS_THROTTLED_PERIODS, &[], detail.cfs_throttled_periods);
    samples.add(CFS_THROTTLED_SECONDS, &[], seconds(detail.cfs_throttled_ns));

    if let Some(memory) = &usage.cgroup.memory {
        samples.add(MEMORY_USAGE, &[], Some(memory.usage));
        samples.add(MEMORY_WORKING_SET, &[], Some(memory.working_set));
        samples.add(MEMORY_RSS, &[], Some(memory.rss));
        samples.add(MEMORY_SWAP, &[], memory.swap_usage);
        samples.add(MEMORY_FAILURES, &["pgfault", "container"], Some(memory.page_faults));
        samples.add(MEMORY_FAILURES, &["pgmajfault", "container"], Some(memory.major_page_faults));
    }
    samples.add(MEMORY_CACHE, &[], detail.memory_cache);
    samples.add(MEMORY_MAPPED_FILE, &[], detail.memory_mapped_file);
    samples.add(MEMORY_MAX_USAGE, &[], detail.memory_max_usage);
    samples.add(MEMORY_FAILCNT, &[], detail.memory_failcnt);
    samples.add(OOM_EVENTS, &[], detail.oom_kills);
    samples.add(MEMORY_KERNEL, &[], detail.memory_kernel);

    samples.add(SPEC_CPU_PERIOD, &[], detail.cpu_period_us);
    samples.add(SPEC_CPU_SHARES, &[], detail.cpu_shares);
    samples.add(SPEC_CPU_QUOTA, &[], detail.cpu_quota_us);
    samples.add(SPEC_MEMORY_LIMIT, &[], detail.memory_limit);
    samples.add(SPEC_MEMORY_RESERVATION, &[], detail.memory_reservation);
    samples.add(SPEC_MEMORY_SWAP_LIMIT, &[], detail.memory_swap_limit);

    for io in &detail.io {
        let device = device_name(io.major, io.minor);
        let (major, minor) = (io.major.to_string(), io.minor.to_string());
        let labels = |operation| [device.as_str(), major.as_str(), minor.as_str(), operation];
        samples.add(BLKIO_DEVICE_USAGE, &labels("Read"), Some(io.read_bytes));
        samples.add(BLKIO_DEVICE_USAGE, &labels("Write"), Some(io.write_bytes));
        samples.add(FS_READS_BYTES, &[device.as_str()], Some(io.read_bytes));
        samples.add(FS_READS, &[device.as_str()], Some(io.reads));
        samples.add(FS_WRITES_BYTES, &[device.as_str()], Some(io.write_bytes));
        samples.add(FS_WRITES, &[device.as_str()], Some(io.writes));
    }

    let device = usage.layer_mountpoint.display().to_string();
    let device = [device.as_str()];
    samples.add(FS_USAGE, &device, Some(usage.writable_layer.bytes));
    if let Some(fs) = filesystem {
        samples.add(FS_LIMIT, &device, Some(fs.bytes));
        samples.add(FS_INODES_TOTAL, &device, Some(fs.inodes));
        samples.add(FS_INODES_FREE, &device, Some(fs.inodes_free));
    }

    samples.add(PROCESSES, &[], usage.cgroup.processes);
    samples.add(THREADS, &[], detail.threads);
    // cadvisor's convention: zero is no limit.
    samples.add(THREADS_MAX, &[], Some(detail.threads_max.unwrap_or(0)));
    let descriptors = cgroup_detail::open_descriptors(&detail.pids);
    samples.add(FILE_DESCRIPTORS, &[], Some(descriptors.files));
    samples.add(SOCKETS, &[], Some(descriptors.sockets));
    samples.add(ULIMITS_SOFT, &["max_open_files"], cgroup_detail::soft_open_files_limit(c.pid));
    let started = u64::try_from(c.started_at).ok().filter(|at| *at > 0);
    samples.add(START_TIME, &[], seconds(started));
    samples.add(LAST_SEEN, &[], seconds(u64::try_from(now).ok()));
    samples.out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::container::{ContainerRecord, ImageUsed};
    use crate::images::snapshots::Usage;
    use crate::stats::{CgroupUsage, MemoryFigures};

    #[test]
    fn descriptor_names_are_unique_and_labels_start_with_the_base() {
        let mut names = HashSet::new();
        for d in DESCRIPTORS {
            assert!(names.insert(d.name), "{} twice", d.name);
            assert_eq!(&d.labels[..3], BASE, "{}", d.name);
            // cadvisor's one gauge with a counter's suffix: the filesystem's inode count.
            let counter_name =
                (d.name.ends_with("_total") && d.name != "container_fs_inodes_total") || d.name.ends_with("failcnt");
            assert_eq!(d.kind == MetricKind::Counter, counter_name, "{}", d.name);
        }
    }

    #[test]
    fn container_samples_match_their_descriptors_in_seconds() {
        let config = crate::cri::v1::ContainerConfig {
            metadata: Some(crate::cri::v1::ContainerMetadata { name: "web".into(), attempt: 0 }),
            ..Default::default()
        };
        let image = ImageUsed { requested: "busybox".into(), ..Default::default() };
        let mut container = ContainerRecord::new("c1".into(), "pod1".into(), &config, image, "runc".into(), None, 1, 2);
        container.started_at = 1_700_000_000_900_000_000;
        let usage = ContainerUsage {
            container,
            timestamp: 0,
            cgroup: CgroupUsage {
                cpu_ns: Some(2_999_999_999),
                memory: Some(MemoryFigures { usage: 100, working_set: 60, ..Default::default() }),
                processes: Some(1),
            },
            nano_cores: None,
            writable_layer: Usage { bytes: 4096, inodes: 3 },
            layer_mountpoint: "/var/lib/berth".into(),
        };
        let detail = CgroupDetail {
            cpu_user_ns: Some(1_000_000_000),
            oom_kills: Some(1),
            memory_limit: Some(64 << 20),
            io: vec![crate::stats::cgroup_detail::DeviceIo {
                major: 8,
                minor: 0,
                read_bytes: 512,
                ..Default::default()
            }],
            ..Default::default()
        };
        let now = 1_700_000_100_500_000_000;
        let samples = container_samples(&usage, &detail, Some(LayerFilesystem::default()), now, |major, minor| {
            format!("/dev/test{major}-{minor}")
        });

        let by_name: std::collections::HashMap<&str, &MetricDescriptor> =
            DESCRIPTORS.iter().map(|d| (d.name, d)).collect();
        for sample in &samples {
            let descriptor = by_name.get(sample.name).expect("every sample is described");
            assert_eq!(sample.labels.len(), descriptor.labels.len(), "{}", sample.name);
            assert_eq!(sample.kind, descriptor.kind);
            assert_eq!(&sample.labels[..3], ["c1", "web", "busybox"]);
        }
        let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
        assert_eq!(value("container_cpu_usage_seconds_total"), Some(2), "whole seconds, rounded down");
        assert_eq!(value("container_cpu_user_seconds_total"), Some(1));
        assert_eq!(value("container_cpu_system_seconds_total"), None, "not read, not sent");
        assert_eq!(value("container_memory_working_set_bytes"), Some(60));
        assert_eq!(value("container_fs_usage_bytes"), Some(4096));
        assert_eq!(value("container_oom_events_total"), Some(1));
        assert_eq!(value("container_start_time_seconds"), Some(1_700_000_000));
        assert_eq!(value("container_last_seen"), Some(1_700_000_100));
        assert_eq!(value("container_spec_memory_limit_bytes"), Some(64 << 20));
        assert_eq!(value("container_fs_reads_bytes_total"), Some(512));
        let read = samples.iter().find(|s| s.name == "container_blkio_device_usage_total").expect("blkio usage");
        assert_eq!(read.labels[3..], ["/dev/test8-0", "8", "0", "Read"]);
    }
}
