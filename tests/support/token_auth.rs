//! A registry behind Docker token authentication ("bearer"), as Docker Hub and
//! most real registries run, with the token server written here.
//!
//! The flow a client goes through:
//! 1. it asks the registry for something and gets 401 with
//!    `WWW-Authenticate: Bearer realm="<token server>",service="berth-test-registry",scope="repository:<repo>:pull"`;
//! 2. it asks the token server for a token:
//!    - `GET <realm>?service=..&scope=..` with HTTP basic credentials, or
//!      without any (an anonymous token, which grants nothing here);
//!    - `POST <realm>` with an OAuth2 form: `grant_type=refresh_token` with the
//!      identity token (CRI's `identity_token`), or `grant_type=password` with
//!      `username` and `password`;
//! 3. it repeats the request with `Authorization: Bearer <token>`.
//!
//! Tokens are JWTs signed (ES256) with a fresh self-signed certificate that the
//! registry trusts through `rootcertbundle`; the certificate travels in the
//! token's `x5c` header, which is how distribution 2.8 finds the signing key.
//! [`TokenAuthRegistry::mint_token`] signs one directly, as a CRI
//! `registry_token` would carry it.
//!
//! ```ignore
//! let registry = TokenAuthRegistry::start("tester", "s3cret").await;
//! registry.push(&ImageBuilder::busybox().build(), "test/busybox", "latest").await;
//! // ... point berth at registry.registry().host() ...
//! assert_eq!(registry.token_requests().basic, 1);
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::http_server::BackgroundServer;
use super::image::{BuiltImage, BuiltIndex, RegistryClient};
use super::registry::Registry;

/// The registry's `service`: the `aud` of its tokens, and what clients must
/// send as `service` to the token server.
pub const SERVICE: &str = "berth-test-registry";
/// The `iss` of every token, which the registry checks.
pub const ISSUER: &str = "berth-test-issuer";
/// Path of the token endpoint on the token server.
pub const TOKEN_PATH: &str = "/token";
/// How long issued tokens live (`expires_in`). The registry allows 60 s of
/// clock skew on top, so short lifetimes would not make expiry testable anyway.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The actions a valid user gets on any repository: those of an ordinary
/// Docker Hub account on its own repositories (no delete, no catalog).
const GRANTABLE_ACTIONS: [&str; 2] = ["pull", "push"];

/// A registry that only accepts bearer tokens, and the token server that issues them.
/// Both are gone when drop returns.
pub struct TokenAuthRegistry {
    registry: Registry,
    server: TokenServer,
    /// Holds the certificate the registry trusts (the key stays in memory).
    _cert_dir: TempDir,
}

impl TokenAuthRegistry {
    /// Starts the token server, which accepts `user`/`password` (and the
    /// identity token of [`Self::identity_token`]), then a registry that
    /// trusts its tokens.
    pub async fn start(user: &str, password: &str) -> TokenAuthRegistry {
        let cert_dir = tempfile::Builder::new()
            .prefix("berth-test-token-auth-")
            .tempdir()
            .expect("creating the token server's temporary directory");
        let (signer, cert_path) = Signer::create(cert_dir.path());
        let accounts = Accounts {
            user: user.to_owned(),
            password: password.to_owned(),
            identity_token: signer.derive_secret("identity-token"),
        };
        let server = TokenServer::start(State { signer, accounts, log: Mutex::default() });
        let registry = Registry::start_with_extra_config(&token_auth_config(&server.realm(), &cert_path)).await;
        TokenAuthRegistry { registry, server, _cert_dir: cert_dir }
    }

