//! A throw-away OCI distribution registry for tests.
//!
//! Each [`Registry`] is a private `/usr/bin/docker-registry` (Debian's build of
//! distribution v2) serving plain HTTP on a free loopback port, with its
//! storage and configuration in a temporary directory. It is killed when the
//! `Registry` is dropped, and by the kernel (`PR_SET_PDEATHSIG`) if the test
//! thread that started it dies first.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
/// How long a freshly started registry gets to answer `GET /v2/`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Port races (another process grabbing the port between our probe and the
/// registry's bind) are rare; a few attempts make them harmless.
const START_ATTEMPTS: usize = 5;

pub struct Registry {
    child: Child,
    port: u16,
    /// Holds the config, the htpasswd file, the log and the storage; removed on drop.
    dir: TempDir,
    /// Serving HTTPS with a self-signed certificate.
    tls: bool,
}

/// Basic-auth credentials of a registry started with [`Registry::start_with_htpasswd`].
struct Htpasswd {
    user: String,
    password: String,
}

impl Registry {
    /// Starts a registry without authentication.
    pub async fn start() -> Registry {
        Self::start_inner(None, "", false).await
    }

    /// Starts a registry that requires HTTP basic auth with these credentials
    /// (the registry's `htpasswd` auth backend).
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Registry {
        Self::start_inner(Some(Htpasswd { user: user.to_owned(), password: password.to_owned() }), "", false).await
    }

    /// A registry serving HTTPS with a fresh self-signed certificate for
    /// 127.0.0.1, which no client trusts: for skip-verify settings.
    pub async fn start_with_tls() -> Registry {
        Registry::start_inner(None, "", true).await
    }

    /// Starts a registry whose config.yml ends with `extra_config`: top-level
    /// YAML sections the base config does not have, typically a custom `auth:`
    /// (see `token_auth`). Repeating a base section (`http:`, `storage:`,
    /// `log:`) makes the registry refuse to start.
    pub async fn start_with_extra_config(extra_config: &str) -> Registry {
        Self::start_inner(None, extra_config, false).await
    }

    /// "127.0.0.1:PORT", as used in image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// "http://127.0.0.1:PORT", the base of the registry's HTTP API.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the registry, so tests can check that it goes away.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the registry wrote to stdout and stderr so far (log level warn).
    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Root of the registry's filesystem storage.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the filesystem driver keeps the content of the blob `digest`
    /// ("sha256:<hex>"). The registry checks digests only on upload, so a test
    /// can overwrite this file to make the registry serve content that does not
    /// match its digest.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let (algorithm, hex) =
            digest.split_once(':').unwrap_or_else(|| panic!("blob digest {digest:?} is not of the form algorithm:hex"));
        self.storage_dir().join("docker/registry/v2/blobs").join(algorithm).join(&hex[..2]).join(hex).join("data")
    }

    async fn start_inner(auth: Option<Htpasswd>, extra_config: &str, tls: bool) -> Registry {
        install_crypto_provider();
        let mut dir = tempfile::Builder::new()
            .prefix("berth-test-registry-")
            .tempdir()
            .expect("creating the registry's temporary directory");
        let htpasswd_path = auth.as_ref().map(|auth| write_htpasswd(dir.path(), auth));
        let tls_files = tls.then(|| write_self_signed_cert(dir.path()));

        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            let config_path =
                write_config(dir.path(), port, htpasswd_path.as_deref(), tls_files.as_ref(), extra_config);
            let child = spawn(dir.path(), &config_path);
            let mut registry = Registry { child, port, dir, tls };
            match registry.wait_until_up().await {
                Ok(()) => return registry,
                Err(failure) => {
                    last_failure = format!("attempt {attempt} on port {port}: {failure}");
                    // Keep the directory (and its htpasswd file) for the next
                    // attempt; dropping the failed Registry kills its child.
                    dir = take_dir(registry);
                }
            }
        }
        panic!("docker-registry did not come up after {START_ATTEMPTS} attempts; last: {last_failure}");
    }

    /// Polls `GET /v2/` until the registry answers with any HTTP status (a
    /// registry with auth answers 401, which is just as good a sign of life).
    async fn wait_until_up(&mut self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .danger_accept_invalid_certs(self.tls)
            .timeout(Duration::from_secs(2))
            .build()
            .expect("building an HTTP client");
        let url = format!("{}/v2/", self.url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the registry process") {
                return Err(format!("docker-registry exited with {status}; its output:\n{}", self.logs()));
            }
            if client.get(&url).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "docker-registry did not answer GET {url} within {STARTUP_TIMEOUT:?}; its output:\n{}",
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        // Errors mean the child already exited (kill) or was already reaped
        // (wait); either way there is nothing left to clean up.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Moves the temporary directory out of a failed registry, so the next attempt
/// reuses it (and the htpasswd file in it) while Drop still kills the child.
fn take_dir(mut registry: Registry) -> TempDir {
    let placeholder = tempfile::tempdir().expect("creating a placeholder temporary directory");
    std::mem::replace(&mut registry.dir, placeholder)
}

/// Makes reqwest clients buildable. oci-client's `rustls-tls-no-provider`
/// feature reaches reqwest through feature unification, and then building any
/// `reqwest::Client` panics until a rustls provider is installed process-wide.
/// Called before the test bed builds its first client; an error only means a
/// provider is installed already, which is all we need.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A port that was free a moment ago: bind port 0, read the port, release it.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("reading the probe listener's address").port()
}

