//! CPU, memory and process figures of one cgroup, read from its files (cgroup v1
//! or v2), as cadvisor and kubelet define them.
//!
//! Read by hand rather than through youki's libcgroups: kubelet polls a handful of
//! files per container every few seconds, and libcgroups' stats read every
//! controller (blkio, hugetlb, pids...) and pull in its systemd and eBPF features.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// cgroup v1 reports "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<MemoryFigures>,
    /// Processes in the cgroup (not its children).
    pub processes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryFigures {
    pub usage: u64,
    /// usage minus inactive file pages: what the kernel cannot reclaim easily,
    /// and what kubelet evicts on.
    pub working_set: u64,
    pub rss: u64,
    /// limit minus working set, when there is a limit.
    pub available: Option<u64>,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub swap_usage: Option<u64>,
}

/// Where cgroups are mounted, and how.
#[derive(Debug, Clone)]
pub enum Hierarchy {
    /// One tree (`cgroup.controllers` at its root).
    V2(PathBuf),
    /// A tree per controller under the root (`memory`, `cpuacct` or `cpu,cpuacct`, `pids`).
    V1(PathBuf),
}

impl Hierarchy {
    pub fn detect() -> Hierarchy {
        let root = PathBuf::from("/sys/fs/cgroup");
        if is_unified_host() { Hierarchy::V2(root) } else { Hierarchy::V1(root) }
    }

    /// The figures of the cgroup at `path` (relative to each hierarchy's root);
    /// missing files leave their figures unset.
    pub fn read(&self, path: &str) -> CgroupUsage {
        let path = path.trim_start_matches('/');
        match self {
            Hierarchy::V2(root) => {
                let dir = root.join(path);
                let read = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
                parse_v2(
                    read("cpu.stat"),
                    read("memory.current"),
                    read("memory.stat"),
                    read("memory.max"),
                    read("memory.swap.current"),
                    read("cgroup.procs"),
                )
            }
            Hierarchy::V1(root) => {
                let cpuacct = ["cpu,cpuacct", "cpuacct"].iter().map(|c| root.join(c)).find(|d| d.exists());
                let memory = root.join("memory").join(path);
                let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).ok();
                let cpu = cpuacct.and_then(|d| read(&d.join(path), "cpuacct.usage"));
                parse_v1(
                    cpu,
                    read(&memory, "memory.usage_in_bytes"),
                    read(&memory, "memory.stat"),
                    read(&memory, "memory.limit_in_bytes"),
                    read(&memory, "memory.memsw.usage_in_bytes"),
                    read(&memory, "cgroup.procs"),
                )
            }
        }
    }
}

pub(super) fn number(text: Option<String>) -> Option<u64> {
    text?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat).
pub(super) fn keyed(text: Option<&str>) -> HashMap<&str, u64> {
    text.unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(key, value)| Some((key, value.trim().parse().ok()?)))
        .collect()
}

