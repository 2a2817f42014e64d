//! Talking to registries: which endpoints to try for a reference (mirrors
//! first), an `oci-client` per endpoint, and the credential forms of the CRI's
//! `AuthConfig`.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use super::error::ImageError;
use super::reference::ImageRef;
use crate::config::{Config, MirrorCapability, RegistryConfig};

/// docker.io is a name, not a host: its registry API lives here.
const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`
    pub host: String,
    pub plain_http: bool,
    pub skip_verify: bool,
    pub mirror: bool,
    /// May be asked what a tag points to; an endpoint that may not serves
    /// content by digest only (a mirror whose tags are not trusted).
    pub resolve: bool,
    /// The mirror's own username and password, sent instead of the pull's.
    pub credentials: Option<(String, String)>,
}

/// Mirrors in configured order, then the registry itself unless its settings
/// say never to fall back to it. A mirror that may not serve pulls is left out.
pub fn endpoints(config: &Config, registry: &str) -> Vec<Endpoint> {
    let settings = config.registries.get(registry).cloned().unwrap_or_default();
    let mut endpoints: Vec<Endpoint> = settings
        .mirrors
        .iter()
        .filter(|mirror| mirror.can(MirrorCapability::Pull))
        .filter_map(|mirror| {
            let url = mirror.url();
            // Mirrors are URLs (the config loader checks): their scheme decides.
            let (plain_http, rest) = match url.split_once("://") {
                Some(("http", rest)) => (true, rest),
                Some((_, rest)) => (false, rest),
                None => (false, url),
            };
            let host = rest.split('/').next().filter(|h| !h.is_empty())?.to_string();
            let mirror_settings = config.registries.get(&host);
            Some(Endpoint {
                skip_verify: mirror_settings.is_some_and(|s| s.insecure_skip_verify) || settings.insecure_skip_verify,
                host,
                plain_http,
                mirror: true,
                resolve: mirror.can(MirrorCapability::Resolve),
                credentials: mirror.credentials().map(|(user, password)| (user.to_string(), password.to_string())),
            })
        })
        .collect();
    if settings.use_upstream {
        let host = if registry == "docker.io" { DOCKER_HUB_ENDPOINT.to_string() } else { registry.to_string() };
        endpoints.push(Endpoint {
            plain_http: speaks_plain_http(config, &host, &settings),
            host,
            skip_verify: settings.insecure_skip_verify,
            mirror: false,
            resolve: true,
            credentials: None,
        });
    }
    endpoints
}

/// HTTP when the registry's settings say so, or by default on loopback: a
/// registry asking for certificate checks to be skipped speaks TLS.
fn speaks_plain_http(config: &Config, host: &str, settings: &RegistryConfig) -> bool {
    settings.plain_http || (config.images.loopback_plain_http && !settings.insecure_skip_verify && is_loopback(host))
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else if host.matches(':').count() > 1 {
        host
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// rustls needs a process-wide crypto provider before any TLS client is built;
/// berth uses ring (lighter to build than aws-lc). Idempotent.
pub fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn client(endpoint: &Endpoint, stall_timeout: Duration) -> oci_client::Client {
    install_crypto_provider();
    let config = ClientConfig {
        protocol: if endpoint.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
        accept_invalid_certificates: endpoint.skip_verify,
        // berth picks the platform itself, so an index is never resolved behind its back.
        platform_resolver: None,
        // No read timeout here: berth bounds every request and every body chunk
        // by the stall timeout itself, and reports it as such.
        read_timeout: None,
        connect_timeout: Some(CONNECT_TIMEOUT.min(stall_timeout)),
        user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    };
    oci_client::Client::new(config)
}

/// A plain HTTP client for the requests berth makes itself (manifests), with the
/// endpoint's TLS settings. Like the oci-client's, no read timeout: the caller
/// bounds each wait by the stall timeout and reports it as such.
pub fn http_client(endpoint: &Endpoint, stall_timeout: Duration) -> Result<reqwest::Client, ImageError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(endpoint.skip_verify)
        .connect_timeout(CONNECT_TIMEOUT.min(stall_timeout))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ImageError::Registry { registry: endpoint.host.clone(), message: e.to_string() })
}

/// The credentials of a `PullImageRequest.auth`, in the forms the CRI allows.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A refresh token, exchanged at the registry's token endpoint (OAuth2).
    IdentityToken(String),
    /// A bearer token, sent as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Anonymous => "Anonymous",
            Credentials::Basic { .. } => "Basic(..)",
            Credentials::IdentityToken(_) => "IdentityToken(..)",
            Credentials::RegistryToken(_) => "RegistryToken(..)",
        })
    }
}

impl Credentials {
    /// Tells credentials apart without keeping them: pulls share work only
    /// with pulls that would authenticate the same way.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let text = match self {
            Credentials::Anonymous => String::new(),
            Credentials::Basic { username, password } => format!("basic\0{username}\0{password}"),
            Credentials::IdentityToken(token) => format!("identity\0{token}"),
            Credentials::RegistryToken(token) => format!("registry\0{token}"),
        };
        hex::encode(Sha256::digest(text))
    }

    /// From the CRI fields; the first form given wins, in the order containerd checks them.
    pub fn from_cri(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, ImageError> {
        if !registry_token.is_empty() {
            return Ok(Credentials::RegistryToken(registry_token.to_string()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_string()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic { username: username.into(), password: password.into() });
        }
        if !auth.is_empty() {
            use base64::Engine;
            let invalid = || ImageError::InvalidArgument {
                field: "auth.auth",
                reason: "must be base64 of \"username:password\"".into(),
            };
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| invalid())?;
            let text = String::from_utf8(decoded).map_err(|_| invalid())?;
            let (username, password) = text.split_once(':').ok_or_else(invalid)?;
            return Ok(Credentials::Basic { username: username.into(), password: password.into() });
        }
        Ok(Credentials::Anonymous)
    }

    /// What oci-client sends; an identity token is first exchanged for a bearer token.
    pub async fn registry_auth(&self, endpoint: &Endpoint, image: &ImageRef) -> Result<RegistryAuth, ImageError> {
        if let Some((username, password)) = &endpoint.credentials {
            return Ok(RegistryAuth::Basic(username.clone(), password.clone()));
        }
        Ok(match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => RegistryAuth::Basic(username.clone(), password.clone()),
            Credentials::RegistryToken(token) => RegistryAuth::Bearer(token.clone()),
            Credentials::IdentityToken(token) => {
                RegistryAuth::Bearer(exchange_identity_token(endpoint, image, token).await?)
            }
        })
    }
}

/// The OAuth2 refresh-token grant docker uses for identity tokens: find the
/// token endpoint from the registry's challenge, then trade the token for an
/// access token scoped to pulling this repository.
async fn exchange_identity_token(endpoint: &Endpoint, image: &ImageRef, token: &str) -> Result<String, ImageError> {
    let registry_error = |message: String| ImageError::Registry { registry: endpoint.host.clone(), message };
    install_crypto_provider();
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(endpoint.skip_verify)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| registry_error(e.to_string()))?;
    let scheme = if endpoint.plain_http { "http" } else { "https" };
    let probe = http
        .get(format!("{scheme}://{}/v2/", endpoint.host))
        .send()
        .await
        .map_err(|e| registry_error(format!("cannot reach registry: {}", transport_failure(&e, endpoint))))?;
    let challenge = probe
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_bearer_challenge)
        .ok_or_else(|| {
            registry_error("an identity token was given but the registry offers no token endpoint".into())
        })?;
    let scope = format!("repository:{}:pull", image.repository());
    let mut form = vec![
        ("grant_type", "refresh_token"),
        ("refresh_token", token),
        ("client_id", "berth"),
        ("scope", scope.as_str()),
    ];
    if let Some(service) = challenge.service.as_deref() {
        form.push(("service", service));
    }
    let response = http
        .post(&challenge.realm)
        .form(&form)
        .send()
        .await
        .map_err(|e| registry_error(format!("token endpoint {}: {e}", challenge.realm)))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(ImageError::Unauthenticated {
            registry: endpoint.host.clone(),
            message: format!("identity token refused ({status}): {}", body.trim()),
        });
    }
    let body: serde_json::Value =
        response.json().await.map_err(|e| registry_error(format!("token endpoint answered no JSON: {e}")))?;
    body.get("access_token")
        .or_else(|| body.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| registry_error("token endpoint answered without a token".into()))
}

#[derive(Debug, PartialEq, Eq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// `Bearer realm="https://auth/token",service="registry",scope="..."`
fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let params = header.trim().strip_prefix("Bearer ").or_else(|| header.trim().strip_prefix("bearer "))?;
    let mut realm = None;
    let mut service = None;
    let mut rest = params;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, remainder) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = remainder.trim_start_matches([',', ' ']);
    }
    Some(BearerChallenge { realm: realm?, service })
}

/// Turns oci-client's errors into the image service's, naming the registry.
pub fn classify(err: OciDistributionError, endpoint: &Endpoint, reference: &str) -> ImageError {
    let registry = endpoint.host.clone();
    match err {
        OciDistributionError::AuthenticationFailure(message) => ImageError::Unauthenticated { registry, message },
        OciDistributionError::UnauthorizedError { url } => ImageError::Unauthenticated {
            registry,
            message: format!("access to {url} denied: wrong or missing credentials"),
        },
        OciDistributionError::ImageManifestNotFoundError(_) => {
            ImageError::NotInRegistry { reference: reference.to_string(), registry }
        }
        OciDistributionError::ServerError { code: 401 | 403, url, .. } => ImageError::Unauthenticated {
            registry,
            message: format!("access to {url} denied: wrong or missing credentials"),
        },
        OciDistributionError::ServerError { code: 404, .. } => {
            ImageError::NotInRegistry { reference: reference.to_string(), registry }
        }
        OciDistributionError::RegistryError { envelope, url } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}", e.code)).collect();
            from_error_codes(&codes, &url, endpoint, reference)
                .unwrap_or_else(|| ImageError::Registry { registry, message: format!("{url}: {}", codes.join(",")) })
        }
        OciDistributionError::RequestError(e) => {
            ImageError::Registry { registry, message: transport_failure(&e, endpoint) }
        }
        OciDistributionError::ServerError { code: 400, url, message } if message.contains("HTTPS server") => {
            ImageError::Registry { registry, message: format!("{url}: {message}. {}", scheme_hint(endpoint)) }
        }
        other => ImageError::Registry { registry, message: other.to_string() },
    }
}

/// What a registry's error codes (distribution spec, "Error Codes", in any
/// case) say the caller can act on: credentials refused, or nothing there.
pub(super) fn from_error_codes(codes: &[String], url: &str, endpoint: &Endpoint, reference: &str) -> Option<ImageError> {
    let any = |needle: &str| codes.iter().any(|code| code.to_ascii_lowercase().contains(needle));
    let registry = endpoint.host.clone();
    if any("unauthorized") || any("denied") {
        Some(ImageError::Unauthenticated { registry, message: format!("{url}: {}", codes.join(",")) })
    } else if any("unknown") {
        Some(ImageError::NotInRegistry { reference: reference.to_string(), registry })
    } else {
        None
    }
}

/// A request that never got an answer, with its causes spelled out: reqwest's
/// own message ("error sending request for url") says nothing of why. A TLS
/// handshake that found plain HTTP, or HTTP that found a TLS server, says
/// which and what to set.
pub(super) fn transport_failure(error: &(dyn std::error::Error + 'static), endpoint: &Endpoint) -> String {
    let mut message = crate::error::with_causes(error);
    // rustls reads an HTTP answer to its ClientHello as a record of unknown type;
    // a TLS server answers a plain request with a handshake record hyper cannot parse.
    let lower = message.to_ascii_lowercase();
    let wrong_scheme = if endpoint.plain_http {
        lower.contains("invalid http version") || lower.contains("invalid status") || lower.contains("parse")
    } else {
        lower.contains("invalidcontenttype") || lower.contains("corrupt message") || lower.contains("wrong version")
    };
    if wrong_scheme {
        message.push_str(". ");
        message.push_str(&scheme_hint(endpoint));
    }
    message
}

pub(super) fn scheme_hint(endpoint: &Endpoint) -> String {
    let host = &endpoint.host;
    if endpoint.plain_http {
        format!(
            "berth spoke plain HTTP to {host}, which seems to speak HTTPS: remove its plain_http setting \
             (loopback registries get plain HTTP unless `images.loopback_plain_http = false` or the registry \
             sets insecure_skip_verify)"
        )
    } else {
        format!(
            "berth spoke HTTPS to {host}, which seems to speak plain HTTP: set `registries.\"{host}\".plain_http = true` \
             (or name the mirror with http://)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mirror, MirrorConfig};

    #[test]
    fn mirrors_come_first_and_docker_io_maps_to_its_endpoint() {
        let mut config = Config::default();
        config.registries.insert(
            "docker.io".into(),
            RegistryConfig {
                mirrors: vec![Mirror::Url("http://127.0.0.1:5001".into()), Mirror::Url("https://mirror.local/v2/".into())],
                ..Default::default()
            },
        );
        let list = endpoints(&config, "docker.io");
        let hosts: Vec<_> = list.iter().map(|e| (e.host.as_str(), e.plain_http, e.mirror)).collect();
        assert_eq!(
            hosts,
            [("127.0.0.1:5001", true, true), ("mirror.local", false, true), ("registry-1.docker.io", false, false)]
        );
        let plain = endpoints(&config, "quay.io");
        assert_eq!(plain.len(), 1);
        assert_eq!(plain[0].host, "quay.io");
    }

    #[test]
    fn mirror_capabilities_credentials_and_no_upstream() {
        let mirror = |url: &str, capabilities: Vec<MirrorCapability>, username: Option<&str>| {
            Mirror::Detailed(MirrorConfig {
                url: url.into(),
                capabilities,
                username: username.map(Into::into),
                password: username.map(|_| "secret".into()),
            })
        };
        let mut config = Config::default();
        config.registries.insert(
            "quay.io".into(),
            RegistryConfig {
                mirrors: vec![
                    mirror("https://content.local", vec![MirrorCapability::Pull], Some("puller")),
                    mirror("https://tags-only.local", vec![MirrorCapability::Resolve], None),
                    mirror("https://both.local", vec![MirrorCapability::Pull, MirrorCapability::Resolve], None),
                ],
                use_upstream: false,
                ..Default::default()
            },
        );
        let list = endpoints(&config, "quay.io");
        let summary: Vec<_> = list.iter().map(|e| (e.host.as_str(), e.resolve, e.credentials.is_some())).collect();
        // A mirror that may only resolve serves no content; the registry itself is never asked.
        assert_eq!(summary, [("content.local", false, true), ("both.local", true, false)]);
        assert_eq!(list[0].credentials, Some(("puller".into(), "secret".into())));
    }

    #[test]
    fn loopback_registries_speak_plain_http_unless_told_otherwise() {
        let mut config = Config::default();
        for host in ["localhost:5000", "127.0.0.1:5000", "127.3.4.5", "[::1]:5000", "::1", "LOCALHOST"] {
            assert!(endpoints(&config, host)[0].plain_http, "{host}");
        }
        for host in ["quay.io", "10.0.0.1:5000", "localhost.example.com", "[2001:db8::1]:5000"] {
            assert!(!endpoints(&config, host)[0].plain_http, "{host}");
        }
        config
            .registries
            .insert("localhost:5000".into(), RegistryConfig { insecure_skip_verify: true, ..Default::default() });
        assert!(!endpoints(&config, "localhost:5000")[0].plain_http, "skip-verify asks for TLS");
        config.images.loopback_plain_http = false;
        assert!(!endpoints(&config, "127.0.0.1:5000")[0].plain_http);
    }

    #[test]
    fn transport_failures_name_their_cause_and_the_wrong_scheme() {
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request for url (https://127.0.0.1:5000/v2/)")]
        struct Outer(#[source] std::io::Error);
        let endpoint = Endpoint {
            host: "127.0.0.1:5000".into(),
            plain_http: false,
            skip_verify: false,
            mirror: false,
            resolve: true,
            credentials: None,
        };
        let tls_to_http = Outer(std::io::Error::other("received corrupt message of type InvalidContentType"));
        let message = transport_failure(&tls_to_http, &endpoint);
        assert!(message.contains("InvalidContentType"), "{message}");
        assert!(message.contains("seems to speak plain HTTP"), "{message}");

        let refused = Outer(std::io::Error::other("Connection refused (os error 111)"));
        let message = transport_failure(&refused, &endpoint);
        assert!(message.ends_with("Connection refused (os error 111)"), "{message}");

        let plain = Endpoint { plain_http: true, ..endpoint };
        let http_to_tls = Outer(std::io::Error::other("invalid HTTP version parsed"));
        assert!(transport_failure(&http_to_tls, &plain).contains("seems to speak HTTPS"));
    }

    #[test]
    fn credentials_from_every_cri_form() {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        match Credentials::from_cri("", "", &auth, "", "").unwrap() {
            Credentials::Basic { username, password } => {
                assert_eq!((username.as_str(), password.as_str()), ("alice", "s3cret:x"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(Credentials::from_cri("u", "p", "", "", "").unwrap(), Credentials::Basic { .. }));
        assert!(matches!(Credentials::from_cri("", "", "", "id", "").unwrap(), Credentials::IdentityToken(_)));
        assert!(matches!(Credentials::from_cri("u", "p", "", "id", "tok").unwrap(), Credentials::RegistryToken(_)));
        assert!(matches!(Credentials::from_cri("", "", "", "", "").unwrap(), Credentials::Anonymous));
        let err = Credentials::from_cri("", "", "!!notbase64", "", "").unwrap_err();
        assert!(err.to_string().contains("auth.auth"), "{err}");
    }

    #[test]
    fn bearer_challenge_parsing() {
        let c = parse_bearer_challenge(
            r#"Bearer realm="http://127.0.0.1:9/token",service="reg",scope="repository:a:pull""#,
        );
        assert_eq!(c, Some(BearerChallenge { realm: "http://127.0.0.1:9/token".into(), service: Some("reg".into()) }));
        assert_eq!(parse_bearer_challenge(r#"Basic realm="x""#), None);
    }
}
