//! The figures of a cgroup that only the cadvisor-style metrics report (CPU
//! split and throttling, page cache, kernel memory, memory failures and OOM
//! kills, threads, open files and sockets, block I/O per device, the limits
//! cadvisor reports as `container_spec_*`, and the init's soft ulimits). Read apart from
//! `CgroupUsage` so the stats kubelet polls every few seconds do not pay for
//! files only a metrics scrape wants.

use std::path::Path;

use super::cgroup::{Hierarchy, count_lines, keyed, number};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupDetail {
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    pub cfs_periods: Option<u64>,
    pub cfs_throttled_periods: Option<u64>,
    pub cfs_throttled_ns: Option<u64>,
    /// Page cache.
    pub memory_cache: Option<u64>,
    pub memory_mapped_file: Option<u64>,
    /// Times the memory limit was hit.
    pub memory_failcnt: Option<u64>,
    pub memory_max_usage: Option<u64>,
    pub oom_kills: Option<u64>,
    pub threads: Option<u64>,
    /// None when unlimited.
    pub threads_max: Option<u64>,
    /// Kernel memory charged to the cgroup (slab, stacks, page tables, ...).
    pub memory_kernel: Option<u64>,
    /// CFS period in microseconds.
    pub cpu_period_us: Option<u64>,
    /// CFS quota in microseconds per period; None when unlimited.
    pub cpu_quota_us: Option<u64>,
    /// The memory reservation (v1 soft limit, v2 `memory.low`); 0 when none.
    pub memory_reservation: Option<u64>,
    /// CPU shares (v1), or the v2 weight converted back to shares.
    pub cpu_shares: Option<u64>,
    /// The memory limit in bytes; 0 when unlimited (cadvisor's convention).
    pub memory_limit: Option<u64>,
    /// The swap limit (v1: memory + swap, as `memory.memsw`); 0 when unlimited
    /// or when the kernel accounts no swap (nothing limits it then).
    pub memory_swap_limit: Option<u64>,
    /// Block I/O per device.
    pub io: Vec<DeviceIo>,
    /// The cgroup's own processes, for their open files.
    pub pids: Vec<i32>,
}

/// Block I/O of a cgroup on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// cadvisor's sanity threshold: a memory limit above it is "no limit" (v1
/// writes unlimited as 9223372036854771712, v2 as `max`) and reported as 0.
const UNLIMITED_MEMORY_ABOVE: u64 = 1 << 62;

/// The files of one cgroup that `CgroupDetail` is read from, by version.
#[derive(Debug, Default)]
pub struct V1Files {
    /// `cpuacct.stat`: user and system time in clock ticks.
    pub cpuacct_stat: Option<String>,
    /// `cpu.stat` of the cpu controller.
    pub cpu_stat: Option<String>,
    pub memory_stat: Option<String>,
    pub memory_failcnt: Option<String>,
    pub memory_max_usage: Option<String>,
    pub memory_oom_control: Option<String>,
    pub tasks: Option<String>,
    pub pids_max: Option<String>,
    pub procs: Option<String>,
    pub memory_kmem_usage: Option<String>,
    pub cpu_cfs_period: Option<String>,
    /// `cpu.cfs_quota_us`: -1 when unlimited.
    pub cpu_cfs_quota: Option<String>,
    pub cpu_shares: Option<String>,
    pub memory_limit: Option<String>,
    pub memory_soft_limit: Option<String>,
    /// `memory.memsw.limit_in_bytes`: absent when the kernel accounts no swap.
    pub memory_memsw_limit: Option<String>,
    /// `blkio.throttle.io_service_bytes_recursive`
    pub blkio_bytes: Option<String>,
    /// `blkio.throttle.io_serviced_recursive`
    pub blkio_ios: Option<String>,
}

#[derive(Debug, Default)]
pub struct V2Files {
    pub cpu_stat: Option<String>,
    pub memory_stat: Option<String>,
    pub memory_events: Option<String>,
    pub memory_peak: Option<String>,
    pub threads: Option<String>,
    pub pids_max: Option<String>,
    pub procs: Option<String>,
    /// `cpu.max`: "<quota|max> <period>".
    pub cpu_max: Option<String>,
    pub cpu_weight: Option<String>,
    pub memory_max: Option<String>,
    pub memory_low: Option<String>,
    pub memory_swap_max: Option<String>,
    pub io_stat: Option<String>,
}