pub(super) fn count_lines(text: Option<String>) -> Option<u64> {
    text.map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

fn memory(
    usage: u64,
    stat: &HashMap<&str, u64>,
    keys: [&str; 4],
    limit: Option<u64>,
    swap: Option<u64>,
) -> MemoryFigures {
    let [inactive_file, rss, faults, major_faults] = keys;
    let working_set = usage.saturating_sub(stat.get(inactive_file).copied().unwrap_or(0));
    MemoryFigures {
        usage,
        working_set,
        rss: stat.get(rss).copied().unwrap_or(0),
        available: limit.map(|limit| limit.saturating_sub(working_set)),
        page_faults: stat.get(faults).copied().unwrap_or(0),
        major_page_faults: stat.get(major_faults).copied().unwrap_or(0),
        swap_usage: swap,
    }
}

pub fn parse_v1(
    cpuacct_usage: Option<String>,
    usage_in_bytes: Option<String>,
    memory_stat: Option<String>,
    limit_in_bytes: Option<String>,
    memsw_usage: Option<String>,
    procs: Option<String>,
) -> CgroupUsage {
    let stat_text = memory_stat;
    let stat = keyed(stat_text.as_deref());
    let usage = number(usage_in_bytes);
    let limit = number(limit_in_bytes).filter(|limit| *limit < V1_UNLIMITED);
    let memory = usage.map(|usage| {
        // memsw counts memory plus swap; swap alone is the difference.
        let swap = number(memsw_usage).map(|both| both.saturating_sub(usage));
        memory(usage, &stat, ["total_inactive_file", "total_rss", "total_pgfault", "total_pgmajfault"], limit, swap)
    });
    CgroupUsage { cpu_ns: number(cpuacct_usage), memory, processes: count_lines(procs) }
}

pub fn parse_v2(
    cpu_stat: Option<String>,
    memory_current: Option<String>,
    memory_stat: Option<String>,
    memory_max: Option<String>,
    swap_current: Option<String>,
    procs: Option<String>,
) -> CgroupUsage {
    let cpu_ns = keyed(cpu_stat.as_deref()).get("usage_usec").map(|usec| usec * 1000);
    let stat = keyed(memory_stat.as_deref());
    // "max" does not parse: no limit.
    let limit = number(memory_max);
    let swap = number(swap_current);
    let memory = number(memory_current)
        .map(|usage| memory(usage, &stat, ["inactive_file", "anon", "pgfault", "pgmajfault"], limit, swap));
    CgroupUsage { cpu_ns, memory, processes: count_lines(procs) }
}

/// A pure cgroup v2 host: one unified hierarchy at /sys/fs/cgroup. Otherwise
/// v1, or v1 "hybrid" with a v2 hierarchy at /sys/fs/cgroup/unified.
pub fn is_unified_host() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// One cgroup hierarchy as the host mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedHierarchy {
    pub root: PathBuf,
    /// A v1 cpuset hierarchy, whose new cgroups need cpus and mems before any process.
    pub cpuset: bool,
}

/// Every cgroup hierarchy mounted here: each v1 controller (and `name=systemd`)
/// and the unified one on a v1 or hybrid host, the one unified hierarchy on a
/// pure v2 host. One mount each, under `/sys/fs/cgroup`: a hierarchy mounted
/// again elsewhere (a privileged pod's own cgroupfs, propagated back to the
/// host) is the same hierarchy seen from another cgroup, not one more.
pub fn mounted_hierarchies() -> Vec<MountedHierarchy> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    hierarchies_in(&mountinfo)
}

fn hierarchies_in(mountinfo: &str) -> Vec<MountedHierarchy> {
    let mut seen = std::collections::HashSet::new();
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or_default();
            let root = PathBuf::from(left.split_whitespace().nth(4)?);
            let cpuset = match fstype {
                "cgroup2" => false,
                "cgroup" => options.split(',').any(|o| o == "cpuset"),
                _ => return None,
            };
            let under_sys = root.starts_with("/sys/fs/cgroup");
            (under_sys && seen.insert((fstype.to_string(), options.to_string())))
                .then_some(MountedHierarchy { root, cpuset })
        })
        .collect()
}

/// A cgroup path as an OCI runtime was given it, as a path in the hierarchy: the
/// cgroupfs form as it is, systemd's `slice:prefix:name` as systemd lays it out
/// (`a-b.slice` lives in `a.slice/a-b.slice`; the unit is `<prefix>-<name>.scope`).
pub fn hierarchy_path(cgroups_path: &str) -> String {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else { return cgroups_path.to_string() };
    format!("{}/{prefix}-{name}.scope", slice_path(slice))
}

/// A pod's cgroup parent as a path: a cgroupfs path as it is, a systemd slice
/// (`kubepods-pod1.slice`) nested in its parents as systemd nests it.
pub fn parent_path(cgroup_parent: &str) -> String {
    if cgroup_parent.ends_with(".slice") && !cgroup_parent.contains('/') {
        slice_path(cgroup_parent)
    } else {
        cgroup_parent.to_string()
    }
}

