//! Manifest requests, with the body bounded while it arrives. oci-client reads a
//! manifest's body whole before its caller can look at it, so a registry sending
//! gigabytes as a "manifest" would be buffered whole; here the request is berth's
//! own, and only the token comes from oci-client (which caches it for the layer
//! downloads that follow).

use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde::Deserialize;

use super::error::ImageError;
use super::registry::{Endpoint, classify, from_error_codes, scheme_hint, transport_failure};

/// Of an error answer, what is read to tell why.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// One endpoint's manifest requests during one pull.
pub(super) struct ManifestFetcher<'a> {
    pub endpoint: &'a Endpoint,
    pub http: reqwest::Client,
    /// Found at the first request, then reused: one token exchange per pull.
    authorization: tokio::sync::OnceCell<Option<HeaderValue>>,
}

impl<'a> ManifestFetcher<'a> {
    pub fn new(endpoint: &'a Endpoint, stall_timeout: Duration) -> Result<Self, ImageError> {
        let http = super::registry::http_client(endpoint, stall_timeout)?;
        Ok(ManifestFetcher { endpoint, http, authorization: tokio::sync::OnceCell::new() })
    }

    /// The manifest `reference` names (tag or digest) on this endpoint, at most
    /// `limit` bytes, each wait bounded by `stall_timeout`.
    pub async fn fetch(
        &self,
        client: &oci_client::Client,
        auth: &RegistryAuth,
        reference: &Reference,
        accepted: &[&str],
        limit: usize,
        stall_timeout: Duration,
    ) -> Result<Vec<u8>, ImageError> {
        let stalled = |what: &str| ImageError::Stalled { what: what.to_string(), seconds: stall_timeout.as_secs() };
        let authorization = self
            .authorization
            .get_or_try_init(|| async {
                let token = tokio::time::timeout(stall_timeout, client.auth(reference, auth, RegistryOperation::Pull))
                    .await
                    .map_err(|_| stalled("authentication"))?
                    .map_err(|e| classify(e, self.endpoint, &reference.whole()))?;
                Ok::<_, ImageError>(authorization_header(token, auth))
            })
            .await?;
        let url = manifest_url(self.endpoint, reference);
        let mut request = self.http.get(&url).header(ACCEPT, accepted.join(", "));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value.clone());
        }
        let what = format!("manifest {}", reference.whole());
        let response = tokio::time::timeout(stall_timeout, request.send())
            .await
            .map_err(|_| stalled(&what))?
            .map_err(|e| self.registry_error(transport_failure(&e, self.endpoint)))?;
        let status = response.status();
        if !status.is_success() {
            let body = read_bounded(response, ERROR_BODY_LIMIT, stall_timeout).await.unwrap_or_default();
            return Err(refused(self.endpoint, status.as_u16(), &url, &body, &reference.whole()));
        }
        if response.content_length().is_some_and(|length| length > limit as u64) {
            return Err(self.too_large(reference, limit));
        }
        match read_bounded(response, limit, stall_timeout).await {
            Ok(body) => Ok(body),
            Err(ReadError::TooLarge) => Err(self.too_large(reference, limit)),
            Err(ReadError::Stalled) => Err(stalled(&what)),
            Err(ReadError::Transport(e)) => Err(self.registry_error(transport_failure(&e, self.endpoint))),
        }
    }

    fn registry_error(&self, message: String) -> ImageError {
        ImageError::Registry { registry: self.endpoint.host.clone(), message }
    }

    fn too_large(&self, reference: &Reference, limit: usize) -> ImageError {
        self.registry_error(format!("manifest of {} is larger than {limit} bytes", reference.whole()))
    }
}