impl Hierarchy {
    /// The detail figures of the cgroup at `path`; missing files leave theirs unset.
    pub fn read_detail(&self, path: &str) -> CgroupDetail {
        let path = path.trim_start_matches('/');
        let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok();
        match self {
            Hierarchy::V2(root) => {
                let dir = root.join(path);
                parse_v2(V2Files {
                    cpu_stat: read(&dir, "cpu.stat"),
                    memory_stat: read(&dir, "memory.stat"),
                    memory_events: read(&dir, "memory.events"),
                    memory_peak: read(&dir, "memory.peak"),
                    threads: read(&dir, "cgroup.threads"),
                    pids_max: read(&dir, "pids.max"),
                    procs: read(&dir, "cgroup.procs"),
                    cpu_max: read(&dir, "cpu.max"),
                    cpu_weight: read(&dir, "cpu.weight"),
                    memory_max: read(&dir, "memory.max"),
                    memory_low: read(&dir, "memory.low"),
                    memory_swap_max: read(&dir, "memory.swap.max"),
                    io_stat: read(&dir, "io.stat"),
                })
            }
            Hierarchy::V1(root) => {
                let controller = |names: &[&str]| {
                    names.iter().map(|name| root.join(name)).find(|dir| dir.exists()).map(|dir| dir.join(path))
                };
                let cpuacct = controller(&["cpu,cpuacct", "cpuacct"]);
                let cpu = controller(&["cpu,cpuacct", "cpu"]);
                let memory = root.join("memory").join(path);
                let pids = root.join("pids").join(path);
                let blkio = root.join("blkio").join(path);
                parse_v1(
                    V1Files {
                        cpuacct_stat: cpuacct.and_then(|dir| read(&dir, "cpuacct.stat")),
                        cpu_stat: cpu.as_ref().and_then(|dir| read(dir, "cpu.stat")),
                        cpu_cfs_period: cpu.as_ref().and_then(|dir| read(dir, "cpu.cfs_period_us")),
                        cpu_cfs_quota: cpu.as_ref().and_then(|dir| read(dir, "cpu.cfs_quota_us")),
                        memory_soft_limit: read(&memory, "memory.soft_limit_in_bytes"),
                        cpu_shares: cpu.as_ref().and_then(|dir| read(dir, "cpu.shares")),
                        memory_kmem_usage: read(&memory, "memory.kmem.usage_in_bytes"),
                        memory_limit: read(&memory, "memory.limit_in_bytes"),
                        memory_memsw_limit: read(&memory, "memory.memsw.limit_in_bytes"),
                        blkio_bytes: read(&blkio, "blkio.throttle.io_service_bytes_recursive"),
                        blkio_ios: read(&blkio, "blkio.throttle.io_serviced_recursive"),
                        memory_stat: read(&memory, "memory.stat"),
                        memory_failcnt: read(&memory, "memory.failcnt"),
                        memory_max_usage: read(&memory, "memory.max_usage_in_bytes"),
                        memory_oom_control: read(&memory, "memory.oom_control"),
                        tasks: read(&memory, "tasks"),
                        pids_max: read(&pids, "pids.max"),
                        procs: read(&memory, "cgroup.procs"),
                    },
                    clock_ticks_per_second(),
                )
            }
        }
    }
}

/// USER_HZ, the unit of cgroup v1's `cpuacct.stat`.
fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

pub fn parse_v1(files: V1Files, ticks_per_second: u64) -> CgroupDetail {
    let cpuacct = keyed(files.cpuacct_stat.as_deref());
    let cpu = keyed(files.cpu_stat.as_deref());
    let memory = keyed(files.memory_stat.as_deref());
    let ticks_to_ns = |ticks: u64| ticks.saturating_mul(1_000_000_000) / ticks_per_second.max(1);
    CgroupDetail {
        cpu_user_ns: cpuacct.get("user").map(|t| ticks_to_ns(*t)),
        cpu_system_ns: cpuacct.get("system").map(|t| ticks_to_ns(*t)),
        cfs_periods: cpu.get("nr_periods").copied(),
        cfs_throttled_periods: cpu.get("nr_throttled").copied(),
        cfs_throttled_ns: cpu.get("throttled_time").copied(),
        memory_cache: memory.get("total_cache").copied(),
        memory_mapped_file: memory.get("total_mapped_file").copied(),
        memory_failcnt: number(files.memory_failcnt),
        memory_max_usage: number(files.memory_max_usage),
        oom_kills: keyed(files.memory_oom_control.as_deref()).get("oom_kill").copied(),
        threads: count_lines(files.tasks),
        threads_max: number(files.pids_max),
        memory_kernel: number(files.memory_kmem_usage),
        cpu_period_us: number(files.cpu_cfs_period),
        // -1, unlimited, does not parse as a number: None.
        cpu_quota_us: number(files.cpu_cfs_quota),
        memory_reservation: number(files.memory_soft_limit).map(memory_limit),
        cpu_shares: number(files.cpu_shares),
        memory_limit: number(files.memory_limit).map(memory_limit),
        // No memsw file: the kernel accounts no swap, so none is limited.
        memory_swap_limit: Some(number(files.memory_memsw_limit).map(memory_limit).unwrap_or(0)),
        io: blkio_v1(files.blkio_bytes.as_deref(), files.blkio_ios.as_deref()),
        pids: pids(files.procs.as_deref()),
    }
}