fn slice_path(slice: &str) -> String {
    let mut path = String::new();
    let stem = slice.strip_suffix(".slice").unwrap_or(slice);
    let mut sofar = String::new();
    for (i, part) in stem.split('-').enumerate() {
        if i > 0 {
            sofar.push('-');
        }
        sofar.push_str(part);
        path.push('/');
        path.push_str(&sofar);
        path.push_str(".slice");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    #[test]
    fn v1_figures_as_cadvisor_computes_them() {
        let stat =
            "cache 300\nrss 50\ntotal_inactive_file 4096\ntotal_rss 8192\ntotal_pgfault 77\ntotal_pgmajfault 3\n";
        let usage = parse_v1(s("123456789\n"), s("20480\n"), s(stat), s("1048576\n"), s("24576\n"), s("1\n2\n"));
        assert_eq!(usage.cpu_ns, Some(123_456_789));
        assert_eq!(usage.processes, Some(2));
        let memory = usage.memory.unwrap();
        assert_eq!(memory.working_set, 20480 - 4096);
        assert_eq!(memory.rss, 8192);
        assert_eq!(memory.available, Some(1_048_576 - 16384));
        assert_eq!((memory.page_faults, memory.major_page_faults), (77, 3));
        assert_eq!(memory.swap_usage, Some(4096));
        let unlimited = parse_v1(None, s("10"), None, s("9223372036854771712"), None, None);
        assert_eq!(unlimited.memory.unwrap().available, None);
    }

    #[test]
    fn v2_figures_from_recorded_files() {
        let cpu = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n";
        let stat = "anon 4096\nfile 8192\ninactive_file 6000\nactive_file 2192\npgfault 10\npgmajfault 1\n";
        let usage = parse_v2(s(cpu), s("16384\n"), s(stat), s("max\n"), s("0\n"), s("7\n"));
        assert_eq!(usage.cpu_ns, Some(2_500_000));
        let memory = usage.memory.unwrap();
        assert_eq!(memory.working_set, 16384 - 6000);
        assert_eq!(memory.rss, 4096);
        assert_eq!(memory.available, None, "max is no limit");
        assert_eq!(memory.swap_usage, Some(0));
        let limited = parse_v2(None, s("100"), s("inactive_file 40\n"), s("1000\n"), None, None);
        assert_eq!(limited.memory.unwrap().available, Some(940));
        assert_eq!(parse_v2(None, None, None, None, None, None), CgroupUsage::default());
    }

    #[test]
    fn systemd_paths_expand_like_systemd() {
        assert_eq!(hierarchy_path("/kubepods/burstable/pod1/berth-c1"), "/kubepods/burstable/pod1/berth-c1");
        assert_eq!(
            hierarchy_path("kubepods-burstable-pod1.slice:berth:c1"),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/berth-c1.scope"
        );
        assert_eq!(hierarchy_path("system.slice:berth:c1"), "/system.slice/berth-c1.scope");
        assert_eq!(parent_path("kubepods-pod1.slice"), "/kubepods.slice/kubepods-pod1.slice");
        assert_eq!(parent_path("/kubepods/pod1"), "/kubepods/pod1");
    }

    #[test]
    fn each_hierarchy_once_and_only_under_sys_fs_cgroup() {
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 80 0:32 /kubepods/pod1/dind /var/lib/pods/x/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
91 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
";
        let found: Vec<(String, bool)> =
            hierarchies_in(mountinfo).into_iter().map(|h| (h.root.display().to_string(), h.cpuset)).collect();
        let expected = [("/sys/fs/cgroup/memory", false), ("/sys/fs/cgroup/cpuset", true), ("/sys/fs/cgroup/unified", false)];
        assert_eq!(found, expected.map(|(root, cpuset)| (root.to_string(), cpuset)));
    }
}