/// An error answer, told apart as oci-client's errors are in `classify`.
fn refused(endpoint: &Endpoint, status: u16, url: &str, body: &[u8], reference: &str) -> ImageError {
    let registry = endpoint.host.clone();
    let codes: Vec<String> = serde_json::from_slice::<Envelope>(body)
        .map(|envelope| envelope.errors.into_iter().map(|e| e.code).collect())
        .unwrap_or_default();
    match status {
        401 | 403 => ImageError::Unauthenticated {
            registry,
            message: format!("access to {url} denied: wrong or missing credentials"),
        },
        404 => ImageError::NotInRegistry { reference: reference.to_string(), registry },
        _ => from_error_codes(&codes, url, endpoint, reference).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let mut message = format!("{url}: status {status}: {}", text.trim());
            if status == 400 && text.contains("HTTPS server") {
                message.push_str(". ");
                message.push_str(&scheme_hint(endpoint));
            }
            ImageError::Registry { registry, message }
        }),
    }
}

/// A registry's error body (distribution spec, "Error Codes").
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
}

/// A bearer token from oci-client's exchange, or the basic credentials of a
/// registry that asks for those (oci-client then returns no token).
fn authorization_header(token: Option<String>, auth: &RegistryAuth) -> Option<HeaderValue> {
    use base64::Engine;
    let value = match (token, auth) {
        (Some(token), _) => format!("Bearer {token}"),
        (None, RegistryAuth::Basic(username, password)) => {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")))
        }
        (None, _) => return None,
    };
    let mut value = HeaderValue::from_str(&value).ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn manifest_url(endpoint: &Endpoint, reference: &Reference) -> String {
    let scheme = if endpoint.plain_http { "http" } else { "https" };
    let tag_or_digest = reference.digest().or(reference.tag()).unwrap_or("latest");
    format!("{scheme}://{}/v2/{}/manifests/{tag_or_digest}", endpoint.host, reference.repository())
}

enum ReadError {
    TooLarge,
    Stalled,
    Transport(reqwest::Error),
}

/// The body, refused as soon as it passes `limit`, each chunk waited for at most
/// `stall_timeout`.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
    stall_timeout: Duration,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let chunk = tokio::time::timeout(stall_timeout, response.chunk())
            .await
            .map_err(|_| ReadError::Stalled)?
            .map_err(ReadError::Transport)?;
        let Some(chunk) = chunk else { return Ok(body) };
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(plain_http: bool) -> Endpoint {
        Endpoint {
            host: "registry.test:5000".into(),
            plain_http,
            skip_verify: false,
            mirror: false,
            resolve: true,
            credentials: None,
        }
    }

    #[test]
    fn urls_name_the_tag_or_the_digest() {
        let tagged: Reference = "registry.test:5000/team/app:v1".parse().expect("reference");
        assert_eq!(manifest_url(&endpoint(true), &tagged), "http://registry.test:5000/v2/team/app/manifests/v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned: Reference = format!("registry.test:5000/team/app@{digest}").parse().expect("reference");
        assert_eq!(
            manifest_url(&endpoint(false), &pinned),
            format!("https://registry.test:5000/v2/team/app/manifests/{digest}")
        );
    }

    #[test]
    fn error_answers_are_told_apart() {
        let endpoint = endpoint(false);
        let refused = |status, body: &[u8]| refused(&endpoint, status, "u", body, "r");
        let unknown = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        assert!(matches!(refused(404, b""), ImageError::NotInRegistry { .. }));
        assert!(matches!(refused(400, unknown), ImageError::NotInRegistry { .. }));
        assert!(matches!(refused(401, b""), ImageError::Unauthenticated { .. }));
        let denied = br#"{"errors":[{"code":"DENIED"}]}"#;
        assert!(matches!(refused(400, denied), ImageError::Unauthenticated { .. }));
        match refused(500, b"boom") {
            ImageError::Registry { message, .. } => {
                assert!(message.contains("500") && message.contains("boom"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn credentials_become_the_authorization_header() {
        let basic = RegistryAuth::Basic("user".into(), "pass".into());
        assert_eq!(authorization_header(None, &basic).expect("basic"), "Basic dXNlcjpwYXNz");
        assert_eq!(authorization_header(Some("t0k".into()), &basic).expect("bearer"), "Bearer t0k");
        assert!(authorization_header(None, &RegistryAuth::Anonymous).is_none());
    }
}