    /// The registry, for `host()`, `url()`, `logs()`, ...
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// "http://127.0.0.1:PORT/token", the `realm` of the registry's challenges.
    /// True once the token server's thread has ended.
    pub fn token_server_stopped_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.server.stopped_flag()
    }

    pub fn realm(&self) -> String {
        self.server.realm()
    }

    /// The token the server accepts as `refresh_token` for the valid user: what
    /// a CRI `identity_token` carries (docker login's "identity token").
    pub fn identity_token(&self) -> String {
        self.server.state.accounts.identity_token.clone()
    }

    /// A registry token for the valid user with `actions` ("pull", "push",
    /// anything really: it is signed as asked) on `repo`, as a CRI
    /// `registry_token` would carry it. Not counted as a token request.
    pub fn mint_token(&self, repo: &str, actions: &[&str]) -> String {
        let state = &self.server.state;
        state.signer.mint(&state.accounts.user, vec![repository_access(repo, actions)])
    }

    /// How many requests of each kind the token server answered.
    pub fn token_requests(&self) -> TokenRequestCounts {
        TokenRequestCounts::of(&self.token_request_log())
    }

    /// Every request the token server answered, oldest first.
    pub fn token_request_log(&self) -> Vec<TokenRequest> {
        self.server.state.log.lock().expect("token request log lock").clone()
    }

    /// A client that sends `token` as its bearer token to this registry
    /// (rather than running the challenge dance, so the test chooses the token).
    pub fn client(&self, token: &str) -> RegistryClient {
        RegistryClient::new(&self.registry).with_bearer_token(token)
    }

    /// Pushes `image` as `repo:tag` with a minted pull+push token; returns the manifest digest.
    pub async fn push(&self, image: &BuiltImage, repo: &str, tag: &str) -> String {
        self.client(&self.mint_token(repo, &GRANTABLE_ACTIONS)).push_image(repo, tag, image).await
    }

    /// Pushes `index` and its images as `repo:tag` with a minted pull+push token; returns the index digest.
    pub async fn push_index(&self, index: &BuiltIndex, repo: &str, tag: &str) -> String {
        self.client(&self.mint_token(repo, &GRANTABLE_ACTIONS)).push_index(repo, tag, index).await
    }
}

/// The `auth:` section that makes the registry demand tokens from `realm`
/// signed by the certificate at `cert`.
fn token_auth_config(realm: &str, cert: &Path) -> String {
    format!(
        "auth:
  token:
    realm: {realm}
    service: {SERVICE}
    issuer: {ISSUER}
    rootcertbundle: {}
",
        cert.display()
    )
}

// ---------------------------------------------------------------------------
// Request log
// ---------------------------------------------------------------------------

/// How a request asked for a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRequestKind {
    /// GET without credentials.
    Anonymous,
    /// GET with an `Authorization` header (HTTP basic, or something malformed).
    Basic,
    /// POST `grant_type=refresh_token`.
    RefreshToken,
    /// POST `grant_type=password`.
    Password,
    /// Anything else: another path, method or grant type.
    Other,
}

/// One request the token server answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub kind: TokenRequestKind,
    /// The requested scopes ("repository:test/x:pull"), in order; space
    /// separated values (the OAuth2 form) are split.
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// The POST form's `client_id` (berth sends "berth").
    pub client_id: Option<String>,
    /// Whether a token was issued (an anonymous token counts).
    pub granted: bool,
}

/// [`TokenRequest`]s counted by kind; `refused` counts those of any kind that
/// got an error instead of a token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenRequestCounts {
    pub anonymous: usize,
    pub basic: usize,
    pub refresh_token: usize,
    pub password: usize,
    pub other: usize,
    pub refused: usize,
}

impl TokenRequestCounts {
    fn of(log: &[TokenRequest]) -> TokenRequestCounts {
        let mut counts = TokenRequestCounts::default();
        for request in log {
            let kind = match request.kind {
                TokenRequestKind::Anonymous => &mut counts.anonymous,
                TokenRequestKind::Basic => &mut counts.basic,
                TokenRequestKind::RefreshToken => &mut counts.refresh_token,
                TokenRequestKind::Password => &mut counts.password,
                TokenRequestKind::Other => &mut counts.other,
            };
            *kind += 1;
            counts.refused += usize::from(!request.granted);
        }
        counts
    }

