//! berth's whole CRI surface, as its proto defines it: every RPC of both
//! services is served, or answers Unimplemented naming itself, on purpose (an
//! RPC added to the proto fails the first test until it is put in one list or
//! the other); and the list-streaming calls past the message limit.

use berth::cri::v1 as cri;
use berth::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::containers::{Bed, sh};

/// Answered with Unimplemented, each for a stated reason (README's status table).
const UNSERVED: &[&str] = &[
    // CRIU cannot initialise on these VMs' kernel.
    "CheckpointContainer",
    "CheckpointPod",
    "RestorePod",
];

fn rpcs_in_proto() -> Vec<String> {
    let proto = include_str!("../../proto/runtime/v1/api.proto");
    proto
        .lines()
        .filter_map(|line| line.trim().strip_prefix("rpc "))
        .filter_map(|rest| rest.split('(').next())
        .map(str::to_string)
        .collect()
}

/// Calls `rpc` with an empty request; its status code and message.
async fn call(berth: &Berth, rpc: &str) -> (Code, String) {
    fn outcome<T>(result: Result<T, tonic::Status>) -> (Code, String) {
        match result {
            Ok(_) => (Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_string()),
        }
    }
    let mut rt = berth.runtime().await;
    let mut im = berth.images().await;
    match rpc {
        "Version" => outcome(rt.version(cri::VersionRequest::default()).await),
        "RunPodSandbox" => outcome(rt.run_pod_sandbox(cri::RunPodSandboxRequest::default()).await),
        "StopPodSandbox" => outcome(rt.stop_pod_sandbox(cri::StopPodSandboxRequest::default()).await),
        "RemovePodSandbox" => outcome(rt.remove_pod_sandbox(cri::RemovePodSandboxRequest::default()).await),
        "PodSandboxStatus" => outcome(rt.pod_sandbox_status(cri::PodSandboxStatusRequest::default()).await),
        "ListPodSandbox" => outcome(rt.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await),
        "StreamPodSandboxes" => outcome(rt.stream_pod_sandboxes(cri::StreamPodSandboxesRequest::default()).await),
        "CreateContainer" => outcome(rt.create_container(cri::CreateContainerRequest::default()).await),
        "StartContainer" => outcome(rt.start_container(cri::StartContainerRequest::default()).await),
        "StopContainer" => outcome(rt.stop_container(cri::StopContainerRequest::default()).await),
        "RemoveContainer" => outcome(rt.remove_container(cri::RemoveContainerRequest::default()).await),
        "ListContainers" => outcome(rt.list_containers(cri::ListContainersRequest::default()).await),
        "StreamContainers" => outcome(rt.stream_containers(cri::StreamContainersRequest::default()).await),
        "ContainerStatus" => outcome(rt.container_status(cri::ContainerStatusRequest::default()).await),
        "UpdateContainerResources" => {
            outcome(rt.update_container_resources(cri::UpdateContainerResourcesRequest::default()).await)
        }
        "ReopenContainerLog" => outcome(rt.reopen_container_log(cri::ReopenContainerLogRequest::default()).await),
        "ExecSync" => outcome(rt.exec_sync(cri::ExecSyncRequest::default()).await),
        "Exec" => outcome(rt.exec(cri::ExecRequest::default()).await),
        "Attach" => outcome(rt.attach(cri::AttachRequest::default()).await),
        "PortForward" => outcome(rt.port_forward(cri::PortForwardRequest::default()).await),
        "ContainerStats" => outcome(rt.container_stats(cri::ContainerStatsRequest::default()).await),
        "ListContainerStats" => outcome(rt.list_container_stats(cri::ListContainerStatsRequest::default()).await),
        "StreamContainerStats" => {
            outcome(rt.stream_container_stats(cri::StreamContainerStatsRequest::default()).await)
        }
        "PodSandboxStats" => outcome(rt.pod_sandbox_stats(cri::PodSandboxStatsRequest::default()).await),
        "ListPodSandboxStats" => outcome(rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default()).await),
        "StreamPodSandboxStats" => {
            outcome(rt.stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default()).await)
        }
        "UpdateRuntimeConfig" => outcome(rt.update_runtime_config(cri::UpdateRuntimeConfigRequest::default()).await),
        "Status" => outcome(rt.status(cri::StatusRequest::default()).await),
        "CheckpointContainer" => outcome(rt.checkpoint_container(cri::CheckpointContainerRequest::default()).await),
        "CheckpointPod" => outcome(rt.checkpoint_pod(cri::CheckpointPodRequest::default()).await),
        "RestorePod" => outcome(rt.restore_pod(cri::RestorePodRequest::default()).await),
        "GetContainerEvents" => outcome(rt.get_container_events(cri::GetEventsRequest::default()).await),
        "ListMetricDescriptors" => {
            outcome(rt.list_metric_descriptors(cri::ListMetricDescriptorsRequest::default()).await)
        }
        "ListPodSandboxMetrics" => {
            outcome(rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest::default()).await)
        }
        "StreamPodSandboxMetrics" => {
            outcome(rt.stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest::default()).await)
        }
        "RuntimeConfig" => outcome(rt.runtime_config(cri::RuntimeConfigRequest::default()).await),
        "UpdatePodSandboxResources" => {
            outcome(rt.update_pod_sandbox_resources(cri::UpdatePodSandboxResourcesRequest::default()).await)
        }
        "ListImages" => outcome(im.list_images(cri::ListImagesRequest::default()).await),
        "StreamImages" => outcome(im.stream_images(cri::StreamImagesRequest::default()).await),
        "ImageStatus" => outcome(im.image_status(cri::ImageStatusRequest::default()).await),
        "PullImage" => outcome(im.pull_image(cri::PullImageRequest::default()).await),
        "RemoveImage" => outcome(im.remove_image(cri::RemoveImageRequest::default()).await),
        "ImageFsInfo" => outcome(im.image_fs_info(cri::ImageFsInfoRequest::default()).await),
        other => panic!("{other} is in the proto but not in this test: serve it, or list it in UNSERVED"),
    }
}

