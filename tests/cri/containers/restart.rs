//! Containers outlive berth: after a crash (SIGKILL) or a clean stop (SIGTERM),
//! the restarted berth finds the running container as it was and learns the
//! exit of one that ended while it was down.

use berth::cri::v1::{ContainerState, Mount};

use crate::support::containers::{Bed, RUNC, log_lines, process_alive, runc_list, sh, wait_for_line, wait_gone};

/// The highest `tick <n>` in a log.
fn last_tick(log: &std::path::Path) -> u64 {
    log_lines(log).iter().filter_map(|l| l.strip_prefix("tick ")?.parse().ok()).max().unwrap_or(0)
}

async fn containers_survive_a_berth_restart(crash: bool) {
    let mut bed = Bed::new().await;
    let pod = bed.pod("survivors").await;
    let trigger = bed.berth.dir().join("trigger");
    std::fs::create_dir_all(&trigger).unwrap();

    let ticker = sh("ticker", &bed.busybox, "i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done");
    let ticker_log = pod.log_path(&ticker);
    let ticker = bed.run(&pod, ticker).await;
    // Exits 7 when the test says so: while berth is down.
    let mut quitter =
        sh("quitter", &bed.busybox, "echo waiting; while [ ! -e /trigger/exit ]; do usleep 100000; done; exit 7");
    quitter.mounts = vec![Mount {
        container_path: "/trigger".into(),
        host_path: trigger.display().to_string(),
        ..Default::default()
    }];
    let quitter_log = pod.log_path(&quitter);
    let quitter = bed.run(&pod, quitter).await;
    wait_for_line(&ticker_log, "tick 1").await;
    wait_for_line(&quitter_log, "waiting").await;
    let ticker_pid = bed.pid(&ticker).await;
    let quitter_pid = bed.pid(&quitter).await;
    let started_at = bed.status(&ticker).await.started_at;

    if crash {
        bed.berth.kill();
    } else {
        let status = bed.berth.stop().expect("berth was running");
        assert!(status.success(), "berth's exit on SIGTERM: {status}");
    }
    std::fs::write(trigger.join("exit"), "").unwrap();
    wait_gone(quitter_pid).await;
    let before_restart = last_tick(&ticker_log);
    assert!(process_alive(ticker_pid), "the ticker died with berth");
    bed.berth.restart().await;

    let mut listed: Vec<(String, ContainerState)> =
        bed.list_all().await.into_iter().map(|c| (c.id.clone(), c.state())).collect();
    listed.sort();
    let mut expected =
        vec![(ticker.clone(), ContainerState::ContainerRunning), (quitter.clone(), ContainerState::ContainerExited)];
    expected.sort();
    assert_eq!(listed, expected);

    let running = bed.status(&ticker).await;
    assert_eq!(running.state(), ContainerState::ContainerRunning);
    assert_eq!(running.started_at, started_at);
    assert_eq!(bed.pid(&ticker).await, ticker_pid, "the same process");
    // Its monitor kept logging while berth was down and after.
    wait_for_line(&ticker_log, &format!("tick {}", before_restart + 2)).await;

    let exited = bed.status(&quitter).await;
    assert_eq!(exited.state(), ContainerState::ContainerExited);
    assert_eq!(exited.exit_code, 7, "{exited:?}");
    assert_eq!(exited.reason, "Error");
    assert!(exited.finished_at > exited.started_at, "{exited:?}");

    bed.stop(&ticker, 0).await.unwrap();
    assert_eq!(bed.status(&ticker).await.state(), ContainerState::ContainerExited);
    wait_gone(ticker_pid).await;
    for id in [&ticker, &quitter] {
        bed.remove(id).await.unwrap();
    }
    assert!(bed.list_all().await.is_empty());
    assert!(bed.runc_containers().is_empty(), "{:?}", bed.runc_containers());
}

#[tokio::test]
async fn containers_survive_berth_being_killed() {
    containers_survive_a_berth_restart(true).await;
}

#[tokio::test]
async fn containers_survive_berth_being_stopped() {
    containers_survive_a_berth_restart(false).await;
}

/// A handler's root is berth's own: a container its runtime holds there with
/// no record in berth (made behind berth's back, or left by a crash) is deleted
/// when berth starts; berth's own containers stay.
#[tokio::test]
async fn a_container_the_runtime_holds_without_a_record_is_deleted_at_start() {
    let mut bed = Bed::new().await;
    let pod = bed.pod("orphans").await;
    let config = sh("kept", &bed.busybox, "echo up; sleep 1000");
    let log = pod.log_path(&config);
    let kept = bed.run(&pod, config).await;
    wait_for_line(&log, "up").await;
    bed.berth.kill();

    // The built-in runc handler's root, whichever handler is the default.
    let root = bed.berth.paths.run_root.join("runtimes/runc");
    let bundle = bed.berth.dir().join("orphan-bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    let mut spec = oci_spec::runtime::Spec::default();
    spec.root_mut().as_mut().unwrap().set_path(bundle.join("rootfs"));
    let process = spec.process_mut().as_mut().unwrap();
    process.set_args(Some(vec!["/bin/busybox".into(), "sleep".into(), "1000".into()]));
    process.set_terminal(Some(false));
    let orphan = format!("{:0>64x}", std::process::id() as u64 * 7919 + 1);
    let cgroup = format!("/berth-test-orphan-{orphan}");
    spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(cgroup.clone().into()));
    spec.save(bundle.join("config.json")).unwrap();
    let created = std::process::Command::new(RUNC)
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle"])
        .arg(&bundle)
        .arg(&orphan)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(created.success(), "runc create of the orphan");
    assert!(runc_list(&root).contains(&orphan));

    bed.berth.restart().await;
    assert!(!runc_list(&root).contains(&orphan), "the orphan is deleted at start-up");
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory").join(&cgroup[1..]).exists(), "and its cgroup");
    assert_eq!(bed.status(&kept).await.state(), ContainerState::ContainerRunning, "berth's own container stays");
}
