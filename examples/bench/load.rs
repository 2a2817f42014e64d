//! `bench load`: are the cheap calls kubelet makes all the time answered promptly
//! while berth does slow work? With 10 pods running a busybox `sleep 3600` each,
//! `CLIENTS` concurrent clients (each on a connection of its own) call
//! ContainerStatus and ListPodSandbox in a loop, first with berth idle (the
//! floor), then while a pull of 4 x 64 MiB random layers downloads, unpacks and
//! commits and another image of 2 x 32 MiB is removed (its snapshots collected).
//! Median, p95 and worst latency of each phase, side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::cri::v1::{
    ContainerStatusRequest, ImageSpec, ListPodSandboxRequest, PullImageRequest, RemoveImageRequest,
};

use super::shared::{Stage, machine_note, reap_zombie_children, report_leftovers};
use super::{median, ms, percentile};
use crate::support::image::{Compression, ImageBuilder, Layer};

/// Concurrent callers, as in the issue that asked for this figure.
const CLIENTS: usize = 20;
const PODS: usize = 10;
/// Calls each client makes in the idle phase.
const IDLE_ROUNDS: usize = 25;

pub async fn load() {
    let stage = Stage::start().await;
    let keep = stage.keep();
    let mut bench = stage.bench().await;
    eprintln!("bench: {PODS} pods with one container each...");
    let mut running = Vec::new();
    for i in 0..PODS {
        running.push(bench.start(&format!("load-{i}")).await.0);
    }
    let containers: Vec<String> = running.iter().map(|ids| ids.container.clone()).collect();
    reap_zombie_children(&keep);

    eprintln!("bench: building and pushing a 4 x 64 MiB image and a 2 x 32 MiB one...");
    let mut big = ImageBuilder::new();
    for seed in 0..4 {
        big = big.layer(Layer::random(64 << 20, 100 + seed), Compression::Gzip);
    }
    big.cmd(["sh"]).build().push(&stage.registry, "bench/load-big", "latest").await;
    let mut doomed = ImageBuilder::new();
    for seed in 0..2 {
        doomed = doomed.layer(Layer::random(32 << 20, 200 + seed), Compression::Gzip);
    }
    doomed.cmd(["sh"]).build().push(&stage.registry, "bench/load-doomed", "latest").await;
    let spec = |repo: &str| ImageSpec { image: format!("{}/{repo}:latest", stage.registry.host()), ..Default::default() };
    let mut images = stage.berth.images().await;
    let pull = |repo: &str| PullImageRequest { image: Some(spec(repo)), ..Default::default() };
    images.pull_image(pull("bench/load-doomed")).await.expect("pull the image to remove");

    println!("{CLIENTS} concurrent clients calling ContainerStatus and ListPodSandbox, {PODS} pods running");
    println!("{}", machine_note());
    println!("{:<44} {:>7} {:>10} {:>10} {:>10}", "phase", "calls", "median ms", "p95 ms", "worst ms");

    let idle = callers(&stage, &containers, Some(IDLE_ROUNDS), Arc::new(AtomicBool::new(false))).await;
    row("idle (the floor)", idle);

    let done = Arc::new(AtomicBool::new(false));
    let load = {
        let mut images = stage.berth.images().await;
        let (big, doomed) = (pull("bench/load-big"), RemoveImageRequest { image: Some(spec("bench/load-doomed")) });
        let done = done.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut puller = images.clone();
            let pulling = puller.pull_image(big);
            let removing = async {
                // Once the pull is under way, so the removal's collection meets it.
                tokio::time::sleep(Duration::from_millis(500)).await;
                images.remove_image(doomed).await
            };
            let (pulled, removed) = tokio::join!(pulling, removing);
            pulled.expect("the big pull");
            removed.expect("RemoveImage");
            done.store(true, Ordering::SeqCst);
            started.elapsed()
        })
    };
    let busy = callers(&stage, &containers, None, done).await;
    let took = load.await.expect("the load task");
    row(&format!("during a 256 MiB pull + RemoveImage ({:.1} s)", took.as_secs_f64()), busy);

    for ids in running {
        bench.end(ids).await;
    }
    reap_zombie_children(&keep);
    report_leftovers(&stage.berth, &stage.network, None);
}

/// Runs `CLIENTS` callers, each alternating ContainerStatus (of one of
/// `containers`) and ListPodSandbox, for `rounds` calls or until `done`; returns
/// every call's latency.
async fn callers(stage: &Stage, containers: &[String], rounds: Option<usize>, done: Arc<AtomicBool>) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let mut client = stage.berth.runtime().await;
        let container = containers[i % containers.len()].clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut call = 0usize;
            while rounds.is_none_or(|rounds| call < rounds) && !done.load(Ordering::SeqCst) {
                let started = Instant::now();
                if call % 2 == 0 {
                    let request = ContainerStatusRequest { container_id: container.clone(), verbose: false };
                    client.container_status(request).await.expect("ContainerStatus");
                } else {
                    client.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await.expect("ListPodSandbox");
                }
                latencies.push(started.elapsed());
                call += 1;
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a caller"));
    }
    all
}

fn row(phase: &str, latencies: Vec<Duration>) {
    let calls = latencies.len();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    println!(
        "{:<44} {:>7} {:>10.2} {:>10.2} {:>10.2}",
        phase,
        calls,
        ms(median(latencies.clone())),
        ms(percentile(latencies, 95.0)),
        ms(worst)
    );
}