#[tokio::test]
async fn every_rpc_is_served_or_answers_unimplemented_by_name() {
    let rpcs = rpcs_in_proto();

    for unserved in UNSERVED {
        assert!(rpcs.iter().any(|rpc| rpc == unserved), "{unserved} is not in the proto");
    }
    let berth = Berth::start().await;
    for rpc in &rpcs {
        let (code, message) = call(&berth, rpc).await;
        if UNSERVED.contains(&rpc.as_str()) {
            assert_eq!(code, Code::Unimplemented, "{rpc}: {message}");
            assert!(message.contains(rpc.as_str()), "{rpc}'s refusal names it: {message}");
        } else {
            assert_ne!(code, Code::Unimplemented, "{rpc} is served: {message}");
        }
    }
}

/// A node whose container list is larger than one gRPC message: ListContainers
/// cannot answer within kubelet's 16 MiB, StreamContainers sends every
/// container once, in messages well within it.
#[tokio::test]
async fn stream_containers_answers_past_the_message_limit_where_list_cannot() {
    const LIMIT: usize = 16 << 20;
    let bed = Bed::new().await;
    let pod = bed.pod("many").await;
    let mut ids = Vec::new();
    for i in 0..18 {
        let mut config = sh(&format!("c{i}"), &bed.busybox, "true");
        config.annotations.insert("payload".into(), "x".repeat(1 << 20));
        ids.push(bed.create(&pod, config).await.expect("CreateContainer"));
    }
    let channel = bed.berth.channel().await;
    let mut client = RuntimeServiceClient::new(channel).max_decoding_message_size(LIMIT);
    let listed = client.list_containers(cri::ListContainersRequest::default()).await;
    assert!(listed.is_err(), "18 MiB of containers fit no 16 MiB message");

    let mut stream = client.stream_containers(cri::StreamContainersRequest::default()).await.unwrap().into_inner();
    let (mut seen, mut messages) = (Vec::new(), 0);
    while let Some(message) = stream.message().await.expect("each message within the limit") {
        assert!(!message.containers.is_empty(), "no empty message");
        messages += 1;
        seen.extend(message.containers.into_iter().map(|c| c.id));
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every container exactly once");
    assert!(messages > 1, "in more than one message");
}
