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
