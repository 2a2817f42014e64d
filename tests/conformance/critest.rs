//! critest, cri-tools' CRI validation suite, run against a real berth: every
//! image it pulls is a look-alike pushed to a local registry that berth mirrors
//! `gcr.io`, `registry.k8s.io`, `k8s.gcr.io` and `docker.io` to, and pods get a
//! private bridge network with portmap.
//!
//! The reports stay in `target/conformance/` (`critest-junit.xml`,
//! `critest.json`, `critest.log`, and berth's log `critest-berth.log`). To
//! run one spec by hand against this set-up, add `--ginkgo.focus=REGEX` to
//! `BERTH_CRITEST_ARGS`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::critest_images::{berth_config, push_critest_images};
use crate::support::registry::Registry;
use crate::support::tools;

/// Specs left out on purpose, as (`--ginkgo.skip` regex, reason). Each regex
/// names its specs precisely; README's list is this one. AppArmor's specs are
/// not listed: they skip themselves on a host without AppArmor. The NRI specs
/// run against berth's NRI socket (`--nri-socket`).
pub const SKIPPED_SPECS: &[(&str, &str)] = &[
    (
        r"Image Manager public image with digest should be pulled and removed",
        "pulls gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2…, an upstream content digest no offline registry can serve",
    ),
];

/// The whole run is bounded: critest's own timeout first (it then still
/// writes its reports), ours a little later (critest and its children killed).
const CRITEST_TIMEOUT: Duration = Duration::from_secs(40 * 60);
const RUN_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// `target/conformance`, where a developer finds the reports.
fn report_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf);
    let dir = target.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target")).join("conformance");
    std::fs::create_dir_all(&dir).expect("creating target/conformance");
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn critest() {
    let critest = tools::critest();
    let registry = Registry::start().await;
    let started = Instant::now();
    let pushed = push_critest_images(&registry).await;
    eprintln!("critest: {} image references pushed in {:?}", pushed.len(), started.elapsed());

    let network = TestNetwork::new();
    let berth = Berth::builder().config(&berth_config(&registry)).cni_conflist(&network.conflist()).start().await;

    let dir = report_dir();
    let junit = dir.join("critest-junit.xml");
    let json = dir.join("critest.json");
    let log = dir.join("critest.log");
    for stale in [&junit, &json] {
        let _ = std::fs::remove_file(stale);
    }
    let endpoint = format!("unix://{}", berth.paths.socket.display());
    let mut command = Command::new(&critest);
    command
        .arg(format!("--runtime-endpoint={endpoint}"))
        .arg(format!("--nri-socket={}", berth.paths.nri_socket.display()))
        .arg(format!("--image-endpoint={endpoint}"))
        .arg("--ginkgo.flake-attempts=1")
        .arg(format!("--ginkgo.timeout={}s", CRITEST_TIMEOUT.as_secs()))
        .arg("--ginkgo.no-color")
        .arg("--ginkgo.v")
        .arg(format!("--ginkgo.junit-report={}", junit.display()))
        .arg(format!("--ginkgo.json-report={}", json.display()));
    for (regex, _) in SKIPPED_SPECS {
        command.arg(format!("--ginkgo.skip={regex}"));
    }
    if let Ok(extra) = std::env::var("BERTH_CRITEST_ARGS") {
        command.args(extra.split_whitespace());
    }
    let output = std::fs::File::create(&log).expect("creating critest.log");
    command
        .current_dir(berth.dir())
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("dup log"))
        .stderr(output)
        // Its own process group, so that a timeout or a panic kills critest
        // and whatever it started at once.
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; critest dies with the test process
    // even if the test is killed before any Drop runs.
    unsafe {
        command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
    eprintln!("critest: running {:?} (log: {})", command, log.display());
    let segments_before = host_shm_segments();
    let started = Instant::now();
    let child = CritestProcess(command.spawn().expect("spawning critest"));
    let status = tokio::task::spawn_blocking(move || child.wait_for(RUN_TIMEOUT)).await.expect("waiting for critest");
    let elapsed = started.elapsed();
    remove_critest_shm_segments(&segments_before);
    let _ = std::fs::copy(&berth.paths.log, dir.join("critest-berth.log"));

    let report = std::fs::read(&json).ok().and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let Some(report) = report else {
        panic!(
            "critest ({status:?} after {elapsed:?}) wrote no report {}; its log {}:\n{}",
            json.display(),
            log.display(),
            tail(&log, 60)
        );
    };
    let summary = Summary::of(&report);
    eprintln!(
        "critest: {} passed, {} failed, {} skipped, {} pending in {:?} (exit {status:?}); junit report {}",
        summary.passed,
        summary.failed.len(),
        summary.skipped,
        summary.pending,
        elapsed,
        junit.display()
    );
    let failures: Vec<String> = summary
        .failed
        .iter()
        .map(|(name, message)| format!("- {name}\n    {}", message.replace('\n', "\n    ")))
        .collect();
    assert!(
        failures.is_empty() && status.is_some_and(|s| s.success()),
        "critest: {} of {} specs failed (exit {status:?}, {elapsed:?}; junit {}, log {}):\n{}",
        summary.failed.len(),
        summary.passed + summary.failed.len(),
        junit.display(),
        log.display(),
        failures.join("\n")
    );
    drop(berth);
    drop(network);
}

