//! A hostPath on a filesystem that stopped answering (a FUSE daemon that never
//! reads its requests, as an NFS server gone away): CreateContainer fails with
//! DeadlineExceeded naming the path instead of hanging for ever, the node's other
//! calls go on meanwhile, and kubelet's retries are refused at once while the
//! first call is still stuck.

use berth::cri::v1::{ContainerState, Mount};
use tonic::Code;

use crate::support::containers::{Bed, sh};
use crate::support::hung_fuse::HungFuse;

#[tokio::test]
async fn a_host_path_on_a_hung_filesystem_fails_the_create_and_holds_nothing_else() {
    let hung = HungFuse::mount();
    let bed = Bed::new().await;
    let stuck_pod = bed.pod("stuck").await;
    let other_pod = bed.pod("other").await;
    let host_path = hung.mount_point.join("data");
    let mut config = sh("app", &bed.busybox, "sleep 1000");
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: host_path.display().to_string(),
        ..Default::default()
    }];

    let stuck_create = {
        let (pod, config) = (stuck_pod.create_request(config.clone()), config.clone());
        std::fs::create_dir_all(stuck_pod.log_path(&config).parent().expect("log dir")).expect("log dir");
        let mut client = bed.berth.runtime().await;
        tokio::spawn(async move { client.create_container(pod).await })
    };
    // Another pod's container is created, started and listed while that create hangs.
    let other = bed.run(&other_pod, sh("other", &bed.busybox, "sleep 1000")).await;
    assert_eq!(bed.status(&other).await.state(), ContainerState::ContainerRunning);
    assert!(!stuck_create.is_finished(), "the other pod's calls waited for the hung one");

    // Only a guard: without a bound of berth's own, the create would never end.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(120), stuck_create).await;
    let error = ended.expect("the create on a hung host path never ended").expect("the create task");
    let error = error.expect_err("the hung host path fails the create");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(error.message().contains(&host_path.display().to_string()), "the error names the path: {error:?}");

    // kubelet's retry while the first call is still stuck is refused at once.
    let retry = bed.create(&stuck_pod, config).await.expect_err("the retry on the hung path");
    assert_eq!(retry.code(), Code::DeadlineExceeded, "{retry:?}");
    assert!(retry.message().contains("still stuck"), "{retry:?}");
    let names: Vec<_> = bed.list_all().await.into_iter().filter_map(|c| c.metadata).map(|m| m.name).collect();
    assert_eq!(names, ["other"], "the failed creates left no container");
}
