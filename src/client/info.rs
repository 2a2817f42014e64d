//! `berth version` and `berth info`: the runtime's identity and status.

use clap::Args;

use crate::cri::v1::{StatusRequest, VersionRequest};

use super::connect::{Connection, Cri};
use super::error::ClientError;
use super::output::{self, Detail, Format, Output};

/// The CRI version this client speaks, sent in VersionRequest.
const CRI_VERSION: &str = "v1";

#[derive(Debug, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub output: Output,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub output: Detail,
    #[command(flatten)]
    pub connection: Connection,
}

/// Succeeds only when the endpoint answers Version: an installer waits on it.
pub async fn version(args: VersionArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let request = VersionRequest { version: CRI_VERSION.into() };
    let version = cri.call("Version", cri.runtime().version(request)).await?;
    if args.output.format != Format::Table {
        return output::emit(&output::render(args.output.format, &version)?).await;
    }
    let mut table = output::key_values();
    table.add_row(["Version:", &version.version]);
    table.add_row(["RuntimeName:", &version.runtime_name]);
    table.add_row(["RuntimeVersion:", &version.runtime_version]);
    table.add_row(["RuntimeApiVersion:", &version.runtime_api_version]);
    output::emit_table(&table).await
}

pub async fn info(args: InfoArgs) -> Result<(), ClientError> {
    let cri = Cri::connect(&args.connection).await?;
    let status = cri.call("Status", cri.runtime().status(StatusRequest { verbose: true })).await?;
    if args.output.format == Format::Table {
        let mut table = output::table(&["CONDITION", "STATUS", "REASON", "MESSAGE"]);
        let conditions = status.status.iter().flat_map(|s| &s.conditions);
        for condition in conditions {
            table.add_row([
                condition.r#type.clone(),
                condition.status.to_string(),
                condition.reason.clone(),
                condition.message.clone(),
            ]);
        }
        return output::emit_table(&table).await;
    }
    let mut document = serde_json::json!({
        "status": output::to_json(&status.status)?,
        "info": output::info_json(&status.info),
    });
    if !status.runtime_handlers.is_empty() {
        document["runtimeHandlers"] = output::to_json(&status.runtime_handlers)?;
    }
    output::emit(&output::render(args.output.format, &document)?).await
}