pub fn parse_v2(files: V2Files) -> CgroupDetail {
    let cpu = keyed(files.cpu_stat.as_deref());
    let memory = keyed(files.memory_stat.as_deref());
    let events = keyed(files.memory_events.as_deref());
    let usec_to_ns = |usec: &u64| usec.saturating_mul(1000);
    CgroupDetail {
        cpu_user_ns: cpu.get("user_usec").map(usec_to_ns),
        cpu_system_ns: cpu.get("system_usec").map(usec_to_ns),
        cfs_periods: cpu.get("nr_periods").copied(),
        cfs_throttled_periods: cpu.get("nr_throttled").copied(),
        cfs_throttled_ns: cpu.get("throttled_usec").map(usec_to_ns),
        memory_cache: memory.get("file").copied(),
        memory_mapped_file: memory.get("file_mapped").copied(),
        // v2 has no failcnt; "max" counts the same thing: usage hitting the limit.
        memory_failcnt: events.get("max").copied(),
        memory_max_usage: number(files.memory_peak),
        oom_kills: events.get("oom_kill").copied(),
        threads: count_lines(files.threads),
        threads_max: number(files.pids_max),
        // Older kernels have no "kernel" total: its main parts then.
        memory_kernel: memory.get("kernel").copied().or_else(|| {
            let parts = ["kernel_stack", "pagetables", "slab", "percpu", "sock", "vmalloc"];
            let found: Vec<u64> = parts.iter().filter_map(|key| memory.get(key).copied()).collect();
            (!found.is_empty()).then(|| found.iter().sum())
        }),
        cpu_period_us: files.cpu_max.as_deref().and_then(|max| max.split_whitespace().nth(1)?.parse().ok()),
        // "max" (unlimited) does not parse as a number: None.
        cpu_quota_us: files.cpu_max.as_deref().and_then(|max| max.split_whitespace().next()?.parse().ok()),
        memory_reservation: v2_limit(files.memory_low),
        cpu_shares: number(files.cpu_weight).map(weight_to_shares),
        memory_limit: v2_limit(files.memory_max),
        memory_swap_limit: v2_limit(files.memory_swap_max),
        io: io_stat_v2(files.io_stat.as_deref()),
        pids: pids(files.procs.as_deref()),
    }
}

/// A limit as cadvisor reports it: 0 for none.
fn memory_limit(bytes: u64) -> u64 {
    if bytes > UNLIMITED_MEMORY_ABOVE { 0 } else { bytes }
}

/// A v2 limit file: a number, or `max` for none.
fn v2_limit(text: Option<String>) -> Option<u64> {
    let text = text?;
    match text.trim() {
        "max" => Some(0),
        value => value.parse().ok().map(memory_limit),
    }
}

/// The v2 `cpu.weight` (1..10000) back to v1 shares (2..262144), by the
/// inverse of the mapping runc and systemd apply to shares.
fn weight_to_shares(weight: u64) -> u64 {
    2 + weight.clamp(1, 10_000).saturating_sub(1) * 262_142 / 9_999
}

/// v1 `blkio.throttle.io_service_bytes` and `io_serviced`: "MAJ:MIN Op N" lines.
fn blkio_v1(bytes: Option<&str>, ios: Option<&str>) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ios, false)] {
        for line in text.unwrap_or_default().lines() {
            let mut fields = line.split_whitespace();
            let (Some(device), Some(op), Some(value)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let Some((major, minor)) = major_minor(device) else { continue };
            let Ok(value) = value.parse::<u64>() else { continue };
            let entry = device_entry(&mut devices, major, minor);
            match (op, is_bytes) {
                ("Read", true) => entry.read_bytes = value,
                ("Write", true) => entry.write_bytes = value,
                ("Read", false) => entry.reads = value,
                ("Write", false) => entry.writes = value,
                _ => {}
            }
        }
    }
    devices
}

