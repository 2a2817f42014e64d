//! berth's own account of where a call's time goes: its metrics endpoint's
//! `berth_step_duration_seconds{rpc, step}` (a span per step: each CNI
//! plugin call, namespace pinning, the monitor's spawn, each runtime command,
//! store commits) and `berth_grpc_request_duration_seconds`, scraped before
//! and after a phase; the difference, divided by the calls made, is printed
//! per RPC, with what the steps leave unaccounted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

/// Sums (seconds) and counts of one scrape.
#[derive(Default, Clone)]
pub(crate) struct Scrape {
    /// By (rpc, step).
    steps: BTreeMap<(String, String), (f64, u64)>,
    /// By method, answered OK.
    rpcs: BTreeMap<String, (f64, u64)>,
}

/// Reads berth's metrics at `address` (host:port).
pub(crate) fn scrape(address: &str) -> Scrape {
    let mut stream = std::net::TcpStream::connect(address).expect("berth's metrics endpoint");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n").expect("scrape request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("scrape answer");
    let mut scrape = Scrape::default();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let Some((name, labels)) = series.split_once('{') else { continue };
        let labels = labels.trim_end_matches('}');
        let label = |key: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(key)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"'))
        };
        let entry = match name {
            "berth_step_duration_seconds_sum" | "berth_step_duration_seconds_count" => {
                let key = (label("rpc").unwrap_or_default().to_string(), label("step").unwrap_or_default().to_string());
                scrape.steps.entry(key).or_default()
            }
            "berth_grpc_request_duration_seconds_sum" | "berth_grpc_request_duration_seconds_count"
                if label("code") == Some("OK") =>
            {
                scrape.rpcs.entry(label("method").unwrap_or_default().to_string()).or_default()
            }
            _ => continue,
        };
        if name.ends_with("_sum") {
            entry.0 = value;
        } else {
            entry.1 = value as u64;
        }
    }
    scrape
}

/// Prints, for each of `rpcs`, the mean time per call between `before` and
/// `after`, its steps' means (largest first; a step counted n times per call
/// shows its whole share) and the rest: berth's own work between the steps.
pub(crate) fn print_breakdown(title: &str, rpcs: &[&str], before: &Scrape, after: &Scrape) {
    println!();
    println!("{title}: mean ms per call, from berth's step spans");
    for rpc in rpcs {
        let (sum, calls) = delta(before.rpcs.get(*rpc), after.rpcs.get(*rpc));
        if calls == 0 {
            continue;
        }
        let per_call = |seconds: f64| seconds * 1000.0 / calls as f64;
        println!("  {:<44} {:>8.2}", rpc, per_call(sum));
        let mut steps: Vec<(&str, f64, u64)> = after
            .steps
            .iter()
            .filter(|((step_rpc, _), _)| step_rpc == rpc)
            .map(|((_, step), now)| {
                let (seconds, count) = delta(before.steps.get(&(rpc.to_string(), step.clone())), Some(now));
                (step.as_str(), seconds, count)
            })
            .filter(|(_, _, count)| *count > 0)
            .collect();
        steps.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut accounted = 0.0;
        for (step, seconds, count) in &steps {
            accounted += seconds;
            let times = *count as f64 / calls as f64;
            let label = if (times - 1.0).abs() < 0.05 { step.to_string() } else { format!("{step} (x{times:.1})") };
            println!("    {:<42} {:>8.2}", label, per_call(*seconds));
        }
        // A span is closed a moment after its work, so the steps of a short
        // call can add up to a hair more than the call: shown as 0.
        println!("    {:<42} {:>8.2}", "berth between steps", per_call((sum - accounted).max(0.0)));
    }
}

fn delta(before: Option<&(f64, u64)>, after: Option<&(f64, u64)>) -> (f64, u64) {
    let (b, a) = (before.copied().unwrap_or_default(), after.copied().unwrap_or_default());
    (a.0 - b.0, a.1.saturating_sub(b.1))
}