    /// All requests, granted or not.
    pub fn total(&self) -> usize {
        self.anonymous + self.basic + self.refresh_token + self.password + self.other
    }
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// Signs registry tokens with a self-signed P-256 certificate's key.
struct Signer {
    key: EncodingKey,
    /// The certificate (base64 DER) for the `x5c` header: distribution 2.8
    /// verifies it against `rootcertbundle` and takes the key from it.
    x5c: String,
    /// The PKCS#8 key, kept to derive per-instance secrets from.
    key_der: Vec<u8>,
    next_jti: AtomicU64,
}

impl Signer {
    /// Makes a key and certificate, writes the certificate as a PEM bundle in
    /// `dir` for the registry's `rootcertbundle`, and returns its path too.
    fn create(dir: &Path) -> (Signer, PathBuf) {
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generating a P-256 key pair");
        let params = rcgen::CertificateParams::new(vec![ISSUER.to_owned()]).expect("token certificate parameters");
        let cert = params.self_signed(&key_pair).expect("self-signing the token certificate");
        let path = dir.join("token-cert.pem");
        std::fs::write(&path, cert.pem()).expect("writing the token certificate");
        let key_der = key_pair.serialize_der();
        let signer = Signer {
            key: EncodingKey::from_ec_der(&key_der),
            x5c: BASE64.encode(cert.der()),
            key_der,
            next_jti: AtomicU64::new(1),
        };
        (signer, path)
    }

    /// A secret unique to this instance (the key is fresh), named by `purpose`.
    fn derive_secret(&self, purpose: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(purpose.as_bytes());
        hasher.update(&self.key_der);
        hex::encode(&hasher.finalize()[..16])
    }

    /// A token for `subject` ("" for anonymous) granting `access` (entries of
    /// the token's `access` claim).
    fn mint(&self, subject: &str, access: Vec<Value>) -> String {
        let now = unix_now();
        let mut header = Header::new(Algorithm::ES256);
        header.x5c = Some(vec![self.x5c.clone()]);
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            // A string, not a list: distribution 2.8 decodes `aud` as one.
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME.as_secs(),
            "nbf": now,
            "iat": now,
            "jti": format!("berth-test-{}", self.next_jti.fetch_add(1, Ordering::Relaxed)),
            "access": access,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("signing a registry token")
    }
}

/// One entry of a token's `access` claim.
fn repository_access(repo: &str, actions: &[&str]) -> Value {
    json!({"type": "repository", "name": repo, "actions": actions})
}

/// What the valid user gets for a requested `scope` ("repository:<name>:<actions>"):
/// the grantable actions among those asked, on any repository; nothing for
/// other resource types (e.g. "registry:catalog:*").
fn granted_access(scope: &str) -> Option<Value> {
    let (kind, rest) = scope.split_once(':')?;
    // Names may hold ':' only in theory; actions never do, so split from the right.
    let (name, actions) = rest.rsplit_once(':')?;
    if kind != "repository" {
        return None;
    }
    let actions: Vec<&str> = actions.split(',').filter(|action| GRANTABLE_ACTIONS.contains(action)).collect();
    (!actions.is_empty()).then(|| repository_access(name, &actions))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970").as_secs()
}

/// `unix` seconds as RFC 3339 UTC ("2023-11-14T22:13:20Z"), for `issued_at`.
pub fn rfc3339(unix: u64) -> String {
    let (days, seconds) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days: the proleptic Gregorian date of a day
    // count, computed in 400-year eras starting on March 1st.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

// ---------------------------------------------------------------------------
// Token server
// ---------------------------------------------------------------------------

/// The HTTP token server: a [`BackgroundServer`], so it keeps answering while
/// a test blocks its own thread (as a synchronous `berth` CLI call does while
/// berth waits for a token), and its port is closed when drop returns.
struct TokenServer {
    server: BackgroundServer,
    state: Arc<State>,
}

impl TokenServer {
    fn start(state: State) -> TokenServer {
        let state = Arc::new(state);
        let serving = Arc::clone(&state);
        let server = BackgroundServer::bind("token-server").serve(move |request| answer(Arc::clone(&serving), request));
        TokenServer { server, state }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}{TOKEN_PATH}", self.server.port())
    }

    fn stopped_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.server.stopped_flag()
    }
}

/// Who may have tokens.
struct Accounts {
    user: String,
    password: String,
    identity_token: String,
}

struct State {
    signer: Signer,
    accounts: Accounts,
    log: Mutex<Vec<TokenRequest>>,
}

type Reply = Response<Full<Bytes>>;