/// v2 `io.stat`: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ..." lines.
fn io_stat_v2(text: Option<&str>) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for line in text.unwrap_or_default().lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(major_minor) else { continue };
        let entry = device_entry(&mut devices, major, minor);
        for field in fields {
            let Some((key, value)) = field.split_once('=') else { continue };
            let Ok(value) = value.parse::<u64>() else { continue };
            match key {
                "rbytes" => entry.read_bytes = value,
                "wbytes" => entry.write_bytes = value,
                "rios" => entry.reads = value,
                "wios" => entry.writes = value,
                _ => {}
            }
        }
    }
    devices
}

fn major_minor(device: &str) -> Option<(u64, u64)> {
    let (major, minor) = device.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn device_entry(devices: &mut Vec<DeviceIo>, major: u64, minor: u64) -> &mut DeviceIo {
    let index = match devices.iter().position(|d| d.major == major && d.minor == minor) {
        Some(index) => index,
        None => {
            devices.push(DeviceIo { major, minor, ..Default::default() });
            devices.len() - 1
        }
    };
    &mut devices[index]
}

/// `/dev/<name>` of block device `major:minor`, from sysfs; the numbers when
/// sysfs does not know it.
pub fn block_device_name(major: u64, minor: u64) -> String {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).unwrap_or_default();
    match uevent.lines().find_map(|line| line.strip_prefix("DEVNAME=")) {
        Some(name) => format!("/dev/{name}"),
        None => format!("{major}:{minor}"),
    }
}

/// The open file descriptors of a set of processes, and how many are sockets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Descriptors {
    pub files: u64,
    pub sockets: u64,
}

/// Counts the descriptors of `pids` from `/proc/<pid>/fd` in one walk: a
/// socket's links to `socket:[inode]`.
pub fn open_descriptors(pids: &[i32]) -> Descriptors {
    let mut counted = Descriptors::default();
    let entries = pids.iter().filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok()).flatten().flatten();
    for entry in entries {
        counted.files += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            counted.sockets += 1;
        }
    }
    counted
}

/// The soft limit on open files of a process, from `/proc/<pid>/limits`
/// (cadvisor's one `container_ulimits_soft`); None when unlimited or gone.
pub fn soft_open_files_limit(pid: i32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_soft_limit(&limits, "Max open files")
}

