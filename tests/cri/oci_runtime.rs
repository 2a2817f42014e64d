//! berth's OCI runtime driver against Debian's real runc: a busybox bundle is created,
//! started, exec'd into, updated, paused, killed and deleted. Each test has its own
//! runc root and container ID, so tests run in parallel, and a guard removes the
//! container, its cgroups and its files even when the test fails.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::config::RuntimeKind;
use berth::error::{Classify, ErrorKind};
use berth::runtime::{
    ContainerState, ContainerStatus, CreateIo, ExecIo, OciCli, OciRuntime, RuntimeError, RuntimeHandler, Signal,
};
use oci_spec::runtime::{LinuxMemoryBuilder, LinuxResourcesBuilder, Process, Spec};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

const RUNC: &str = "/usr/sbin/runc";
const CGROUP_PARENT: &str = "berth-test";
/// Only a guard against a hung call: waits end on events, never on this.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// One container's bundle, runc root and cleanup.
struct Bed {
    id: String,
    dir: TempDir,
    cli: OciCli,
}

impl Bed {
    /// A bundle whose container runs `busybox sleep 1000`.
    fn new(name: &str) -> Bed {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!("{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new().prefix("berth-oci-").tempdir().unwrap();
        let handler = RuntimeHandler {
            name: "runc".into(),
            kind: RuntimeKind::Oci,
            binary: RUNC.into(),
            root: dir.path().join("root"),
            systemd_cgroup: false,
            timeout: berth::runtime::DEFAULT_TIMEOUT,
        };
        let bed = Bed { cli: OciCli::new(&handler), id, dir };
        bed.write_bundle();
        bed
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn cgroups_path(&self) -> String {
        format!("/{CGROUP_PARENT}/{}", self.id)
    }

    fn write_bundle(&self) {
        let bin = self.bundle().join("rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let mut spec = Spec::default();
        let root = spec.root_mut().as_mut().unwrap();
        root.set_path(self.bundle().join("rootfs"));
        let process = spec.process_mut().as_mut().unwrap();
        process.set_args(Some(args(&["/bin/busybox", "sleep", "1000"])));
        process.set_terminal(Some(false));
        spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(self.cgroups_path().into()));
        spec.save(self.bundle().join("config.json")).unwrap();
    }

    /// `create` as the monitor runs it (off the async workers, here without a
    /// signalfd), with a pid file in the bed's directory unless `io` names one.
    async fn create(&self, mut io: CreateIo) -> Result<i32, RuntimeError> {
        io.pid_file.get_or_insert_with(|| self.dir.path().join("create.pid"));
        let (cli, id, bundle) = (self.cli.clone(), self.id.clone(), self.bundle());
        tokio::task::spawn_blocking(move || cli.create_blocking(&id, &bundle, io, None, &Vec::new))
            .await
            .expect("the create task")
    }

    /// Created and started, with its stdio on /dev/null.
    async fn running(name: &str) -> Bed {
        let bed = Bed::new(name);
        bed.create(CreateIo::null()).await.unwrap();
        bed.cli.start(&bed.id).await.unwrap();
        bed
    }

    async fn state(&self) -> Result<ContainerState, RuntimeError> {
        self.cli.state(&self.id).await
    }

    async fn wait_for(&self, status: ContainerStatus) -> ContainerState {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let state = self.state().await.unwrap();
            if state.status == status {
                return state;
            }
            assert!(Instant::now() < deadline, "{} still {:?}, not {status:?}", self.id, state.status);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `argv` in the container; its exit code and stdout.
    async fn exec(&self, argv: &[&str]) -> (i32, String) {
        let mut process = Process::default();
        process.set_args(Some(args(argv)));
        let io = ExecIo { stdout: Stdio::piped(), ..ExecIo::null() };
        let mut handle = self.cli.exec(&self.id, &process, io).await.unwrap();
        let mut stdout = handle.stdout().unwrap();
        let mut output = String::new();
        let (read, code) = tokio::join!(stdout.read_to_string(&mut output), handle.wait());
        read.unwrap();
        (code.unwrap(), output)
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        hierarchies().map(|h| h.join(CGROUP_PARENT).join(&self.id)).filter(|d| d.exists()).collect()
    }
}

impl Drop for Bed {
    /// Leaves nothing, whatever state the test got the container to: runc forgets and
    /// kills it, its cgroups go, and the temp dir (root and bundle) goes with `dir`.
    fn drop(&mut self) {
        let root = self.dir.path().join("root");
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // runc removes its container's cgroups; after a failure they may be left.
        for hierarchy in hierarchies() {
            let parent = hierarchy.join(CGROUP_PARENT);
            let _ = std::fs::remove_dir(parent.join(&self.id));
            // Fails while another test's container is still in it: the last one out removes it.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// Each mounted cgroup hierarchy (v1 controllers, `unified`...).
fn hierarchies() -> impl Iterator<Item = PathBuf> {
    let entries = std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten();
    entries.flatten().map(|entry| entry.path())
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Alive, not a zombie: a killed container's init waits a moment for the host's
/// init (its reaper once runc has exited) to collect it.
fn process_alive(pid: i32) -> bool {
    berth::procfs::is_alive(pid)
}

#[tokio::test]
async fn a_container_lives_and_dies_through_runc() {
    let bed = Bed::new("life");
    bed.create(CreateIo::null()).await.unwrap();
    let created = bed.state().await.unwrap();
    assert_eq!(created.status, ContainerStatus::Created);
    assert_eq!(created.bundle, bed.bundle());
    let again = bed.create(CreateIo::null()).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{again}");

    bed.cli.start(&bed.id).await.unwrap();
    let running = bed.state().await.unwrap();
    assert_eq!(running.status, ContainerStatus::Running);
    assert!(running.pid > 0 && process_alive(running.pid), "{running:?}");
    let listed = bed.cli.list().await.unwrap();
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [bed.id.as_str()]);

    bed.cli.pause(&bed.id).await.unwrap();
    assert_eq!(bed.state().await.unwrap().status, ContainerStatus::Paused);
    bed.cli.resume(&bed.id).await.unwrap();
    assert_eq!(bed.state().await.unwrap().status, ContainerStatus::Running);

    bed.cli.kill(&bed.id, Signal::SIGKILL, false).await.unwrap();
    bed.wait_for(ContainerStatus::Stopped).await;
    assert!(!process_alive(running.pid));
    let late = bed.cli.kill(&bed.id, Signal::SIGKILL, false).await.unwrap_err();
    assert_eq!(late.kind(), ErrorKind::FailedPrecondition, "{late}");

    bed.cli.delete(&bed.id, false).await.unwrap();
    let gone = bed.state().await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    assert!(gone.to_string().contains(&format!("runc state {}", bed.id)), "{gone}");
    bed.cli.delete(&bed.id, false).await.unwrap();
    assert!(bed.cli.list().await.unwrap().is_empty());
    assert!(bed.cgroup_dirs().is_empty(), "runc delete removes the container's cgroups");
}

#[tokio::test]
async fn a_created_container_can_be_force_deleted() {
    let bed = Bed::new("force");
    let created = bed.create(CreateIo::null()).await.unwrap();
    let pid = bed.state().await.unwrap().pid;
    assert_eq!(created, pid, "create answers the init's pid");
    bed.cli.delete(&bed.id, true).await.unwrap();
    assert!(bed.state().await.unwrap_err().is_not_found());
    assert!(!process_alive(pid));
}

#[tokio::test]
async fn a_broken_bundle_fails_create_with_runcs_reason() {
    let bed = Bed::new("broken");
    std::fs::remove_file(bed.bundle().join("rootfs/bin/busybox")).unwrap();
    let err = bed.create(CreateIo::null()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with(&format!("runc create {}: ", bed.id)), "{message}");
    assert!(message.contains("busybox"), "runc's own reason is reported: {message}");
}

#[tokio::test]
async fn exec_reports_output_and_exit_codes() {
    let bed = Bed::running("exec").await;
    assert_eq!(bed.exec(&["/bin/busybox", "echo", "hi"]).await, (0, "hi\n".to_string()));
    assert_eq!(bed.exec(&["/bin/busybox", "sh", "-c", "exit 3"]).await.0, 3);
    assert_eq!(bed.exec(&["/bin/sh", "-c", "echo $$; kill -TERM $$"]).await.0, 128 + 15);

    let mut process = Process::default();
    process.set_args(Some(args(&["/bin/nothere"])));
    let mut handle = bed.cli.exec(&bed.id, &process, ExecIo::null()).await.unwrap();
    let err = handle.wait().await.unwrap_err();
    assert!(err.to_string().contains("/bin/nothere"), "runc's failure, not an exit code: {err}");
}

#[tokio::test]
async fn an_exec_past_its_deadline_is_killed() {
    let bed = Bed::running("exec-timeout").await;
    let mut process = Process::default();
    // Far longer than the guard below: only the deadline can end this wait.
    process.set_args(Some(args(&["/bin/busybox", "sleep", "100000"])));
    let mut handle = bed.cli.exec(&bed.id, &process, ExecIo::null()).await.unwrap();
    let waited = tokio::time::timeout(HANG_GUARD, handle.wait_timeout(Duration::from_millis(500))).await;
    let err = waited.expect("wait_timeout outlived its deadline").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded, "{err}");
    let pid = handle.pid().expect("runc wrote the exec'd PID");
    assert!(!process_alive(pid.as_raw()), "the exec'd process is killed, not just runc");
    assert_eq!(bed.state().await.unwrap().status, ContainerStatus::Running, "the container itself lives on");
}

#[tokio::test]
async fn a_dropped_exec_handle_kills_its_process() {
    let bed = Bed::running("exec-drop").await;
    let mut process = Process::default();
    process.set_args(Some(args(&["/bin/busybox", "sleep", "100"])));
    let handle = bed.cli.exec(&bed.id, &process, ExecIo::null()).await.unwrap();
    let deadline = Instant::now() + HANG_GUARD;
    let pid = loop {
        if let Some(pid) = handle.pid() {
            break pid;
        }
        assert!(Instant::now() < deadline, "runc never wrote the exec'd PID");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(handle);
    let deadline = Instant::now() + HANG_GUARD;
    while process_alive(pid.as_raw()) {
        assert!(Instant::now() < deadline, "the exec'd process outlived its handle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn update_changes_the_memory_limit() {
    let bed = Bed::running("update").await;
    let limit: i64 = 64 * 1024 * 1024;
    let memory = LinuxMemoryBuilder::default().limit(limit).build().unwrap();
    let resources = LinuxResourcesBuilder::default().memory(memory).build().unwrap();
    bed.cli.update(&bed.id, &resources).await.unwrap();
    let file = format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", bed.cgroups_path());
    assert_eq!(std::fs::read_to_string(file).unwrap().trim(), limit.to_string());
}

#[tokio::test]
async fn commands_on_an_unknown_container_are_not_found() {
    let bed = Bed::new("unknown");
    let err = bed.cli.state(&bed.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(bed.cli.start(&bed.id).await.unwrap_err().kind(), ErrorKind::NotFound);
    bed.cli.delete(&bed.id, true).await.unwrap();
    assert!(bed.cli.list().await.unwrap().is_empty());
}
