//! The CRI log file kubelet reads: stream tags, long lines split into partial
//! entries, and ReopenContainerLog after kubelet rotates the file.

use berth::cri::v1::{Mount, ReopenContainerLogRequest};

use crate::support::containers::{Bed, is_rfc3339_nano, log_entries, log_lines, log_lines_of, sh, wait_for_line};

#[tokio::test]
async fn stdout_stderr_and_long_lines_are_logged_in_the_cri_format() {
    let bed = Bed::new().await;
    let pod = bed.pod("logs").await;
    // 40 characters doubled ten times: a 40 KiB line, more than two 16 KiB entries.
    let script = "echo out1; echo err1 >&2; \
        s=0123456789012345678901234567890123456789; for i in 1 2 3 4 5 6 7 8 9 10; do s=$s$s; done; echo $s; \
        echo out2";
    let config = sh("logs", &bed.busybox, script);
    let log = pod.log_path(&config);
    assert_eq!(bed.run_to_exit(&pod, config).await.exit_code, 0);

    let entries = log_entries(&log);
    assert!(entries.iter().all(|e| is_rfc3339_nano(&e.time)), "{entries:?}");
    assert!(entries.iter().all(|e| e.tag == "P" || e.tag == "F"), "{entries:?}");
    let long = "0123456789012345678901234567890123456789".repeat(1024);
    assert_eq!(log_lines_of(&log, "stdout"), ["out1".to_string(), long, "out2".to_string()]);
    assert_eq!(log_lines_of(&log, "stderr"), ["err1"]);
    let stdout: Vec<&str> = entries.iter().filter(|e| e.stream == "stdout").map(|e| e.tag.as_str()).collect();
    assert_eq!(stdout, ["F", "P", "P", "F", "F"], "the long line is P, P, F: {entries:?}");
    let parts: Vec<usize> = entries.iter().filter(|e| e.tag == "P").map(|e| e.content.len()).collect();
    assert!(parts.iter().all(|&len| len <= 16 * 1024), "partial entries of at most 16 KiB: {parts:?}");
}

#[tokio::test]
async fn reopen_after_rotation_sends_new_lines_to_a_new_file() {
    let bed = Bed::new().await;
    let pod = bed.pod("rotate").await;
    let trigger = bed.berth.dir().join("trigger");
    std::fs::create_dir_all(&trigger).unwrap();
    let script = "echo one; while [ ! -e /trigger/go ]; do usleep 100000; done; echo two; sleep 1000";
    let mut config = sh("rotate", &bed.busybox, script);
    config.mounts = vec![Mount {
        container_path: "/trigger".into(),
        host_path: trigger.display().to_string(),
        ..Default::default()
    }];
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "one").await;

    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let request = ReopenContainerLogRequest { container_id: id.clone() };
    bed.berth.runtime().await.reopen_container_log(request).await.unwrap();
    assert!(log.exists(), "ReopenContainerLog made a new file at the log path");
    std::fs::write(trigger.join("go"), "").unwrap();
    wait_for_line(&log, "two").await;
    assert_eq!(log_lines(&rotated), ["one"]);
    assert_eq!(log_lines(&log), ["two"]);

    bed.stop(&id, 0).await.unwrap();
    let request = ReopenContainerLogRequest { container_id: id.clone() };
    let reopened = bed.berth.runtime().await.reopen_container_log(request).await;
    assert!(reopened.is_err(), "a stopped container has no log to reopen: {reopened:?}");
}

/// A tty container's output comes through its pty, all of it on stdout; the
/// test berth's run root is long enough that socket paths alone would not fit.
#[tokio::test]
async fn a_tty_containers_output_is_logged_as_stdout() {
    let bed = Bed::new().await;
    let pod = bed.pod("tty").await;
    let mut config = sh("tty", &bed.busybox, "echo out; echo err >&2; [ -t 1 ] && echo is-a-tty");
    config.tty = true;
    let log = pod.log_path(&config);
    assert_eq!(bed.run_to_exit(&pod, config).await.exit_code, 0);
    let lines: Vec<String> =
        log_lines_of(&log, "stdout").iter().map(|l| l.trim_end_matches('\r').to_string()).collect();
    assert_eq!(lines, ["out", "err", "is-a-tty"]);
    assert!(log_lines_of(&log, "stderr").is_empty());
}