async fn answer(state: Arc<State>, request: Request<Incoming>) -> Reply {
    let call = TokenCall::read(request).await;
    let decision = state.decide(&call);
    state.log.lock().expect("token request log lock").push(call.to_log_entry(decision.is_ok()));
    match decision {
        Ok(grant) => state.token_reply(&call, &grant),
        Err(refusal) => refusal.reply(),
    }
}

/// A request to the token server, read in full.
struct TokenCall {
    method: Method,
    path: String,
    kind: TokenRequestKind,
    /// The query (GET) or form body (POST) parameters.
    params: Vec<(String, String)>,
    /// The `Authorization` header as basic credentials, if sent (Err: sent but not valid basic auth).
    basic: Option<Result<(String, String), String>>,
}

impl TokenCall {
    async fn read(request: Request<Incoming>) -> TokenCall {
        let (parts, body) = request.into_parts();
        let basic = basic_credentials(&parts.headers);
        let params = if parts.method == Method::POST {
            let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
            decode_params(&String::from_utf8_lossy(&body))
        } else {
            decode_params(parts.uri.query().unwrap_or_default())
        };
        let mut call = TokenCall {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            kind: TokenRequestKind::Other,
            params,
            basic,
        };
        call.kind = call.classify();
        call
    }

    fn classify(&self) -> TokenRequestKind {
        match (&self.method, self.param("grant_type")) {
            _ if self.path != TOKEN_PATH => TokenRequestKind::Other,
            (&Method::GET, _) if self.basic.is_some() => TokenRequestKind::Basic,
            (&Method::GET, _) => TokenRequestKind::Anonymous,
            (&Method::POST, Some("refresh_token")) => TokenRequestKind::RefreshToken,
            (&Method::POST, Some("password")) => TokenRequestKind::Password,
            _ => TokenRequestKind::Other,
        }
    }

    /// The first value of parameter `name`.
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// Every requested scope: GET sends one `scope` parameter per scope, the
    /// OAuth2 form one parameter with space-separated scopes; accept both anywhere.
    fn scopes(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|(key, _)| key == "scope")
            .flat_map(|(_, value)| value.split_whitespace().map(str::to_owned))
            .collect()
    }

    fn to_log_entry(&self, granted: bool) -> TokenRequest {
        TokenRequest {
            kind: self.kind,
            scopes: self.scopes(),
            service: self.param("service").map(str::to_owned),
            client_id: self.param("client_id").map(str::to_owned),
            granted,
        }
    }
}

/// Whom a token is for, once the request passed the checks.
struct Grant {
    /// None for an anonymous token, which grants no access.
    subject: Option<String>,
    /// Also hand out the identity token as `refresh_token`: what docker login
    /// asks for (GET `offline_token=true`, POST `access_type=offline`) to keep
    /// instead of the password.
    offline: bool,
}

/// Why a request gets no token: an OAuth2-style JSON error.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl Refusal {
    fn bad_request(description: String) -> Refusal {
        Refusal { status: StatusCode::BAD_REQUEST, error: "invalid_request", description }
    }

    /// Wrong credentials: 401 in every flow, so a test checks one status
    /// whatever the flow (RFC 6749 alone would answer a bad refresh token with
    /// 400 `invalid_grant`).
    fn unauthorized(description: String) -> Refusal {
        Refusal { status: StatusCode::UNAUTHORIZED, error: "unauthorized", description }
    }

    fn reply(&self) -> Reply {
        let mut reply = json_reply(self.status, &json!({"error": self.error, "error_description": self.description}));
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = "Basic realm=\"berth-test-token-server\"".parse().expect("a constant header value");
            reply.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        reply
    }
}

