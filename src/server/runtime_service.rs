//! RuntimeService: translates CRI messages to `Daemon` calls and back. No logic
//! of its own beyond that translation.

use std::pin::Pin;
use std::sync::Arc;

use crate::cri::v1 as cri;
use crate::cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::list_stream::{Responses, chunked};
use super::status_code::{not_implemented, to_status};
use super::{container, pod, stats};
use crate::config::CgroupDriver;
use crate::container::{ContainerError, StreamChoice};
use crate::daemon::Daemon;

type Rpc<T> = Result<Response<T>, Status>;
type EventStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;


pub struct RuntimeApi {
    daemon: Arc<Daemon>,
}

impl RuntimeApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeApi { daemon }
    }
}

fn invalid_argument(field: &str, reason: &str) -> Status {
    to_status(ContainerError::invalid(field, reason))
}

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    type GetContainerEventsStream = EventStream;
    type StreamPodSandboxesStream = Responses<cri::StreamPodSandboxesResponse>;
    type StreamContainersStream = Responses<cri::StreamContainersResponse>;
    type StreamContainerStatsStream = Responses<cri::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = Responses<cri::StreamPodSandboxStatsResponse>;
    type StreamPodSandboxMetricsStream = Responses<cri::StreamPodSandboxMetricsResponse>;

    async fn version(&self, _: Request<cri::VersionRequest>) -> Rpc<cri::VersionResponse> {
        let v = self.daemon.version();
        Ok(Response::new(cri::VersionResponse {
            version: v.version.into(),
            runtime_name: v.runtime_name.into(),
            runtime_version: v.runtime_version.into(),
            runtime_api_version: v.runtime_api_version.into(),
        }))
    }

    async fn status(&self, request: Request<cri::StatusRequest>) -> Rpc<cri::StatusResponse> {
        let status = self.daemon.status(request.get_ref().verbose).await;
        let conditions = status
            .conditions
            .into_iter()
            .map(|c| cri::RuntimeCondition {
                r#type: c.kind.as_str().into(),
                status: c.ready,
                reason: c.reason,
                message: c.message,
            })
            .collect();
        let runtime_handlers = status
            .handlers
            .into_iter()
            .map(|h| cri::RuntimeHandler {
                name: h.name,
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: h.features.recursive_read_only_mounts,
                    user_namespaces: h.features.user_namespaces,
                }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info: status.info.into_iter().collect(),
            runtime_handlers,
            // berth applies Merge and Strict itself (container/spec/user.rs) and
            // reports the effective user in ContainerStatus.
            features: Some(cri::RuntimeFeatures { supplemental_groups_policy: true, ..Default::default() }),
        }))
    }

    async fn runtime_config(&self, _: Request<cri::RuntimeConfigRequest>) -> Rpc<cri::RuntimeConfigResponse> {
        let cgroup_driver = match self.daemon.cgroup_driver() {
            CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
            CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: cgroup_driver.into() }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Rpc<cri::UpdateRuntimeConfigResponse> {
        let pod_cidr = request
            .get_ref()
            .runtime_config
            .as_ref()
            .and_then(|c| c.network_config.as_ref())
            .map(|n| n.pod_cidr.as_str())
            .unwrap_or_default();
        self.daemon.update_pod_cidr(pod_cidr);
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(&self, request: Request<cri::RunPodSandboxRequest>) -> Rpc<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        let spec = pod::pod_spec(request.config, request.runtime_handler)?;
        let pod_sandbox_id = self.daemon.run_pod_sandbox(spec).await.map_err(to_status)?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(&self, request: Request<cri::StopPodSandboxRequest>) -> Rpc<cri::StopPodSandboxResponse> {
        self.daemon.stop_pod_sandbox(&request.get_ref().pod_sandbox_id).await.map_err(to_status)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Rpc<cri::RemovePodSandboxResponse> {
        self.daemon.remove_pod_sandbox(&request.get_ref().pod_sandbox_id).await.map_err(to_status)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Rpc<cri::PodSandboxStatusResponse> {
        let request = request.into_inner();
        let status = self.daemon.sandboxes().status(&request.pod_sandbox_id, request.verbose).map_err(to_status)?;
        Ok(Response::new(pod::pod_status(status)))
    }

    async fn list_pod_sandbox(&self, request: Request<cri::ListPodSandboxRequest>) -> Rpc<cri::ListPodSandboxResponse> {
        let filter = pod::filter(request.into_inner().filter);
        let items = self.daemon.sandboxes().list(&filter).map_err(to_status)?;
        Ok(Response::new(cri::ListPodSandboxResponse { items: items.into_iter().map(pod::pod_sandbox).collect() }))
    }

    async fn get_container_events(&self, _: Request<cri::GetEventsRequest>) -> Rpc<EventStream> {
        let subscription = self.daemon.containers().subscribe();
        let events =
            futures::stream::unfold((subscription, self.daemon.clone()), |(mut subscription, daemon)| async move {
                let event = subscription.next().await?;
                let response = container::event(&daemon, event);
                Some((Ok(response), (subscription, daemon)))
            });
        Ok(Response::new(Box::pin(events)))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Rpc<cri::CreateContainerResponse> {
        let request = request.into_inner();
        let config = request.config.ok_or_else(|| invalid_argument("config", "must be set"))?;
        let container_id = self.daemon.create_container(&request.pod_sandbox_id, config).await.map_err(to_status)?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(&self, request: Request<cri::StartContainerRequest>) -> Rpc<cri::StartContainerResponse> {
        self.daemon.containers().start(&request.get_ref().container_id).await.map_err(to_status)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(&self, request: Request<cri::StopContainerRequest>) -> Rpc<cri::StopContainerResponse> {
        let request = request.get_ref();
        self.daemon.containers().stop(&request.container_id, request.timeout).await.map_err(to_status)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Rpc<cri::RemoveContainerResponse> {
        self.daemon.containers().remove(&request.get_ref().container_id).await.map_err(to_status)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(&self, request: Request<cri::ListContainersRequest>) -> Rpc<cri::ListContainersResponse> {
        let Some(filter) = container::filter(request.into_inner().filter) else {
            return Ok(Response::new(cri::ListContainersResponse::default()));
        };
        let containers = self.daemon.containers().list(&filter).map_err(to_status)?;
        Ok(Response::new(cri::ListContainersResponse {
            containers: containers.into_iter().map(container::container).collect(),
        }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Rpc<cri::ContainerStatusResponse> {
        let request = request.get_ref();
        let status = self.daemon.containers().status(&request.container_id, request.verbose).map_err(to_status)?;
        Ok(Response::new(container::container_status(status)))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Rpc<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        let resources = request.linux.ok_or_else(|| invalid_argument("linux", "must be set"))?;
        self.daemon.containers().update_resources(&request.container_id, resources).await.map_err(to_status)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Rpc<cri::ReopenContainerLogResponse> {
        self.daemon.containers().reopen_log(&request.get_ref().container_id).await.map_err(to_status)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, request: Request<cri::ExecSyncRequest>) -> Rpc<cri::ExecSyncResponse> {
        let request = request.into_inner();
        let output = self
            .daemon
            .containers()
            .exec_sync(&request.container_id, request.cmd, request.timeout)
            .await
            .map_err(to_status)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        }))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Rpc<cri::ExecResponse> {
        let r = request.into_inner();
        let choice = StreamChoice { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
        let url = self.daemon.exec_url(&r.container_id, r.cmd, choice).map_err(to_status)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, request: Request<cri::AttachRequest>) -> Rpc<cri::AttachResponse> {
        let r = request.into_inner();
        let choice = StreamChoice { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty };
        let url = self.daemon.attach_url(&r.container_id, choice).map_err(to_status)?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(&self, request: Request<cri::PortForwardRequest>) -> Rpc<cri::PortForwardResponse> {
        let r = request.into_inner();
        let url = self.daemon.port_forward_url(&r.pod_sandbox_id, &r.port).map_err(to_status)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(&self, request: Request<cri::ContainerStatsRequest>) -> Rpc<cri::ContainerStatsResponse> {
        // The writable layer may be walked (at most every 10 s): off the async workers.
        let wanted = &request.get_ref().container_id;
        let usage = tokio::task::block_in_place(|| self.daemon.containers().stats(wanted)).map_err(to_status)?;
        Ok(Response::new(cri::ContainerStatsResponse { stats: Some(stats::container_stats(usage)) }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Rpc<cri::ListContainerStatsResponse> {
        let filter = stats::container_filter(request.into_inner().filter);
        // File reads for every container: let tokio move other tasks off this thread.
        let usages = tokio::task::block_in_place(|| self.daemon.containers().list_stats(&filter)).map_err(to_status)?;
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: usages.into_iter().map(stats::container_stats).collect(),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Rpc<cri::PodSandboxStatsResponse> {
        // Cgroup and /proc reads, and its containers' writable layers: off the async workers.
        let wanted = &request.get_ref().pod_sandbox_id;
        let usage = tokio::task::block_in_place(|| self.daemon.pod_stats(wanted)).map_err(to_status)?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats: Some(stats::pod_stats(usage)) }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Rpc<cri::ListPodSandboxStatsResponse> {
        let filter = stats::pod_filter(request.into_inner().filter);
        let usages = tokio::task::block_in_place(|| self.daemon.list_pod_stats(&filter)).map_err(to_status)?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse {
            stats: usages.into_iter().map(stats::pod_stats).collect(),
        }))
    }

    // CRIU checkpointing is not built: Unimplemented, as containerd answers without it.
    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Rpc<cri::CheckpointContainerResponse> {
        Err(not_implemented("CheckpointContainer"))
    }

    async fn checkpoint_pod(&self, _: Request<cri::CheckpointPodRequest>) -> Rpc<cri::CheckpointPodResponse> {
        Err(not_implemented("CheckpointPod"))
    }

    async fn restore_pod(&self, _: Request<cri::RestorePodRequest>) -> Rpc<cri::RestorePodResponse> {
        Err(not_implemented("RestorePod"))
    }

    // The list-streaming calls: their List call's answer, in chunks (list_stream.rs).
    async fn stream_pod_sandboxes(
        &self,
        request: Request<cri::StreamPodSandboxesRequest>,
    ) -> Rpc<Self::StreamPodSandboxesStream> {
        let filter = request.into_inner().filter;
        let items = self.list_pod_sandbox(Request::new(cri::ListPodSandboxRequest { filter })).await?.into_inner().items;
        Ok(Response::new(chunked(items, |pod_sandboxes| cri::StreamPodSandboxesResponse { pod_sandboxes })))
    }

    async fn stream_containers(
        &self,
        request: Request<cri::StreamContainersRequest>,
    ) -> Rpc<Self::StreamContainersStream> {
        let filter = request.into_inner().filter;
        let items = self.list_containers(Request::new(cri::ListContainersRequest { filter })).await?.into_inner();
        Ok(Response::new(chunked(items.containers, |containers| cri::StreamContainersResponse { containers })))
    }

    async fn stream_container_stats(
        &self,
        request: Request<cri::StreamContainerStatsRequest>,
    ) -> Rpc<Self::StreamContainerStatsStream> {
        let filter = request.into_inner().filter;
        let stats = self.list_container_stats(Request::new(cri::ListContainerStatsRequest { filter })).await?;
        let stats = stats.into_inner().stats;
        Ok(Response::new(chunked(stats, |container_stats| cri::StreamContainerStatsResponse { container_stats })))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Rpc<Self::StreamPodSandboxStatsStream> {
        let filter = request.into_inner().filter;
        let stats = self.list_pod_sandbox_stats(Request::new(cri::ListPodSandboxStatsRequest { filter })).await?;
        let stats = stats.into_inner().stats;
        Ok(Response::new(chunked(stats, |pod_sandbox_stats| cri::StreamPodSandboxStatsResponse { pod_sandbox_stats })))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Rpc<Self::StreamPodSandboxMetricsStream> {
        let metrics = self.list_pod_sandbox_metrics(Request::new(cri::ListPodSandboxMetricsRequest {})).await?;
        let metrics = metrics.into_inner().pod_metrics;
        Ok(Response::new(chunked(metrics, |pod_sandbox_metrics| cri::StreamPodSandboxMetricsResponse {
            pod_sandbox_metrics,
        })))
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Rpc<cri::UpdatePodSandboxResourcesResponse> {
        let request = request.into_inner();
        self.daemon
            .sandboxes()
            .update_resources(&request.pod_sandbox_id, request.resources.as_ref(), request.overhead.as_ref())
            .await
            .map_err(to_status)?;
        Ok(Response::new(cri::UpdatePodSandboxResourcesResponse {}))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Rpc<cri::ListMetricDescriptorsResponse> {
        let descriptors = self.daemon.metric_descriptors().iter().map(stats::metric_descriptor).collect();
        Ok(Response::new(cri::ListMetricDescriptorsResponse { descriptors }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Rpc<cri::ListPodSandboxMetricsResponse> {
        // Many small cgroup and /proc reads: off the async workers.
        let pods = tokio::task::block_in_place(|| self.daemon.list_pod_metrics()).map_err(to_status)?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: pods.into_iter().map(stats::pod_metrics).collect(),
        }))
    }
}
