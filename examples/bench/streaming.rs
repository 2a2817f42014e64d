//! `bench streaming`: an exec of `true` through the streaming server (the Exec
//! call, the SPDY upgrade, the streams, the exit status) against ExecSync and
//! against bare `runc exec`, then 256 MiB of exec output through SPDY and
//! WebSocket with berth's RSS before and after.

use std::time::{Duration, Instant};

use futures::StreamExt;
use berth::cri::v1::{ExecRequest, ExecSyncRequest};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use super::shared::{Stage, machine_note, mib, reap_zombie_children, report_leftovers};
use super::{median, ms, percentile, status_kib};
use crate::support::containers::RUNC;
use crate::support::streaming::{SpdyCommand, Wanted, websocket};

const RUNS: usize = 30;
const BIG: usize = 256 << 20;
const V4: &[&str] = &["v4.channel.k8s.io"];
const OUT: Wanted = Wanted { stdin: false, stdout: true, stderr: true, tty: false };

pub async fn streaming() {
    let stage = Stage::start().await;
    let pid = stage.berth_pid();
    let keep = stage.keep();
    let mut bench = stage.bench().await;
    let (ids, _) = bench.start("streaming").await;
    let id = ids.container.clone();
    let runc_root = stage.berth.paths.run_root.join("runtimes/runc");

    eprintln!("bench: {RUNS} execs of `true` each: Exec + SPDY, ExecSync, bare runc exec...");
    let (mut streamed, mut synced, mut bare) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let at = Instant::now();
        let request = exec_request(&id, &["true"]);
        let url = bench.client.exec(request).await.expect("Exec").into_inner().url;
        let (_, _, error) = SpdyCommand::connect(&url, V4, OUT).await.outputs().await;
        streamed.push(at.elapsed());
        assert!(error.contains("Success"), "exec of true: {error}");

        let at = Instant::now();
        let request = ExecSyncRequest { container_id: id.clone(), cmd: vec!["true".into()], timeout: 0 };
        let reply = bench.client.exec_sync(request).await.expect("ExecSync").into_inner();
        synced.push(at.elapsed());
        assert_eq!(reply.exit_code, 0);

        let at = Instant::now();
        let status = tokio::process::Command::new(RUNC)
            .arg("--root")
            .arg(&runc_root)
            .args(["exec", &id, "true"])
            .status()
            .await
            .expect("runc exec");
        bare.push(at.elapsed());
        assert!(status.success());
    }
    reap_zombie_children(&keep);

    eprintln!("bench: {} MiB of output through SPDY, then WebSocket...", BIG >> 20);
    let rss_before = status_kib(pid, "VmRSS");
    let cmd = ["head", "-c", &BIG.to_string(), "/dev/zero"];
    let out_only = ExecRequest { stderr: false, ..exec_request(&id, &cmd) };
    let url = bench.client.exec(out_only.clone()).await.expect("Exec").into_inner().url;
    let at = Instant::now();
    let mut command = SpdyCommand::connect(&url, V4, Wanted { stderr: false, ..OUT }).await;
    let mut stdout = command.stdout.take().expect("stdout");
    let mut buffer = vec![0u8; 256 * 1024];
    let mut total = 0;
    let mut peak = rss_before;
    while let Ok(n) = stdout.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        total += n;
        if total % (16 << 20) < n {
            peak = peak.max(status_kib(pid, "VmRSS"));
        }
    }
    let spdy_time = at.elapsed();
    assert_eq!(total, BIG, "every byte through SPDY");
    drop(command);

    let url = bench.client.exec(out_only).await.expect("Exec").into_inner().url;
    let at = Instant::now();
    let (mut socket, _) = websocket(&url, V4).await;
    let mut total = 0;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Binary(bytes) if bytes.first() == Some(&1) => {
                total += bytes.len() - 1;
                if total % (16 << 20) < bytes.len() {
                    peak = peak.max(status_kib(pid, "VmRSS"));
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    let ws_time = at.elapsed();
    assert_eq!(total, BIG, "every byte through WebSocket");
    let rss_after = status_kib(pid, "VmRSS");

    bench.end(ids).await;
    reap_zombie_children(&keep);
    report_leftovers(&stage.berth, &stage.network, None);

    println!("streaming: one busybox `sleep 3600` container; {RUNS} runs of each exec, interleaved");
    println!("{}", machine_note());
    println!("{:<52} {:>10} {:>10}", "", "median ms", "p95 ms");
    let row = |name: &str, runs: Vec<Duration>| {
        let (median, p95) = (median(runs.clone()), percentile(runs, 95.0));
        println!("{name:<52} {:>10.2} {:>10.2}", ms(median), ms(p95));
    };
    row("exec `true`: Exec + SPDY upgrade + streams + status", streamed);
    row("exec `true`: ExecSync", synced);
    row("exec `true`: bare `runc exec` (the floor)", bare);
    let rate = |time: Duration| (BIG as f64 / (1 << 20) as f64) / time.as_secs_f64();
    println!(
        "{} MiB of exec output: SPDY {:.0} MiB/s, WebSocket {:.0} MiB/s",
        BIG >> 20,
        rate(spdy_time),
        rate(ws_time)
    );
    println!(
        "berth VmRSS {:.1} MiB before, {:.1} MiB at most during, {:.1} MiB after",
        mib(rss_before),
        mib(peak),
        mib(rss_after)
    );
}

fn exec_request(id: &str, cmd: &[&str]) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    }
}