/// critest's process, killed with its process group unless it exited.
struct CritestProcess(Child);

impl CritestProcess {
    /// Waits for the exit, at most `timeout`; `None` on timeout (then killed).
    fn wait_for(mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(_) => return None,
            }
        }
        eprintln!("critest: still running after {timeout:?}: killed");
        None
    }
}

impl Drop for CritestProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = killpg(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

/// The figures of a Ginkgo JSON report.
struct Summary {
    passed: usize,
    skipped: usize,
    pending: usize,
    /// (spec name, failure message) of each spec that failed, panicked, timed
    /// out or was interrupted.
    failed: Vec<(String, String)>,
}

impl Summary {
    fn of(report: &serde_json::Value) -> Summary {
        let mut summary = Summary { passed: 0, skipped: 0, pending: 0, failed: Vec::new() };
        let specs = report.as_array().into_iter().flatten().flat_map(|suite| suite["SpecReports"].as_array()).flatten();
        for spec in specs {
            let leaf = spec["LeafNodeText"].as_str().unwrap_or_default();
            // Suite-level nodes (BeforeSuite, ...) have no text; they count only when they fail.
            let kind = spec["LeafNodeType"].as_str().unwrap_or_default();
            match spec["State"].as_str().unwrap_or_default() {
                "passed" if kind == "It" => summary.passed += 1,
                "passed" => {}
                "skipped" => summary.skipped += 1,
                "pending" => summary.pending += 1,
                _ => {
                    let mut name: Vec<&str> = spec["ContainerHierarchyTexts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.as_str())
                        .collect();
                    name.push(if leaf.is_empty() { kind } else { leaf });
                    let failure = &spec["Failure"];
                    let message = format!(
                        "{} ({}:{})",
                        failure["Message"].as_str().unwrap_or("(no message)").trim(),
                        failure["Location"]["FileName"].as_str().unwrap_or("?").rsplit('/').next().unwrap_or("?"),
                        failure["Location"]["LineNumber"]
                    );
                    summary.failed.push((name.join(" "), message));
                }
            }
        }
        summary
    }
}

/// The host's System V shared memory segments, as (shmid, size, attached).
fn host_shm_segments() -> Vec<(String, u64, u64)> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // key shmid perms size cpid lpid nattch ...
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.get(1)?.to_string(), fields.get(3)?.parse().ok()?, fields.get(6)?.parse().ok()?))
        })
        .collect()
}

/// critest's HostIpc specs make a 1 MiB segment on the host (`ipcmk -M
/// 1048576`) and never remove it: removes those that appeared during the run.
fn remove_critest_shm_segments(before: &[(String, u64, u64)]) {
    for (id, size, attached) in host_shm_segments() {
        if size == 1_048_576 && attached == 0 && !before.iter().any(|(old, _, _)| *old == id) {
            let _ = Command::new("ipcrm").args(["-m", &id]).status();
        }
    }
}

/// The last `lines` lines of `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
