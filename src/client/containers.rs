//! `berth ps` and `berth inspect`.

use std::collections::HashMap;

use clap::Args;

use crate::cri::v1::{
    ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ListContainersRequest,
};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output::{self, Detail, Format, Output};
use super::resolve;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Every container, not only the running ones
    #[arg(short, long)]
    pub all: bool,
    /// Only the containers of this pod (ID or unique prefix)
    #[arg(short, long)]
    pub pod: Option<String>,
    /// Only the containers whose name contains this
    #[arg(long)]
    pub name: Option<String>,
    /// Only the containers in this state
    #[arg(long, value_enum, conflicts_with = "all")]
    pub state: Option<StateArg>,
    /// Only the containers with this label (KEY=VALUE; repeat for several)
    #[arg(long, value_name = "KEY=VALUE", value_parser = super::pods::label)]
    pub label: Vec<(String, String)>,
    /// Only the container IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StateArg {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers by ID or unique prefix
    #[arg(required = true)]
    pub containers: Vec<String>,
    #[command(flatten)]
    pub output: Detail,
    #[command(flatten)]
    pub connection: Connection,
}

pub async fn ps(args: PsArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let state = match (args.state, args.all) {
        (Some(state), _) => Some(match state {
            StateArg::Created => ContainerState::ContainerCreated,
            StateArg::Running => ContainerState::ContainerRunning,
            StateArg::Exited => ContainerState::ContainerExited,
            StateArg::Unknown => ContainerState::ContainerUnknown,
        }),
        (None, true) => None,
        (None, false) => Some(ContainerState::ContainerRunning),
    };
    let pod_sandbox_id = match &args.pod {
        Some(pod) => resolve::pod(&cri, pod).await?,
        None => String::new(),
    };
    let filter = ContainerFilter {
        state: state.map(|state| ContainerStateValue { state: state as i32 }),
        pod_sandbox_id,
        label_selector: args.label.into_iter().collect(),
        ..Default::default()
    };
    let mut listed = cri
        .call("ListContainers", cri.runtime().list_containers(ListContainersRequest { filter: Some(filter) }))
        .await?;
    if let Some(name) = &args.name {
        listed.containers.retain(|c| c.metadata.as_ref().is_some_and(|m| m.name.contains(name.as_str())));
    }
    // Newest first, as crictl lists them.
    listed.containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    if args.quiet {
        return output::emit(&listed.containers.iter().map(|c| format!("{}\n", c.id)).collect::<String>()).await;
    }
    if args.output.format != Format::Table {
        let mut json = output::to_json(&listed)?;
        for container in json["containers"].as_array_mut().into_iter().flatten() {
            output::name_enum(container, "state", output::container_state_name);
        }
        return output::emit(&output::render(args.output.format, &json)?).await;
    }
    let pods = pod_names(&cri).await?;
    let mut table = output::table(&["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"]);
    for c in &listed.containers {
        let image = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default();
        let image = if image.starts_with("sha256:") { output::short_id(image) } else { image.to_string() };
        let (name, attempt) = c.metadata.as_ref().map(|m| (m.name.clone(), m.attempt)).unwrap_or_default();
        table.add_row([
            output::short_id(&c.id),
            image,
            output::age(c.created_at),
            output::container_state(c.state).to_string(),
            name,
            attempt.to_string(),
            output::short_id(&c.pod_sandbox_id),
            pods.get(&c.pod_sandbox_id).cloned().unwrap_or_default(),
        ]);
    }
    output::emit_table(&table).await
}

/// Pods' names by ID, for the POD column.
async fn pod_names(cri: &Cri) -> Result<HashMap<String, String>, ClientError> {
    let request = crate::cri::v1::ListPodSandboxRequest { filter: None };
    let listed = cri.call("ListPodSandbox", cri.runtime().list_pod_sandbox(request)).await?;
    Ok(listed.items.into_iter().map(|p| (p.id, p.metadata.map(|m| m.name).unwrap_or_default())).collect())
}

pub async fn inspect(args: InspectArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let mut answers = Vec::new();
    for wanted in &args.containers {
        let container_id = resolve::container(&cri, wanted).await?;
        let request = ContainerStatusRequest { container_id, verbose: true };
        answers.push(cri.call("ContainerStatus", cri.runtime().container_status(request)).await?);
    }
    if args.output.format == Format::Table {
        let mut table = output::table(&["CONTAINER", "NAME", "STATE", "CREATED", "EXIT CODE", "IMAGE", "LOG PATH"]);
        for status in answers.iter().filter_map(|a| a.status.as_ref()) {
            table.add_row([
                status.id.clone(),
                status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                output::container_state(status.state).to_string(),
                output::age(status.created_at),
                status.exit_code.to_string(),
                status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                status.log_path.clone(),
            ]);
        }
        return output::emit_table(&table).await;
    }
    let mut documents = Vec::new();
    for answer in &answers {
        let mut status = output::to_json(&answer.status)?;
        output::name_enum(&mut status, "state", output::container_state_name);
        documents.push(serde_json::json!({ "status": status, "info": output::info_json(&answer.info) }));
    }
    output::emit(&output::render_all(args.output.format, &documents)?).await
}
