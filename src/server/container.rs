//! CRI container messages to and from the container service's types.

use std::collections::{BTreeMap, HashMap};

use crate::cri::v1 as cri;

use super::pod;
use crate::container::{ContainerEvent, ContainerFilter, ContainerRecord, ContainerState, ContainerStatus, EventKind};
use crate::daemon::Daemon;

fn state(state: ContainerState) -> i32 {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
    }
}

fn map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn metadata(c: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata { name: c.metadata.name.clone(), attempt: c.metadata.attempt }
}

fn image(c: &ContainerRecord, config: Option<&cri::ContainerConfig>) -> cri::ImageSpec {
    let requested = config.and_then(|c| c.image.clone());
    cri::ImageSpec { image: c.image.requested.clone(), ..requested.unwrap_or_default() }
}

pub fn container(c: ContainerRecord) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.sandbox_id.clone(),
        metadata: Some(metadata(&c)),
        image: Some(image(&c, None)),
        image_ref: c.image.reference.clone(),
        state: state(c.state),
        created_at: c.created_at,
        labels: map(&c.labels),
        annotations: map(&c.annotations),
        image_id: c.image.id.clone(),
    }
}

pub fn container_status(status: ContainerStatus) -> cri::ContainerStatusResponse {
    let ContainerStatus { container: c, config, info } = status;
    let exit = c.exit.filter(|_| c.state == ContainerState::Exited);
    let user = cri::ContainerUser {
        linux: Some(cri::LinuxContainerUser {
            uid: i64::from(c.user.uid),
            gid: i64::from(c.user.gid),
            supplemental_groups: c.user.additional_gids.iter().map(|g| i64::from(*g)).collect(),
        }),
    };
    let resources = config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .map(|linux| cri::ContainerResources { linux: Some(linux), ..Default::default() });
    cri::ContainerStatusResponse {
        status: Some(cri::ContainerStatus {
            id: c.id.clone(),
            metadata: Some(metadata(&c)),
            state: state(c.state),
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: exit.map(|e| e.exited_at).unwrap_or_default(),
            exit_code: exit.map(|e| e.exit_code).unwrap_or_default(),
            image: Some(image(&c, Some(&config))),
            image_ref: c.image.reference.clone(),
            reason: c.exit_reason(),
            message: c.message.clone(),
            stop_signal: crate::container::cri_signal(crate::container::effective_stop_signal(&c, &config)) as i32,
            labels: map(&c.labels),
            annotations: map(&c.annotations),
            mounts: crate::container::reported_mounts(&config, &c.image_volumes),
            log_path: c.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            resources,
            image_id: c.image.id.clone(),
            user: Some(user),
        }),
        info: info.into_iter().collect(),
    }
}

/// The domain filter; `None` when the filter can match no container (berth
/// keeps none in the UNKNOWN state).
pub fn filter(filter: Option<cri::ContainerFilter>) -> Option<ContainerFilter> {
    let Some(f) = filter else { return Some(ContainerFilter::default()) };
    let state = match f.state.map(|s| cri::ContainerState::try_from(s.state)) {
        None => None,
        Some(Ok(cri::ContainerState::ContainerCreated)) => Some(ContainerState::Created),
        Some(Ok(cri::ContainerState::ContainerRunning)) => Some(ContainerState::Running),
        Some(Ok(cri::ContainerState::ContainerExited)) => Some(ContainerState::Exited),
        Some(_) => return None,
    };
    Some(ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state,
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        labels: f.label_selector.into_iter().collect(),
    })
}

/// An event as the evented PLEG wants it: with the pod's status and the statuses
/// of all its containers as they are now.
pub fn event(daemon: &Daemon, event: ContainerEvent) -> cri::ContainerEventResponse {
    let container_event_type = match event.kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    let pod_sandbox_status =
        daemon.sandboxes().status(&event.sandbox_id, false).ok().and_then(|status| pod::pod_status(status).status);
    let containers = daemon.containers();
    let containers_statuses = containers
        .in_sandbox(&event.sandbox_id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| containers.status(&c.id, false).ok())
        .filter_map(|status| container_status(status).status)
        .collect();
    cri::ContainerEventResponse {
        container_id: event.container_id,
        container_event_type: container_event_type as i32,
        created_at: event.at,
        pod_sandbox_status,
        containers_statuses,
    }
}