impl State {
    fn decide(&self, call: &TokenCall) -> Result<Grant, Refusal> {
        if call.path != TOKEN_PATH {
            return Err(Refusal {
                status: StatusCode::NOT_FOUND,
                error: "not_found",
                description: format!("the token endpoint is {TOKEN_PATH}, not {}", call.path),
            });
        }
        check_service(call)?;
        if call.method == Method::POST && call.param("client_id").is_none_or(str::is_empty) {
            return Err(Refusal::bad_request("a POST token request needs a client_id".to_owned()));
        }
        let subject = match call.kind {
            TokenRequestKind::Anonymous => None,
            TokenRequestKind::Basic => {
                let (user, password) =
                    call.basic.clone().expect("a Basic request has credentials").map_err(Refusal::unauthorized)?;
                Some(self.check_password(&user, &password)?)
            }
            TokenRequestKind::Password => Some(self.check_password(
                call.param("username").unwrap_or_default(),
                call.param("password").unwrap_or_default(),
            )?),
            TokenRequestKind::RefreshToken => {
                Some(self.check_identity_token(call.param("refresh_token").unwrap_or_default())?)
            }
            TokenRequestKind::Other => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    error: "unsupported_grant_type",
                    description: format!(
                        "{} {TOKEN_PATH} with grant_type {:?}: only GET, and POST with refresh_token or password",
                        call.method,
                        call.param("grant_type")
                    ),
                });
            }
        };
        let offline = call.param("offline_token") == Some("true") || call.param("access_type") == Some("offline");
        Ok(Grant { subject, offline })
    }

    fn check_password(&self, user: &str, password: &str) -> Result<String, Refusal> {
        if user == self.accounts.user && password == self.accounts.password {
            Ok(user.to_owned())
        } else {
            Err(Refusal::unauthorized(format!("incorrect username or password for {user:?}")))
        }
    }

    fn check_identity_token(&self, token: &str) -> Result<String, Refusal> {
        if token == self.accounts.identity_token {
            Ok(self.accounts.user.clone())
        } else {
            Err(Refusal::unauthorized(format!("refresh_token {token:?} is not a valid identity token")))
        }
    }

    /// The token response: GET answers in Docker's shape (`token` and
    /// `access_token`), POST in OAuth2's (`access_token` and `scope`).
    fn token_reply(&self, call: &TokenCall, grant: &Grant) -> Reply {
        let scopes = call.scopes();
        let access: Vec<Value> = match grant.subject {
            Some(_) => scopes.iter().filter_map(|scope| granted_access(scope)).collect(),
            None => Vec::new(),
        };
        let token = self.signer.mint(grant.subject.as_deref().unwrap_or_default(), access);
        let mut body = json!({
            "access_token": token,
            "expires_in": TOKEN_LIFETIME.as_secs(),
            "issued_at": rfc3339(unix_now()),
        });
        if call.method == Method::GET {
            body["token"] = Value::from(token);
        } else {
            body["scope"] = Value::from(scopes.join(" "));
        }
        if grant.offline && grant.subject.is_some() {
            body["refresh_token"] = Value::from(self.accounts.identity_token.as_str());
        }
        json_reply(StatusCode::OK, &body)
    }
}

/// Token requests must name this registry's service, as the challenge says:
/// a client that forgets it (or sends another) is refused, not indulged.
fn check_service(call: &TokenCall) -> Result<(), Refusal> {
    match call.param("service") {
        Some(SERVICE) => Ok(()),
        other => Err(Refusal::bad_request(format!("service is {other:?}, expected {SERVICE:?}"))),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), String>> {
    let value = headers.get(AUTHORIZATION)?;
    let decoded = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    Some(match decoded.as_deref().and_then(|text| text.split_once(':')) {
        Some((user, password)) => Ok((user.to_owned(), password.to_owned())),
        None => Err(format!("Authorization {value:?} is not HTTP basic credentials")),
    })
}

/// Decodes `a=1&b=x+y%2F`: a query string or an urlencoded form body.
fn decode_params(encoded: &str) -> Vec<(String, String)> {
    let mut url = Url::parse("http://params.invalid/").expect("a constant URL");
    url.set_query(Some(encoded));
    url.query_pairs().into_owned().collect()
}

/// Encodes `pairs` as an `application/x-www-form-urlencoded` body.
pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://params.invalid/").expect("a constant URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("building a token server response")
}

/// The parameters of a `WWW-Authenticate: Bearer realm="..",service="..",scope=".."`
/// challenge, as a client reads them to ask the token server; None for another
/// scheme. Values are quoted and may contain commas ("repository:x:pull,push").
pub fn parse_bearer_challenge(challenge: &str) -> Option<BTreeMap<String, String>> {
    let mut rest = challenge.strip_prefix("Bearer ")?.trim();
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = after.strip_prefix('"')?.split_once('"')?;
        params.insert(key.trim().to_owned(), value.to_owned());
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(params)
}