fn write_htpasswd(dir: &Path, auth: &Htpasswd) -> PathBuf {
    // The registry accepts only bcrypt entries, hence -B.
    let output = Command::new("htpasswd")
        .args(["-Bbn", &auth.user, &auth.password])
        .output()
        .expect("running htpasswd (from apache2-utils)");
    assert!(
        output.status.success(),
        "htpasswd -Bbn failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join("htpasswd");
    fs::write(&path, &output.stdout).expect("writing the htpasswd file");
    path
}

/// Writes `cert.pem` and `key.pem` for 127.0.0.1 and returns their paths.
pub fn write_self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("generating a self-signed certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    fs::write(&cert, certified.cert.pem()).expect("writing cert.pem");
    fs::write(&key, certified.signing_key.serialize_pem()).expect("writing key.pem");
    (cert, key)
}

fn write_config(
    dir: &Path,
    port: u16,
    htpasswd: Option<&Path>,
    tls: Option<&(PathBuf, PathBuf)>,
    extra_config: &str,
) -> PathBuf {
    let storage = dir.join("storage");
    let mut config = format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  # Upload purging is a background job we never want running during a test.
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
",
        storage = storage.display()
    );
    if let Some((cert, key)) = tls {
        config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
    }
    if let Some(htpasswd) = htpasswd {
        config.push_str(&format!(
            "auth:
  htpasswd:
    realm: berth-test
    path: {}
",
            htpasswd.display()
        ));
    }
    config.push_str(extra_config);
    let path = dir.join("config.yml");
    fs::write(&path, config).expect("writing the registry's config.yml");
    path
}

fn spawn(dir: &Path, config: &Path) -> Child {
    // Output goes to a file rather than a pipe: nobody reads a pipe while the
    // test runs, and a full pipe would block the registry.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("registry.log"))
        .expect("opening the registry's log file");
    let log_for_stderr = log.try_clone().expect("duplicating the registry's log file handle");
    let mut command = Command::new(REGISTRY_BINARY);
    command.arg("serve").arg(config).stdin(Stdio::null()).stdout(log).stderr(log_for_stderr);
    // SAFETY: the closure runs in the forked child before exec and only makes
    // one async-signal-safe system call (prctl).
    unsafe {
        command.pre_exec(|| {
            // If the test dies without running Drop (panic=abort, SIGKILL), the
            // kernel kills the registry when the spawning thread goes away.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
        });
    }
    command.spawn().unwrap_or_else(|e| panic!("starting {REGISTRY_BINARY} (Debian package docker-registry): {e}"))
}
