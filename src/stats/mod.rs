//! Resource usage as kubelet reads it (ContainerStats, PodSandboxStats): cgroup
//! CPU and memory, network counters, and CPU rates from the previous sample.

pub mod cgroup;
pub mod cgroup_detail;
pub mod network;

use std::collections::HashMap;
use std::sync::Mutex;

pub use cgroup::{CgroupUsage, Hierarchy, MemoryFigures};
pub use cgroup_detail::CgroupDetail;
pub use network::InterfaceUsage;

/// The previous CPU sample per object, for `usage_nano_cores`.
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Nanoseconds of CPU per second (nano-cores) since the previous sample of
    /// `key`; none on the first one. Samples closer than 1 ms are not a rate.
    pub fn rate(&self, key: &str, now: i64, cpu_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.get(key).copied();
        match previous {
            Some((then, _)) if now - then < 1_000_000 => None,
            Some((then, used)) => {
                last.insert(key.to_string(), (now, cpu_ns));
                let elapsed = u128::try_from(now - then).ok()?;
                let spent = u128::from(cpu_ns.saturating_sub(used));
                u64::try_from(spent * 1_000_000_000 / elapsed).ok()
            }
            None => {
                last.insert(key.to_string(), (now, cpu_ns));
                None
            }
        }
    }

    /// Drops the samples of objects that are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).retain(|key, _| keep(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_previous_sample() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 0), None, "no rate from one sample");
        // Half a core for two seconds.
        assert_eq!(rates.rate("c", 3_000_000_000, 1_000_000_000), Some(500_000_000));
        assert_eq!(rates.rate("c", 3_000_000_100, 1_000_000_000), None, "too close to the last sample");
        rates.retain(|_| false);
        assert_eq!(rates.rate("c", 4_000_000_000, 1_000_000_000), None);
    }
}
