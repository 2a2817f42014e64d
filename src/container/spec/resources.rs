//! The container's cgroup: its limits (`linux.resources`) and where it sits
//! (`linux.cgroupsPath`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

use crate::cri::v1::LinuxContainerResources;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};

use super::SpecError;
use crate::config::CgroupDriver;
use crate::sandbox::SandboxRecord;

const FIELD: &str = "linux.resources";

/// What the host's cgroups can enforce; asking a runtime for more fails the
/// container's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CgroupFacts {
    /// One unified hierarchy (`linux.resources.unified` needs it).
    pub v2: bool,
    /// The memory controller accounts swap (`memory.memsw.*` / `memory.swap.max`).
    pub swap: bool,
    pub hugetlb: bool,
}

impl CgroupFacts {
    /// The running host's, probed once.
    pub fn host() -> CgroupFacts {
        static FACTS: OnceLock<CgroupFacts> = OnceLock::new();
        *FACTS.get_or_init(probe_host)
    }
}

fn probe_host() -> CgroupFacts {
    let root = Path::new("/sys/fs/cgroup");
    let v2 =
        nix::sys::statfs::statfs(root).is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if v2 {
        // The root cgroup has no memory.swap.max: look in berth's own (containerd's probe).
        let own = own_unified_cgroup().unwrap_or_default();
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        CgroupFacts {
            v2,
            swap: root.join(own.trim_start_matches('/')).join("memory.swap.max").exists(),
            hugetlb: controllers.split_whitespace().any(|c| c == "hugetlb"),
        }
    } else {
        CgroupFacts {
            v2,
            swap: root.join("memory/memory.memsw.limit_in_bytes").exists(),
            hugetlb: root.join("hugetlb").exists(),
        }
    }
}

/// berth's cgroup in the unified hierarchy (`0::/path` of /proc/self/cgroup).
fn own_unified_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_string)
}

/// The limits kubelet asks for; zero fields are "not specified" in the CRI.
pub(super) fn build(
    resources: Option<&LinuxContainerResources>,
    facts: &CgroupFacts,
) -> Result<LinuxResources, SpecError> {
    let mut linux = LinuxResources::default();
    let Some(resources) = resources else { return Ok(linux) };
    linux
        .set_cpu(cpu(resources)?)
        .set_memory(memory(resources, facts))
        .set_hugepage_limits(hugepage_limits(resources, facts)?)
        .set_unified(unified(resources, facts)?);
    Ok(linux)
}

fn cpu(resources: &LinuxContainerResources) -> Result<Option<LinuxCpu>, SpecError> {
    let mut cpu = LinuxCpu::default();
    if resources.cpu_shares != 0 {
        cpu.set_shares(Some(non_negative("cpu_shares", resources.cpu_shares)?));
    }
    if resources.cpu_period != 0 {
        cpu.set_period(Some(non_negative("cpu_period", resources.cpu_period)?));
    }
    if resources.cpu_quota != 0 {
        cpu.set_quota(Some(resources.cpu_quota));
    }
    if !resources.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(resources.cpuset_cpus.clone()));
    }
    if !resources.cpuset_mems.is_empty() {
        cpu.set_mems(Some(resources.cpuset_mems.clone()));
    }
    Ok((cpu != LinuxCpu::default()).then_some(cpu))
}

fn non_negative(name: &str, value: i64) -> Result<u64, SpecError> {
    u64::try_from(value).map_err(|_| SpecError::invalid(format!("{FIELD}.{name}"), format!("{value} is negative")))
}

/// The memory limit, and swap: as asked, else equal to the limit, so that a
/// container does not swap unless asked to (containerd's rule). Only where
/// the host accounts swap: elsewhere runc would fail to set it.
fn memory(resources: &LinuxContainerResources, facts: &CgroupFacts) -> Option<LinuxMemory> {
    let limit = resources.memory_limit_in_bytes;
    let swap = match resources.memory_swap_limit_in_bytes {
        0 => limit,
        swap => swap,
    };
    let mut memory = LinuxMemory::default();
    if limit != 0 {
        memory.set_limit(Some(limit));
    }
    if swap != 0 && facts.swap {
        memory.set_swap(Some(swap));
    }
    (memory != LinuxMemory::default()).then_some(memory)
}

/// Hugepage limits; skipped with a warning on a host without the hugetlb
/// controller (containerd's default `tolerate_missing_hugetlb_controller`).
fn hugepage_limits(
    resources: &LinuxContainerResources,
    facts: &CgroupFacts,
) -> Result<Option<Vec<LinuxHugepageLimit>>, SpecError> {
    if resources.hugepage_limits.is_empty() {
        return Ok(None);
    }
    if !facts.hugetlb {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| tracing::warn!("hugepage limits ignored: the host has no hugetlb cgroup controller"));
        return Ok(None);
    }
    let mut limits = Vec::with_capacity(resources.hugepage_limits.len());
    for (index, requested) in resources.hugepage_limits.iter().enumerate() {
        let field = |name: &str| format!("{FIELD}.hugepage_limits[{index}].{name}");
        if requested.page_size.is_empty() {
            return Err(SpecError::invalid(field("page_size"), "empty"));
        }
        let limit = i64::try_from(requested.limit)
            .map_err(|_| SpecError::invalid(field("limit"), format!("{} is too large", requested.limit)))?;
        let mut hugepage = LinuxHugepageLimit::default();
        hugepage.set_page_size(requested.page_size.clone()).set_limit(limit);
        limits.push(hugepage);
    }
    Ok(Some(limits))
}

