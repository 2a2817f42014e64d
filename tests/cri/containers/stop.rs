//! StopContainer: SIGKILL after the timeout for a process that ignores the stop
//! signal, and the image's StopSignal.

use berth::cri::v1::ContainerState;

use crate::support::containers::{Bed, sh, wait_for_line, wait_gone};
use crate::support::image::ImageBuilder;

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_after_the_timeout() {
    let bed = Bed::new().await;
    let pod = bed.pod("stubborn").await;
    let config = sh("stubborn", &bed.busybox, "trap '' TERM; echo trapped; while :; do sleep 1; done");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "trapped").await;
    let pid = bed.pid(&id).await;

    bed.stop(&id, 1).await.unwrap();
    let exited = bed.status(&id).await;
    assert_eq!(exited.state(), ContainerState::ContainerExited, "{exited:?}");
    assert_eq!(exited.exit_code, 137, "killed by SIGKILL: {exited:?}");
    assert_eq!(exited.reason, "Error");
    wait_gone(pid).await;
}

#[tokio::test]
async fn the_images_stop_signal_is_sent() {
    let bed = Bed::new().await;
    let image = bed.image("usr1", ImageBuilder::busybox().stop_signal("SIGUSR1")).await;
    let pod = bed.pod("usr1").await;
    // Exits 3 on USR1; TERM would kill it (137 is not 3, neither is 143).
    let config = sh("usr1", &image, "trap 'exit 3' USR1; echo trapped; while :; do usleep 100000; done");
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "trapped").await;
    bed.stop(&id, 30).await.unwrap();
    let exited = bed.status(&id).await;
    assert_eq!(exited.state(), ContainerState::ContainerExited, "{exited:?}");
    assert_eq!(exited.exit_code, 3, "the trap for SIGUSR1 ran: {exited:?}");
    assert_eq!(exited.reason, "Error");
}

/// The config's stop signal (CRI 1.33+) wins over the image's; ContainerStatus
/// reports the one StopContainer sends (SIGTERM when neither names one), and a
/// real-time signal, which berth cannot send by name, is refused at create.
#[tokio::test]
async fn the_configs_stop_signal_is_sent_and_reported() {
    use berth::cri::v1::Signal as CriSignal;
    let bed = Bed::new().await;
    let pod = bed.pod("stopsignal").await;
    let script = "trap 'echo got-usr2; exit 0' USR2; trap 'echo got-term; exit 1' TERM; echo ready; \
        while :; do usleep 100000; done";
    let mut config = sh("configured", &bed.busybox, script);
    config.stop_signal = CriSignal::Sigusr2 as i32;
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;
    assert_eq!(bed.status(&id).await.stop_signal(), CriSignal::Sigusr2);
    bed.stop(&id, 30).await.expect("StopContainer");
    let exited = bed.wait_exited(&id).await;
    assert_eq!(exited.exit_code, 0, "the trap for SIGUSR2 ran: {exited:?}");
    assert_eq!(crate::support::containers::log_lines(&log), ["ready", "got-usr2"]);

    let plain = bed.create(&pod, sh("plain", &bed.busybox, "true")).await.expect("CreateContainer");
    assert_eq!(bed.status(&plain).await.stop_signal(), CriSignal::Sigterm, "neither the config nor the image names one");

    let mut realtime = sh("realtime", &bed.busybox, "true");
    realtime.stop_signal = CriSignal::Sigrtmin as i32;
    let err = bed.create(&pod, realtime).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("config.stop_signal"), "{err:?}");
}
