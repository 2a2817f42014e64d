//! ExecSync: output, exit codes, timeouts, and containers that are not running.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::support::containers::{Bed, WAIT, sh, wait_for_line};

/// Processes in the PID namespace of `pid` whose command line is `words`.
fn processes_in_namespace_of(pid: i32, words: &[&str]) -> Vec<i32> {
    let namespace = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let wanted: Vec<u8> = words.iter().flat_map(|w| w.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok().as_ref() == Some(&namespace))
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default() == wanted)
        .filter(|p| crate::support::containers::process_alive(*p))
        .collect()
}

#[tokio::test]
async fn exec_sync_captures_output_and_exit_code() {
    let bed = Bed::new().await;
    let pod = bed.pod("exec").await;
    let config = sh("target", &bed.busybox, "echo inside > /tmp/state; echo ready; sleep 1000");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;

    let reply = bed.exec(&id, &["sh", "-c", "cat /tmp/state; echo err >&2; exit 5"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&reply.stdout), "inside\n", "runs in the container's filesystem");
    assert_eq!(String::from_utf8_lossy(&reply.stderr), "err\n");
    assert_eq!(reply.exit_code, 5);

    let reply = bed.exec(&id, &["id", "-u"], 0).await.unwrap();
    assert_eq!((String::from_utf8_lossy(&reply.stdout).trim(), reply.exit_code), ("0", 0));

    // A large output comes back whole.
    let reply = bed.exec(&id, &["sh", "-c", "seq 1 20000"], 10).await.unwrap();
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(
        reply.stdout == expected.as_bytes(),
        "seq output of {} bytes came back as {}",
        expected.len(),
        reply.stdout.len()
    );

    let err = bed.exec(&id, &["/no/such/binary"], 10).await;
    match err {
        Ok(reply) => assert_ne!(reply.exit_code, 0, "{reply:?}"),
        Err(status) => assert!(status.message().contains("/no/such/binary"), "{status:?}"),
    }
}

#[tokio::test]
async fn exec_sync_past_its_timeout_fails_and_leaves_no_process() {
    let bed = Bed::new().await;
    let pod = bed.pod("exec-timeout").await;
    let config = sh("target", &bed.busybox, "echo ready; sleep 1000");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;
    let pid = bed.pid(&id).await;

    let err = bed.exec(&id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let deadline = Instant::now() + WAIT;
    loop {
        let left = processes_in_namespace_of(pid, &["sleep", "30"]);
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the timed-out exec's sleep is still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = bed.exec(&id, &["echo", "still", "fine"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&reply.stdout), "still fine\n", "the container is unharmed");
}

#[tokio::test]
async fn exec_sync_in_a_container_that_is_not_running_fails() {
    let bed = Bed::new().await;
    let pod = bed.pod("exec-dead").await;
    let created = bed.create(&pod, sh("created", &bed.busybox, "sleep 1000")).await.unwrap();
    let err = bed.exec(&created, &["true"], 10).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let exited = bed.run(&pod, sh("exited", &bed.busybox, "true")).await;
    bed.wait_exited(&exited).await;
    let err = bed.exec(&exited, &["true"], 10).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let err = bed.exec(&"a".repeat(64), &["true"], 10).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
}

/// Two streams of 12 MiB each would make a 24 MiB reply, past the 16 MiB a
/// kubelet takes: berth cuts their tails so the reply fits, as containerd
/// does, and the call succeeds with each stream's beginning.
#[tokio::test]
async fn exec_sync_output_is_cut_to_fit_one_reply() {
    const KUBELET_MAX_MESSAGE: usize = 16 * 1024 * 1024;
    let bed = Bed::new().await;
    let pod = bed.pod("exec-large").await;
    let id = bed.run(&pod, sh("target", &bed.busybox, "sleep 1000")).await;
    let mut client = bed.berth.runtime().await.max_decoding_message_size(KUBELET_MAX_MESSAGE);
    let script = "head -c 12582912 /dev/zero | tr '\\0' o; head -c 12582912 /dev/zero | tr '\\0' e >&2";
    let request = berth::cri::v1::ExecSyncRequest {
        container_id: id.clone(),
        cmd: vec!["sh".into(), "-c".into(), script.into()],
        timeout: 60,
    };
    let reply = client.exec_sync(request).await.expect("the reply fits kubelet's message limit").into_inner();
    assert_eq!(reply.exit_code, 0);
    assert!(reply.stdout.len() + reply.stderr.len() < KUBELET_MAX_MESSAGE);
    assert!(reply.stdout.len() > 7 << 20 && reply.stderr.len() > 7 << 20, "each stream keeps about half");
    assert!(reply.stdout.iter().all(|&b| b == b'o') && reply.stderr.iter().all(|&b| b == b'e'));
}
