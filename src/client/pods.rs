//! `berth pods` and `berth inspectp`.

use clap::Args;

use crate::cri::v1::{
    ListPodSandboxRequest, PodSandboxFilter, PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest,
};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output::{self, Detail, Format, Output};
use super::resolve;

#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Only the pod with this ID (or unique prefix)
    #[arg(long)]
    pub id: Option<String>,
    /// Only the pods whose name contains this
    #[arg(long)]
    pub name: Option<String>,
    /// Only the pods of this namespace
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only the pods in this state
    #[arg(short, long, value_enum)]
    pub state: Option<PodStateArg>,
    /// Only the pods with this label (KEY=VALUE; repeat for several)
    #[arg(long, value_name = "KEY=VALUE", value_parser = label)]
    pub label: Vec<(String, String)>,
    /// Only the pod IDs
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PodStateArg {
    Ready,
    Notready,
}

#[derive(Debug, Args)]
pub struct InspectpArgs {
    /// Pods by ID or unique prefix
    #[arg(required = true)]
    pub pods: Vec<String>,
    #[command(flatten)]
    pub output: Detail,
    #[command(flatten)]
    pub connection: Connection,
}

pub fn label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub async fn pods(args: PodsArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let id = match &args.id {
        Some(id) => resolve::pod(&cri, id).await?,
        None => String::new(),
    };
    let state = args.state.map(|state| match state {
        PodStateArg::Ready => PodSandboxState::SandboxReady,
        PodStateArg::Notready => PodSandboxState::SandboxNotready,
    });
    let filter = PodSandboxFilter {
        id,
        state: state.map(|state| PodSandboxStateValue { state: state as i32 }),
        label_selector: args.label.into_iter().collect(),
    };
    let mut listed = cri
        .call("ListPodSandbox", cri.runtime().list_pod_sandbox(ListPodSandboxRequest { filter: Some(filter) }))
        .await?;
    listed.items.retain(|pod| {
        let metadata = pod.metadata.clone().unwrap_or_default();
        args.name.as_ref().is_none_or(|name| metadata.name.contains(name.as_str()))
            && args.namespace.as_ref().is_none_or(|namespace| metadata.namespace == *namespace)
    });
    listed.items.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    if args.quiet {
        return output::emit(&listed.items.iter().map(|p| format!("{}\n", p.id)).collect::<String>()).await;
    }
    if args.output.format != Format::Table {
        let mut json = output::to_json(&listed)?;
        for pod in json["items"].as_array_mut().into_iter().flatten() {
            output::name_enum(pod, "state", output::pod_state_name);
        }
        return output::emit(&output::render(args.output.format, &json)?).await;
    }
    let mut table = output::table(&["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]);
    for pod in &listed.items {
        let metadata = pod.metadata.clone().unwrap_or_default();
        let runtime = if pod.runtime_handler.is_empty() { "(default)" } else { pod.runtime_handler.as_str() };
        table.add_row([
            output::short_id(&pod.id),
            output::age(pod.created_at),
            output::pod_state(pod.state).to_string(),
            metadata.name,
            metadata.namespace,
            metadata.attempt.to_string(),
            runtime.to_string(),
        ]);
    }
    output::emit_table(&table).await
}

pub async fn inspectp(args: InspectpArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let mut answers = Vec::new();
    for wanted in &args.pods {
        let pod_sandbox_id = resolve::pod(&cri, wanted).await?;
        let request = PodSandboxStatusRequest { pod_sandbox_id, verbose: true };
        answers.push(cri.call("PodSandboxStatus", cri.runtime().pod_sandbox_status(request)).await?);
    }
    if args.output.format == Format::Table {
        let mut table = output::table(&["POD ID", "NAME", "NAMESPACE", "STATE", "CREATED", "IP"]);
        for status in answers.iter().filter_map(|a| a.status.as_ref()) {
            let metadata = status.metadata.clone().unwrap_or_default();
            table.add_row([
                status.id.clone(),
                metadata.name,
                metadata.namespace,
                output::pod_state(status.state).to_string(),
                output::age(status.created_at),
                status.network.as_ref().map(|n| n.ip.clone()).unwrap_or_default(),
            ]);
        }
        return output::emit_table(&table).await;
    }
    let mut documents = Vec::new();
    for answer in &answers {
        let mut status = output::to_json(&answer.status)?;
        output::name_enum(&mut status, "state", output::pod_state_name);
        let mut document = serde_json::json!({ "status": status, "info": output::info_json(&answer.info) });
        if !answer.containers_statuses.is_empty() {
            document["containersStatuses"] = output::to_json(&answer.containers_statuses)?;
        }
        documents.push(document);
    }
    output::emit(&output::render_all(args.output.format, &documents)?).await
}
