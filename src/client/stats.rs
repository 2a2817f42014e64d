//! `berth stats`: containers' resource usage.

use std::time::Duration;

use clap::Args;

use crate::cri::v1::{ContainerStats, ContainerStatsFilter, ListContainerStatsRequest, ListContainerStatsResponse};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output::{self, Format, Output};
use super::resolve;

/// When the runtime gives no CPU rate, the usage is read twice this far apart.
const CPU_SAMPLE: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Containers by ID or unique prefix [default: all]
    pub containers: Vec<String>,
    /// Only the containers of this pod (ID or unique prefix)
    #[arg(short, long)]
    pub pod: Option<String>,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn stats(args: StatsArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let pod_sandbox_id = match &args.pod {
        Some(pod) => resolve::pod(&cri, pod).await?,
        None => String::new(),
    };
    let mut filters = Vec::new();
    for wanted in &args.containers {
        let id = resolve::container(&cri, wanted).await?;
        filters.push(ContainerStatsFilter { id, pod_sandbox_id: pod_sandbox_id.clone(), ..Default::default() });
    }
    if filters.is_empty() {
        filters.push(ContainerStatsFilter { pod_sandbox_id, ..Default::default() });
    }
    let first = list(&cri, &filters).await?;
    if args.output.format != Format::Table {
        return output::emit(&output::render(args.output.format, &first)?).await;
    }
    let needs_second = first.stats.iter().any(|s| nano_cores(s).is_none());
    let second = if needs_second {
        tokio::time::sleep(CPU_SAMPLE).await;
        Some(list(&cri, &filters).await?)
    } else {
        None
    };
    let mut table = output::table(&["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
    for stats in &first.stats {
        let attributes = stats.attributes.clone().unwrap_or_default();
        let later = second.as_ref().and_then(|s| s.stats.iter().find(|l| same(l, stats)));
        let cpu = nano_cores(stats).or_else(|| later.and_then(|later| rate(stats, later)));
        let memory = stats.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map(|v| v.value);
        let disk = stats.writable_layer.as_ref().and_then(|w| w.used_bytes.as_ref()).map(|v| v.value);
        let inodes = stats.writable_layer.as_ref().and_then(|w| w.inodes_used.as_ref()).map(|v| v.value);
        table.add_row([
            output::short_id(&attributes.id),
            attributes.metadata.map(|m| m.name).unwrap_or_default(),
            cpu.map_or("-".into(), |nano| format!("{:.2}", nano as f64 / 1e7)),
            memory.map_or("-".into(), |b| indicatif::HumanBytes(b).to_string()),
            disk.map_or("-".into(), |b| indicatif::HumanBytes(b).to_string()),
            inodes.map_or("-".into(), |n| n.to_string()),
        ]);
    }
    output::emit_table(&table).await
}

async fn list(cri: &Cri, filters: &[ContainerStatsFilter]) -> Result<ListContainerStatsResponse, ClientError> {
    let mut all = ListContainerStatsResponse::default();
    for filter in filters {
        let request = ListContainerStatsRequest { filter: Some(filter.clone()) };
        all.stats.extend(cri.call("ListContainerStats", cri.runtime().list_container_stats(request)).await?.stats);
    }
    Ok(all)
}

fn same(a: &ContainerStats, b: &ContainerStats) -> bool {
    a.attributes.as_ref().map(|a| &a.id) == b.attributes.as_ref().map(|b| &b.id)
}

fn nano_cores(stats: &ContainerStats) -> Option<u64> {
    stats.cpu.as_ref()?.usage_nano_cores.as_ref().map(|v| v.value)
}

/// CPU nanoseconds per second between two readings: nano-cores.
fn rate(earlier: &ContainerStats, later: &ContainerStats) -> Option<u64> {
    let (a, b) = (earlier.cpu.as_ref()?, later.cpu.as_ref()?);
    let used = b.usage_core_nano_seconds.as_ref()?.value.checked_sub(a.usage_core_nano_seconds.as_ref()?.value)?;
    let elapsed = u64::try_from(b.timestamp.checked_sub(a.timestamp)?).ok().filter(|&ns| ns > 0)?;
    Some((used as u128 * 1_000_000_000 / elapsed as u128) as u64)
}