/// `/proc/<pid>/limits`: "Max open files  1024  1048576  files" lines.
fn parse_soft_limit(limits: &str, name: &str) -> Option<u64> {
    let line = limits.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

fn pids(text: Option<&str>) -> Vec<i32> {
    text.unwrap_or_default().lines().filter_map(|line| line.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn v1_detail_converts_ticks_and_reads_every_controller() {
        let detail = parse_v1(
            V1Files {
                cpuacct_stat: s("user 250\nsystem 50\n"),
                cpu_stat: s("nr_periods 10\nnr_throttled 4\nthrottled_time 123456789\n"),
                memory_stat: s("cache 1\ntotal_cache 8192\ntotal_mapped_file 4096\n"),
                memory_failcnt: s("3\n"),
                memory_max_usage: s("65536\n"),
                memory_oom_control: s("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
                tasks: s("10\n11\n12\n"),
                pids_max: s("max\n"),
                procs: s("10\n"),
                ..Default::default()
            },
            100,
        );
        assert_eq!(detail.cpu_user_ns, Some(2_500_000_000));
        assert_eq!(detail.cpu_system_ns, Some(500_000_000));
        assert_eq!(
            (detail.cfs_periods, detail.cfs_throttled_periods, detail.cfs_throttled_ns),
            (Some(10), Some(4), Some(123_456_789))
        );
        assert_eq!((detail.memory_cache, detail.memory_mapped_file), (Some(8192), Some(4096)));
        assert_eq!((detail.memory_failcnt, detail.memory_max_usage, detail.oom_kills), (Some(3), Some(65536), Some(2)));
        assert_eq!((detail.threads, detail.threads_max), (Some(3), None));
        assert_eq!(detail.pids, vec![10]);
    }

    #[test]
    fn v2_detail_from_recorded_files() {
        let detail = parse_v2(V2Files {
            cpu_stat: s(
                "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 7\n",
            ),
            memory_stat: s("anon 4096\nfile 8192\nfile_mapped 1024\n"),
            memory_events: s("low 0\nhigh 0\nmax 6\noom 1\noom_kill 1\n"),
            memory_peak: None,
            threads: s("1\n2\n"),
            pids_max: s("64\n"),
            procs: s("1\n"),
            ..Default::default()
        });
        assert_eq!((detail.cpu_user_ns, detail.cpu_system_ns), (Some(2_000_000), Some(1_000_000)));
        assert_eq!(detail.cfs_throttled_ns, Some(7000));
        assert_eq!((detail.memory_cache, detail.memory_mapped_file), (Some(8192), Some(1024)));
        assert_eq!((detail.memory_failcnt, detail.oom_kills, detail.memory_max_usage), (Some(6), Some(1), None));
        assert_eq!((detail.threads, detail.threads_max), (Some(2), Some(64)));
        assert_eq!(parse_v2(V2Files::default()), CgroupDetail::default());
    }

    #[test]
    fn v1_limits_kernel_memory_and_block_io() {
        let detail = parse_v1(
            V1Files {
                memory_kmem_usage: s("1531904\n"),
                cpu_cfs_period: s("100000\n"),
                cpu_cfs_quota: s("50000\n"),
                cpu_shares: s("1024\n"),
                memory_limit: s("67108864\n"),
                memory_soft_limit: s("9223372036854771712\n"),
                memory_memsw_limit: s("9223372036854771712\n"),
                blkio_bytes: s("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\nTotal 12288\n"),
                blkio_ios: s("8:0 Read 1\n8:0 Write 2\n8:16 Read 3\nTotal 6\n"),
                ..Default::default()
            },
            100,
        );
        assert_eq!(detail.memory_kernel, Some(1_531_904));
        assert_eq!((detail.cpu_period_us, detail.cpu_shares), (Some(100_000), Some(1024)));
        assert_eq!(detail.memory_limit, Some(64 << 20));
        assert_eq!(detail.memory_swap_limit, Some(0), "v1's unlimited is reported as 0");
        assert_eq!((detail.cpu_quota_us, detail.memory_reservation), (Some(50_000), Some(0)));
        let unlimited = parse_v1(V1Files { cpu_cfs_quota: s("-1\n"), ..Default::default() }, 100);
        assert_eq!(unlimited.cpu_quota_us, None, "no quota is no sample, as cadvisor has it");
        assert_eq!(
            detail.io,
            vec![
                DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 },
                DeviceIo { major: 8, minor: 16, reads: 3, ..Default::default() },
            ]
        );
        let no_swap_accounting = parse_v1(V1Files::default(), 100);
        assert_eq!((no_swap_accounting.memory_limit, no_swap_accounting.memory_swap_limit), (None, Some(0)));
    }

    #[test]
    fn the_soft_open_files_limit_of_a_process() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             127431               127431               processes \n\
            Max open files            1024                 1048576              files     \n\
            Max locked memory         unlimited            unlimited            bytes     \n";
        assert_eq!(parse_soft_limit(limits, "Max open files"), Some(1024));
        assert_eq!(parse_soft_limit(limits, "Max locked memory"), None, "unlimited");
        assert!(soft_open_files_limit(std::process::id() as i32).is_some());
    }

    #[test]
    fn v2_limits_kernel_memory_and_block_io() {
        let detail = parse_v2(V2Files {
            memory_stat: s("anon 4096\nkernel 65536\n"),
            cpu_max: s("20000 100000\n"),
            cpu_weight: s("100\n"),
            memory_max: s("67108864\n"),
            memory_swap_max: s("max\n"),
            memory_low: s("1048576\n"),
            io_stat: s("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
            ..Default::default()
        });
        assert_eq!(detail.memory_kernel, Some(65536));
        assert_eq!((detail.cpu_period_us, detail.cpu_shares), (Some(100_000), Some(2 + 99 * 262_142 / 9_999)));
        assert_eq!((detail.memory_limit, detail.memory_swap_limit), (Some(64 << 20), Some(0)));
        assert_eq!((detail.cpu_quota_us, detail.memory_reservation), (Some(20_000), Some(1 << 20)));
        let unlimited = parse_v2(V2Files { cpu_max: s("max 100000\n"), ..Default::default() });
        assert_eq!((unlimited.cpu_quota_us, unlimited.cpu_period_us), (None, Some(100_000)));
        assert_eq!(
            detail.io,
            vec![DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 }]
        );
        let older_kernel = parse_v2(V2Files { memory_stat: s("slab 100\nkernel_stack 20\n"), ..Default::default() });
        assert_eq!(older_kernel.memory_kernel, Some(120));
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }

    #[test]
    fn open_descriptors_of_this_process_are_counted() {
        // Other tests open descriptors meanwhile: only lower bounds hold.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        let counted = open_descriptors(&[std::process::id() as i32]);
        assert!(counted.files >= 4, "stdin, stdout, stderr and the socket at least: {counted:?}");
        assert!(counted.sockets >= 1, "{counted:?}");
        drop(socket);
        assert_eq!(open_descriptors(&[]), Descriptors::default());
    }
}