/// cgroup v2 files written as given. kubelet sends them only to v2 hosts; on
/// v1 they cannot be honoured, so they are refused rather than dropped.
fn unified(
    resources: &LinuxContainerResources,
    facts: &CgroupFacts,
) -> Result<Option<HashMap<String, String>>, SpecError> {
    if resources.unified.is_empty() {
        return Ok(None);
    }
    if !facts.v2 {
        return Err(SpecError::invalid(format!("{FIELD}.unified"), "this host does not use cgroup v2"));
    }
    Ok(Some(resources.unified.iter().map(|(key, value)| (key.clone(), value.clone())).collect()))
}

/// `linux.cgroupsPath`. cgroupfs: a path, `berth-<id>` beside the pod's infra
/// cgroup. systemd: `slice:prefix:name`, from which runc makes the scope
/// `berth-<id>.scope` in the pod's slice.
pub(super) fn cgroups_path(driver: CgroupDriver, sandbox: &SandboxRecord, container_id: &str) -> PathBuf {
    let parent = sandbox.cgroup_parent.as_str();
    match driver {
        CgroupDriver::Cgroupfs if parent.is_empty() => PathBuf::from(format!("/berth/{container_id}")),
        CgroupDriver::Cgroupfs => Path::new(parent).join(format!("berth-{container_id}")),
        CgroupDriver::Systemd => {
            let slice = if parent.is_empty() { "system.slice" } else { parent };
            PathBuf::from(format!("{slice}:berth:{container_id}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::fixtures;
    use crate::cri::v1::HugepageLimit;

    const V2: CgroupFacts = CgroupFacts { v2: true, swap: true, hugetlb: true };
    const V1_BARE: CgroupFacts = CgroupFacts { v2: false, swap: false, hugetlb: false };

    fn full() -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            oom_score_adj: 999,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![HugepageLimit { page_size: "2MB".into(), limit: 4 << 20 }],
            unified: [("memory.high".to_string(), "200M".to_string())].into(),
            memory_swap_limit_in_bytes: 0,
        }
    }

    #[test]
    fn every_field_maps_on_a_capable_host() {
        let got = build(Some(&full()), &V2).unwrap();
        let cpu = got.cpu().clone().unwrap();
        assert_eq!((cpu.shares(), cpu.quota(), cpu.period()), (Some(512), Some(50_000), Some(100_000)));
        assert_eq!((cpu.cpus().as_deref(), cpu.mems().as_deref()), (Some("0-1"), Some("0")));
        let memory = got.memory().unwrap();
        assert_eq!(memory.limit(), Some(256 << 20));
        assert_eq!(memory.swap(), Some(256 << 20), "swap defaults to the limit: no swapping");
        let hugepages = got.hugepage_limits().clone().unwrap();
        assert_eq!((hugepages[0].page_size().as_str(), hugepages[0].limit()), ("2MB", 4 << 20));
        assert_eq!(got.unified().clone().unwrap().get("memory.high").map(String::as_str), Some("200M"));
    }

    #[test]
    fn explicit_swap_is_kept() {
        let resources = LinuxContainerResources { memory_swap_limit_in_bytes: 512 << 20, ..full() };
        assert_eq!(build(Some(&resources), &V2).unwrap().memory().unwrap().swap(), Some(512 << 20));
    }

    #[test]
    fn unspecified_fields_stay_out() {
        let got = build(Some(&LinuxContainerResources::default()), &V2).unwrap();
        assert_eq!(got, LinuxResources::default());
        assert_eq!(build(None, &V2).unwrap(), LinuxResources::default());
    }

    #[test]
    fn a_bare_v1_host_drops_swap_and_hugepages_and_refuses_unified() {
        let err = build(Some(&full()), &V1_BARE).unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument { field, .. } if field == "linux.resources.unified"),
            "{err}"
        );
        let resources = LinuxContainerResources { unified: Default::default(), ..full() };
        let got = build(Some(&resources), &V1_BARE).unwrap();
        assert_eq!(got.memory().unwrap().swap(), None);
        assert_eq!(got.hugepage_limits(), &None);
    }

    #[test]
    fn negative_shares_are_invalid() {
        let resources = LinuxContainerResources { cpu_shares: -2, ..Default::default() };
        let err = build(Some(&resources), &V2).unwrap_err();
        assert!(matches!(&err, SpecError::InvalidArgument { field, .. } if field == "linux.resources.cpu_shares"));
    }

    #[test]
    fn cgroups_path_for_both_drivers() {
        let mut sandbox = fixtures::sandbox();
        let path = |driver, sandbox: &SandboxRecord| cgroups_path(driver, sandbox, "c1").display().to_string();
        assert_eq!(path(CgroupDriver::Cgroupfs, &sandbox), "/kubepods/burstable/pod1/berth-c1");
        sandbox.cgroup_parent = "kubepods-burstable-pod1.slice".into();
        assert_eq!(path(CgroupDriver::Systemd, &sandbox), "kubepods-burstable-pod1.slice:berth:c1");
        sandbox.cgroup_parent = String::new();
        assert_eq!(path(CgroupDriver::Cgroupfs, &sandbox), "/berth/c1");
        assert_eq!(path(CgroupDriver::Systemd, &sandbox), "system.slice:berth:c1");
    }
}
