//! How the client commands print: a table (comfy-table, crictl's columns),
//! or the CRI message itself as JSON or YAML; and the human forms of sizes,
//! ages and IDs the tables use.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::error::ClientError;
use crate::cri::v1::{ContainerState, PodSandboxState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// `-o`, for the commands whose default is a table.
#[derive(Debug, Clone, Args)]
pub struct Output {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub format: Format,
}

/// `-o`, for the commands whose default is the whole message, as crictl's.
#[derive(Debug, Clone, Args)]
pub struct Detail {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value = "json")]
    pub format: Format,
}

/// IDs in tables are cut to this many characters, as crictl cuts them.
const SHORT_ID: usize = 13;

pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header.iter().copied());
    table
}

/// Rows of `Key: value`, no header.
pub fn key_values() -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table
}

/// `value` as `format` says, JSON or YAML; a table is the caller's.
pub fn render(format: Format, value: &impl Serialize) -> Result<String, ClientError> {
    match format {
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| ClientError::Output(e.to_string())),
        _ => {
            serde_json::to_string_pretty(value).map(|text| text + "\n").map_err(|e| ClientError::Output(e.to_string()))
        }
    }
}

/// Writes `text` to stdout without blocking the runtime's thread.
pub async fn emit(text: &str) -> Result<(), ClientError> {
    emit_bytes(text.as_bytes()).await
}

pub async fn emit_bytes(bytes: &[u8]) -> Result<(), ClientError> {
    let mut stdout = tokio::io::stdout();
    let written = async {
        stdout.write_all(bytes).await?;
        stdout.flush().await
    };
    match written.await {
        // A reader that went away (`| head`) is no error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| ClientError::io("writing to stdout", e)),
    }
}

/// Writes `bytes` to stderr as they are (a command's own error output).
pub async fn emit_stderr(bytes: &[u8]) -> Result<(), ClientError> {
    let mut stderr = tokio::io::stderr();
    let written = async {
        stderr.write_all(bytes).await?;
        stderr.flush().await
    };
    written.await.map_err(|e| ClientError::io("writing to stderr", e))
}

pub async fn emit_table(table: &Table) -> Result<(), ClientError> {
    // comfy-table pads each line at both ends; crictl's tables start flush left.
    let text: String = table.lines().map(|line| format!("{}\n", line.trim())).collect();
    emit(&text).await
}

/// The ID without its algorithm, cut as tables show it.
pub fn short_id(id: &str) -> String {
    let bare = id.split_once(':').map_or(id, |(_, hex)| hex);
    bare.chars().take(SHORT_ID).collect()
}

/// "5 minutes ago", from nanoseconds since the epoch.
pub fn age(created_nanos: i64) -> String {
    let created = UNIX_EPOCH + Duration::from_nanos(u64::try_from(created_nanos).unwrap_or(0));
    match SystemTime::now().duration_since(created) {
        Ok(elapsed) if elapsed >= Duration::from_secs(1) => {
            format!("{} ago", indicatif::HumanDuration(elapsed))
        }
        _ => "Just now".into(),
    }
}

/// `json` with the number under `key` replaced by its enum name: the CRI's
/// enums are numbers in prost's messages, names in crictl's output.
pub fn name_enum(json: &mut serde_json::Value, key: &str, name: impl Fn(i32) -> Option<&'static str>) {
    if let Some(value) = json.get_mut(key)
        && let Some(named) = value.as_i64().and_then(|n| i32::try_from(n).ok()).and_then(&name)
    {
        *value = serde_json::Value::String(named.to_string());
    }
}

/// A container's state as tables show it ("Running").
pub fn container_state(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::ContainerCreated) => "Created",
        Ok(ContainerState::ContainerRunning) => "Running",
        Ok(ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// A pod's state as tables show it ("Ready").
pub fn pod_state(state: i32) -> &'static str {
    match PodSandboxState::try_from(state) {
        Ok(PodSandboxState::SandboxReady) => "Ready",
        Ok(PodSandboxState::SandboxNotready) => "NotReady",
        Err(_) => "Unknown",
    }
}

pub fn container_state_name(state: i32) -> Option<&'static str> {
    ContainerState::try_from(state).ok().map(|s| s.as_str_name())
}

pub fn pod_state_name(state: i32) -> Option<&'static str> {
    PodSandboxState::try_from(state).ok().map(|s| s.as_str_name())
}

/// Each `info` value as JSON when it is (berth's and containerd's are), as
/// crictl shows them.
pub fn info_json(info: &std::collections::HashMap<String, String>) -> serde_json::Value {
    let parsed = info.iter().map(|(key, value)| {
        let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.clone()));
        (key.clone(), value)
    });
    serde_json::Value::Object(parsed.collect())
}

/// Several documents in turn: JSON objects one after another, YAML
/// documents separated by `---`.
pub fn render_all(format: Format, values: &[serde_json::Value]) -> Result<String, ClientError> {
    let mut text = String::new();
    for (i, value) in values.iter().enumerate() {
        if format == Format::Yaml && i > 0 {
            text.push_str("---\n");
        }
        text.push_str(&render(format, value)?);
    }
    Ok(text)
}

pub fn to_json(value: &impl Serialize) -> Result<serde_json::Value, ClientError> {
    serde_json::to_value(value).map_err(|e| ClientError::Output(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_cut_without_their_algorithm() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789abc");
        assert_eq!(short_id("0123456789abcdef"), "0123456789abc");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn enum_numbers_become_names() {
        let mut json = serde_json::json!({"state": 1, "other": 1});
        name_enum(&mut json, "state", |n| (n == 1).then_some("CONTAINER_RUNNING"));
        assert_eq!(json, serde_json::json!({"state": "CONTAINER_RUNNING", "other": 1}));
    }
}
