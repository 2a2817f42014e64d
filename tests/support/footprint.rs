//! What a berth leaves on the host, taken before and after a failed call: a call
//! that fails must leave the same footprint as before it, and one that succeeds on
//! retry must not leave two of anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use berth::cri::v1::{ListContainersRequest, ListPodSandboxRequest};

use super::berth::Berth;
use super::cni::TestNetwork;

/// Everything of one berth (and optionally its test network) that can leak.
#[derive(Debug, PartialEq, Eq)]
pub struct Footprint {
    pub pods: BTreeSet<String>,
    pub containers: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    /// Command lines of the processes (other than berth) naming berth's directory:
    /// monitors, infra processes, runtime calls.
    pub processes: BTreeSet<String>,
    /// Directories of containers and pods in berth's state and run roots.
    pub dirs: BTreeSet<String>,
    /// Containers each runtime root holds.
    pub runtime_containers: BTreeSet<String>,
    /// Cgroup directories under `cgroup_parent` in the memory hierarchy.
    pub cgroups: BTreeSet<String>,
    pub veths: usize,
    pub allocated_ips: BTreeSet<String>,
    pub iptables_rules: BTreeSet<String>,
}

impl Footprint {
    /// `cgroup_parent` is the test pods' own parent (cgroupfs path), or "".
    pub async fn of(berth: &Berth, network: Option<&TestNetwork>, cgroup_parent: &str) -> Footprint {
        let mut runtime = berth.runtime().await;
        let pods = runtime.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.expect("ListPodSandbox");
        let containers = runtime.list_containers(ListContainersRequest { filter: None }).await.expect("ListContainers");
        let dir = berth.dir().to_path_buf();
        Footprint {
            pods: pods.into_inner().items.into_iter().map(|p| p.id).collect(),
            containers: containers.into_inner().containers.into_iter().map(|c| c.id).collect(),
            mounts: mounts_under(&dir),
            processes: processes_naming(&dir, berth.pid()),
            dirs: ["state/containers", "run/containers", "state/pods", "run/pods"]
                .iter()
                .flat_map(|sub| entries(&dir.join(sub)))
                .collect(),
            runtime_containers: entries(&berth.paths.run_root.join("runtimes"))
                .into_iter()
                .flat_map(|root| entries(Path::new(&root)))
                .filter(|entry| !Path::new(entry).file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect(),
            cgroups: if cgroup_parent.is_empty() {
                BTreeSet::new()
            } else {
                descendants(&Path::new("/sys/fs/cgroup/memory").join(cgroup_parent.trim_start_matches('/')))
            },
            veths: network.map_or(0, TestNetwork::veths),
            allocated_ips: network.map(|n| n.allocated_ips().into_iter().collect()).unwrap_or_default(),
            iptables_rules: network
                .map(|n| super::cni::iptables_rules_mentioning(&n.bridge).into_iter().collect())
                .unwrap_or_default(),
        }
    }
}

/// Mount points strictly below `dir` in this mount namespace.
pub fn mounts_under(dir: &Path) -> BTreeSet<String> {
    let prefix = format!("{}/", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

fn processes_naming(dir: &Path, berth: Option<u32>) -> BTreeSet<String> {
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if Some(pid) == berth || pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(needle.len()).any(|window| window == needle.as_slice()) {
            found.insert(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

fn entries(dir: &Path) -> BTreeSet<String> {
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.map(|e| e.path().display().to_string()).collect()
}

fn descendants(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                found.insert(entry.path().display().to_string());
                stack.push(entry.path());
            }
        }
    }
    found
}

/// A test pods' cgroup parent, which berth makes under it but, as kubelet owns
/// it, never removes: removed from every hierarchy, children first, when the
/// guard drops. Declare it before the berth whose pods use it, so that it drops
/// after them (a cgroup goes only once its last process is reaped: a few tries).
pub struct CgroupParent(pub String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let dir = hierarchy.path().join(self.0.trim_start_matches('/'));
            for _ in 0..50 {
                let mut dirs: Vec<String> = descendants(&dir).into_iter().collect();
                dirs.sort_by_key(|d| std::cmp::Reverse(d.len()));
                for child in dirs {
                    let _ = std::fs::remove_dir(child);
                }
                if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
