//! `berth node-report`: the installer's record on its Node object, as
//! annotations set (or removed) through the API server with the pod's service
//! account, the way every in-cluster client finds it: the API server's
//! address in `KUBERNETES_SERVICE_HOST` / `_PORT`, the token and the cluster's
//! CA mounted under `/var/run/secrets/kubernetes.io/serviceaccount`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// One PATCH; an API server this slow is not going to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Enough of a refusal's body to say why.
const BODY_SHOWN: usize = 512;

#[derive(Debug, clap::Args)]
pub struct NodeReportArgs {
    /// The node's name (the pod's `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    node: String,
    /// `KEY=VALUE` to set an annotation, `KEY-` to remove it.
    #[arg(required = true)]
    annotations: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeReportError {
    #[error("not in a cluster: {0} is not set")]
    NotInCluster(&'static str),
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("annotation {0:?}: not KEY=VALUE or KEY-")]
    Annotation(String),
    #[error("the API server at {url}: {message}")]
    Request { url: String, message: String },
    #[error("the API server refused PATCH {url}: {status}: {body}")]
    Refused { url: String, status: u16, body: String },
}

pub fn run(args: &NodeReportArgs) -> Result<(), NodeReportError> {
    let patch = annotation_patch(&args.annotations)?;
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .map_err(|_| NodeReportError::NotInCluster("KUBERNETES_SERVICE_HOST"))?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let account = Path::new(SERVICE_ACCOUNT);
    let token = read(&account.join("token"))?;
    let ca = read(&account.join("ca.crt"))?;
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let url = format!("https://{host}:{port}/api/v1/nodes/{}", args.node);
    let request_error = |message: String| NodeReportError::Request { url: url.clone(), message };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| request_error(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        crate::images::registry::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| request_error(format!("the CA: {e}")))?;
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| request_error(e.to_string()))?;
        let response = client
            .patch(&url)
            .bearer_auth(String::from_utf8_lossy(&token).trim())
            .header(reqwest::header::CONTENT_TYPE, "application/merge-patch+json")
            .body(patch.to_string())
            .send()
            .await
            .map_err(|e| request_error(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(BODY_SHOWN).collect();
        Err(NodeReportError::Refused { url: url.clone(), status: status.as_u16(), body })
    })
}

/// A JSON merge patch of the node's annotations: a value sets, null removes.
fn annotation_patch(annotations: &[String]) -> Result<Value, NodeReportError> {
    let mut map = Map::new();
    for annotation in annotations {
        let (key, value) = match annotation.split_once('=') {
            Some((key, value)) => (key, Value::String(value.to_string())),
            None => match annotation.strip_suffix('-') {
                Some(key) => (key, Value::Null),
                None => return Err(NodeReportError::Annotation(annotation.clone())),
            },
        };
        if key.is_empty() {
            return Err(NodeReportError::Annotation(annotation.clone()));
        }
        map.insert(key.to_string(), value);
    }
    Ok(serde_json::json!({ "metadata": { "annotations": map } }))
}

fn read(path: &Path) -> Result<Vec<u8>, NodeReportError> {
    std::fs::read(path).map_err(|source| NodeReportError::Read { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_set_and_remove_as_a_merge_patch() {
        let patch = annotation_patch(&["berth.dev/installed-version=0.1.0".into(), "berth.dev/old-".into()]).unwrap();
        assert_eq!(
            patch,
            serde_json::json!({"metadata": {"annotations": {"berth.dev/installed-version": "0.1.0", "berth.dev/old": null}}})
        );
        for bad in ["no-equals-or-dash-suffix!", "=value", "-"] {
            assert!(annotation_patch(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
