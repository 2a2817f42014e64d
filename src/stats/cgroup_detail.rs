//! The figures of a cgroup that only the cadvisor-style metrics report (CPU
//! split and throttling, page cache, memory failures and OOM kills, threads,
//! open files). Read apart from `CgroupUsage` so the stats kubelet polls every
//! few seconds do not pay for files only a metrics scrape wants.

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
    /// The cgroup's own processes, for their open files.
    pub pids: Vec<i32>,
}

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
                parse_v1(
                    V1Files {
                        cpuacct_stat: cpuacct.and_then(|dir| read(&dir, "cpuacct.stat")),
                        cpu_stat: cpu.and_then(|dir| read(&dir, "cpu.stat")),
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
        pids: pids(files.procs.as_deref()),
    }
}

/// Open file descriptors of `pids`, counted from `/proc/<pid>/fd`.
pub fn open_files(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map(|entries| entries.count() as u64)
        .sum()
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
        });
        assert_eq!((detail.cpu_user_ns, detail.cpu_system_ns), (Some(2_000_000), Some(1_000_000)));
        assert_eq!(detail.cfs_throttled_ns, Some(7000));
        assert_eq!((detail.memory_cache, detail.memory_mapped_file), (Some(8192), Some(1024)));
        assert_eq!((detail.memory_failcnt, detail.oom_kills, detail.memory_max_usage), (Some(6), Some(1), None));
        assert_eq!((detail.threads, detail.threads_max), (Some(2), Some(64)));
        assert_eq!(parse_v2(V2Files::default()), CgroupDetail::default());
    }

    #[test]
    fn open_files_of_this_process_are_counted() {
        assert!(open_files(&[std::process::id() as i32]) >= 3, "stdin, stdout and stderr at least");
        assert_eq!(open_files(&[]), 0);
    }
}
