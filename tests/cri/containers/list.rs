//! ListContainers and its filters.

use std::collections::HashMap;

use berth::cri::v1::{ContainerFilter, ContainerState};

use crate::support::containers::{Bed, sh, state_filter};

#[tokio::test]
async fn list_filters_by_id_state_pod_and_labels() {
    let bed = Bed::new().await;
    let pod_a = bed.pod("list-a").await;
    let pod_b = bed.pod("list-b").await;
    let created = bed.create(&pod_a, sh("created", &bed.busybox, "sleep 1000")).await.unwrap();
    let running = bed.run(&pod_a, sh("running", &bed.busybox, "sleep 1000")).await;
    let exited = bed.run(&pod_b, sh("exited", &bed.busybox, "true")).await;
    bed.wait_exited(&exited).await;

    let ids = |containers: Vec<berth::cri::v1::Container>| {
        let mut ids: Vec<String> = containers.into_iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut ids: Vec<&String>| {
        ids.sort();
        ids.into_iter().cloned().collect::<Vec<_>>()
    };

    let all = bed.list_all().await;
    assert_eq!(ids(all.clone()), sorted(vec![&created, &running, &exited]));
    let listed = all.iter().find(|c| c.id == running).unwrap();
    assert_eq!(listed.pod_sandbox_id, pod_a.id);
    assert_eq!(listed.metadata.as_ref().unwrap().name, "running");
    assert_eq!(listed.image.as_ref().unwrap().image, bed.busybox);
    assert!(!listed.image_ref.is_empty(), "{listed:?}");
    assert_eq!(listed.state(), ContainerState::ContainerRunning);
    assert!(listed.created_at > 1_600_000_000_000_000_000, "{listed:?}");

    let by_id = ContainerFilter { id: running.clone(), ..Default::default() };
    assert_eq!(ids(bed.list(by_id).await), vec![running.clone()]);
    let by_prefix = ContainerFilter { id: running[..10].to_string(), ..Default::default() };
    assert_eq!(ids(bed.list(by_prefix).await), vec![running.clone()], "an ID prefix filters too");
    let unknown = ContainerFilter { id: "0".repeat(64), ..Default::default() };
    assert!(bed.list(unknown).await.is_empty());

    for (state, expected) in [
        (ContainerState::ContainerCreated, &created),
        (ContainerState::ContainerRunning, &running),
        (ContainerState::ContainerExited, &exited),
    ] {
        let filter = ContainerFilter { state: state_filter(state), ..Default::default() };
        assert_eq!(ids(bed.list(filter).await), vec![expected.clone()], "{state:?}");
    }

    let in_a = ContainerFilter { pod_sandbox_id: pod_a.id.clone(), ..Default::default() };
    assert_eq!(ids(bed.list(in_a).await), sorted(vec![&created, &running]));
    let in_b = ContainerFilter { pod_sandbox_id: pod_b.id[..12].to_string(), ..Default::default() };
    assert_eq!(ids(bed.list(in_b).await), vec![exited.clone()], "a pod ID prefix filters too");

    let label = |value: &str| HashMap::from([("container".to_string(), value.to_string())]);
    let by_label = ContainerFilter { label_selector: label("running"), ..Default::default() };
    assert_eq!(ids(bed.list(by_label).await), vec![running.clone()]);
    let no_match = ContainerFilter { label_selector: label("nobody"), ..Default::default() };
    assert!(bed.list(no_match).await.is_empty());

    // Filters combine: running in pod A with the label of the created one is nothing.
    let combined = ContainerFilter {
        pod_sandbox_id: pod_a.id.clone(),
        state: state_filter(ContainerState::ContainerRunning),
        label_selector: label("created"),
        ..Default::default()
    };
    assert!(bed.list(combined).await.is_empty());
    let combined = ContainerFilter {
        pod_sandbox_id: pod_a.id.clone(),
        state: state_filter(ContainerState::ContainerRunning),
        label_selector: label("running"),
        ..Default::default()
    };
    assert_eq!(ids(bed.list(combined).await), vec![running.clone()]);
}
