//! GetContainerEvents: every subscriber sees each lifecycle event once and in
//! order, with the pod's status and its containers' statuses as they are then.

use std::time::Duration;

use berth::cri::v1::{ContainerEventResponse, ContainerEventType, ContainerState, GetEventsRequest};
use tonic::Streaming;

use crate::support::containers::{Bed, sh};

async fn subscribe(bed: &Bed) -> Streaming<ContainerEventResponse> {
    bed.berth.runtime().await.get_container_events(GetEventsRequest {}).await.unwrap().into_inner()
}

async fn next(stream: &mut Streaming<ContainerEventResponse>) -> ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("an event within a minute")
        .expect("a healthy stream")
        .expect("the stream stays open")
}

#[tokio::test]
async fn two_subscribers_see_a_containers_lifecycle_once_and_in_order() {
    let bed = Bed::new().await;
    let pod = bed.pod("events").await;
    let (mut first, mut second) = (subscribe(&bed).await, subscribe(&bed).await);

    let id = bed.run(&pod, sh("events", &bed.busybox, "sleep 1000")).await;
    bed.stop(&id, 0).await.unwrap();
    bed.remove(&id).await.unwrap();

    let expected = [
        ContainerEventType::ContainerCreatedEvent,
        ContainerEventType::ContainerStartedEvent,
        ContainerEventType::ContainerStoppedEvent,
        ContainerEventType::ContainerDeletedEvent,
    ];
    for stream in [&mut first, &mut second] {
        let mut previous_time = 0;
        for kind in expected {
            let event = next(stream).await;
            assert_eq!((event.container_id.as_str(), event.container_event_type()), (id.as_str(), kind), "{event:?}");
            assert!(event.created_at >= previous_time, "events in order: {event:?}");
            previous_time = event.created_at;
            let sandbox = event.pod_sandbox_status.as_ref().expect("the pod's status");
            assert_eq!(sandbox.id, pod.id);
            let mine = event.containers_statuses.iter().find(|c| c.id == id);
            match kind {
                ContainerEventType::ContainerDeletedEvent => {
                    assert!(mine.is_none(), "a deleted container is not listed")
                }
                ContainerEventType::ContainerStoppedEvent => {
                    assert_eq!(mine.expect("its status").state(), ContainerState::ContainerExited);
                    assert_eq!(mine.expect("its status").exit_code, 137);
                }
                _ => assert!(mine.is_some(), "its status comes with the event: {event:?}"),
            }
        }
    }
    // Once each: nothing more arrives for this container.
    let extra = tokio::time::timeout(Duration::from_millis(500), first.message()).await;
    assert!(extra.is_err(), "no further event: {extra:?}");
}
