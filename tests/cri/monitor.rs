//! The per-container monitor (`berth monitor`) against Debian's real runc: it
//! creates a busybox container, logs its output in the CRI format, serves attach
//! and control clients, and records the exit. Each test has its own runc root,
//! container ID and cgroup; a guard removes them, and kills the monitor, even when
//! the test fails.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth::monitor::{
    self, ExitRecord, Monitor, MonitorArgs, MonitorError, STREAM_CLOSE_STDIN, STREAM_STDIN, STREAM_STDOUT,
};
use berth::runtime::RuntimeError;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use tempfile::TempDir;

use crate::support::berth::{berth_binary, monitor_binary};
use crate::support::containers::is_rfc3339_nano;

const RUNC: &str = "/usr/sbin/runc";
/// Each test container's cgroup is `/berth-test-<id>`, with no parent shared
/// between tests: one test's cleanup removing a shared parent raced another's
/// runc creating its cgroup under it.
const CGROUP_PREFIX: &str = "berth-test";
const WAIT: Duration = Duration::from_secs(15);
/// What a monitor may hold of memory of its own (heap, stack, the pages of
/// its binary it wrote to) with its container running, as the README says.
const MONITOR_BUDGET_KIB: u64 = 1024;
/// Its whole resident set, libc's and its binary's code included, for the
/// optimised build hack/test.sh names in `BERTH_MONITOR_BIN`. A debug build's
/// code is larger (3.2 MiB resident): reported, not held to it.
const MONITOR_RSS_BUDGET_KIB: u64 = 2048;

/// One container: its bundle, runc root, monitor files and cleanup.
struct Bed {
    id: String,
    dir: TempDir,
    monitor: Option<Monitor>,
}

impl Bed {
    /// A bundle whose container runs `sh -c <script>`.
    fn new(name: &str, script: &str, tty: bool) -> Bed {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let id = format!("mon-{name}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = tempfile::Builder::new().prefix("berth-monitor-").tempdir().unwrap();
        let bed = Bed { id, dir, monitor: None };
        bed.write_bundle(script, tty);
        bed
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_bundle(&self, script: &str, tty: bool) {
        let bin = self.path("bundle/rootfs/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "cat", "stty"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        let mut spec = Spec::default();
        spec.root_mut().as_mut().unwrap().set_path(self.path("bundle/rootfs"));
        let process = spec.process_mut().as_mut().unwrap();
        process.set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.into()]));
        process.set_terminal(Some(tty));
        let cgroups_path = format!("/{CGROUP_PREFIX}-{}", self.id);
        spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(cgroups_path.into()));
        spec.save(self.path("bundle/config.json")).unwrap();
    }

    fn args(&self) -> MonitorArgs {
        MonitorArgs {
            id: self.id.clone(),
            bundle: self.path("bundle"),
            runtime_kind: berth::config::RuntimeKind::Oci,
            runtime: RUNC.into(),
            runtime_root: self.path("root"),
            systemd_cgroup: false,
            runtime_timeout: berth::runtime::DEFAULT_TIMEOUT,
            log_path: self.log_path(),
            exit_file: self.path("exit.json"),
            socket_dir: self.path("sockets"),
            tty: false,
            stdin: false,
            stdin_once: false,
            berth_binary: Some(monitor_binary()),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.path("container.log")
    }

    fn spawn(&mut self, args: &MonitorArgs) -> Monitor {
        let monitor = monitor::spawn(args).unwrap();
        self.monitor = Some(monitor);
        monitor
    }

    fn runc(&self, words: &[&str]) -> Output {
        std::process::Command::new(RUNC).arg("--root").arg(self.path("root")).args(words).output().unwrap()
    }

    fn start(&self) {
        let output = self.runc(&["start", &self.id]);
        assert!(output.status.success(), "runc start: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn wait_exit(&self) -> ExitRecord {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(record) = monitor::read_exit_file(&self.path("exit.json")).unwrap() {
                return record;
            }
            assert!(Instant::now() < deadline, "{}: no exit file", self.id);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn socket(&self, name: &str) -> UnixStream {
        let stream = UnixStream::connect(self.path("sockets").join(name)).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// Sends one control command and returns the answer line.
    fn control(&self, command: &str) -> String {
        let mut stream = self.socket(monitor::CONTROL_SOCKET);
        stream.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        let mut byte = [0u8; 1];
        while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            answer.push(byte[0] as char);
        }
        answer
    }
}

impl Drop for Bed {
    /// Leaves nothing: the container, the monitor (when still running and still
    /// a monitor: its pid may not have been reused), the cgroups, the temp dir.
    fn drop(&mut self) {
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(self.path("root"))
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(monitor) = self.monitor
            && is_monitor(monitor.pid)
        {
            let _ = kill(Pid::from_raw(monitor.pid), Signal::SIGKILL);
        }
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(format!("{CGROUP_PREFIX}-{}", self.id)));
        }
    }
}

fn is_monitor(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|&b| b == 0).any(|word| word == b"monitor") && process_alive(pid)
}

/// Alive, not a zombie.
fn process_alive(pid: i32) -> bool {
    berth::procfs::is_alive(pid)
}

fn parent_of(pid: i32) -> i32 {
    berth::procfs::stat(pid).unwrap().ppid
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + WAIT;
    while process_alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `VmRSS`, `RssAnon` and `RssFile` of a process, as /proc prints them.
fn memory_of(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let fields = ["VmRSS:", "RssAnon:", "RssFile:"];
    let lines = status.lines().filter(|line| fields.iter().any(|f| line.starts_with(f)));
    let mut fields: Vec<String> = lines.map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    // File pages are the berth binary's, shared with berth and every other monitor;
    // Pss charges them out among those processes.
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss = rollup.lines().find(|line| line.starts_with("Pss:"));
    fields.extend(pss.map(|line| line.split_whitespace().collect::<Vec<_>>().join(" ")));
    fields.join(", ")
}

/// A `/proc/<pid>/status` figure in KiB, such as `RssAnon:`.
fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One CRI log entry.
#[derive(Debug)]
struct Entry {
    time: String,
    stream: String,
    tag: String,
    content: String,
}

fn entries(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap();
    // Not `lines()`: it would strip the `\r` a terminal puts before `\n`.
    text.split_terminator('\n')
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let mut next = || parts.next().unwrap().to_string();
            Entry { time: next(), stream: next(), tag: next(), content: next() }
        })
        .collect()
}

fn wait_for_log(path: &Path, content: &str) {
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(path).unwrap_or_default().contains(content) {
        assert!(Instant::now() < deadline, "{content:?} never logged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_frame(stream: &mut UnixStream, id: u8, payload: &[u8]) {
    let mut frame = vec![id];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame).unwrap();
}

fn read_frame(stream: &mut UnixStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header[1..].try_into().unwrap()) as usize];
    stream.read_exact(&mut payload).unwrap();
    (header[0], payload)
}

#[test]
fn output_is_logged_and_the_exit_recorded() {
    let mut bed = Bed::new("exit", "echo out; echo err >&2; exit 3", false);
    let monitor = bed.spawn(&bed.args());
    assert!(monitor.container_pid > 0);
    bed.start();
    let record = bed.wait_exit();
    assert_eq!(record.exit_code, 3);
    assert!(!record.oom_killed);
    assert!(record.exited_at > 0);
    let entries = entries(&bed.log_path());
    let lines: Vec<(&str, &str, &str)> =
        entries.iter().map(|e| (e.stream.as_str(), e.tag.as_str(), e.content.as_str())).collect();
    // The two pipes are read independently: their order is not guaranteed.
    assert_eq!(lines.len(), 2, "{entries:?}");
    assert!(lines.contains(&("stdout", "F", "out")), "{entries:?}");
    assert!(lines.contains(&("stderr", "F", "err")), "{entries:?}");
    assert!(entries.iter().all(|e| is_rfc3339_nano(&e.time)), "{entries:?}");
    wait_gone(monitor.pid);
    assert!(!bed.path("sockets").join(monitor::ATTACH_SOCKET).exists());
    assert!(!bed.path("sockets").join(monitor::CONTROL_SOCKET).exists());
}

#[test]
fn a_long_line_becomes_partial_entries_then_a_full_one() {
    // 40 characters doubled ten times: a 40 KiB line.
    let script = "s=0123456789012345678901234567890123456789; for i in 1 2 3 4 5 6 7 8 9 10; do s=$s$s; done; echo $s";
    let mut bed = Bed::new("long", script, false);
    bed.spawn(&bed.args());
    bed.start();
    assert_eq!(bed.wait_exit().exit_code, 0);
    let entries = entries(&bed.log_path());
    let tags: Vec<&str> = entries.iter().map(|e| e.tag.as_str()).collect();
    assert_eq!(tags, ["P", "P", "F"]);
    let line: String = entries.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(line, "0123456789012345678901234567890123456789".repeat(1024));
}

#[test]
fn the_monitor_outlives_its_spawner_and_stays_small() {
    let mut bed = Bed::new("life", "sleep 1000", false);
    let monitor = bed.spawn(&bed.args());
    bed.start();
    assert_ne!(parent_of(monitor.pid), std::process::id() as i32, "the monitor is still the test's child");
    assert_eq!(parent_of(monitor.container_pid), monitor.pid, "the monitor is not the container's reaper");
    // Settled in its loop: it has answered a client there and waits again.
    assert_eq!(bed.control("reopen"), "ok");
    let memory = memory_of(monitor.pid);
    eprintln!("monitor memory with a running container: {memory}");
    let (anon, rss) = (status_kib(monitor.pid, "RssAnon:"), status_kib(monitor.pid, "VmRSS:"));
    let output = bed.runc(&["kill", &bed.id, "9"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(bed.wait_exit().exit_code, 128 + 9);
    wait_gone(monitor.pid);
    // Its anonymous pages are all its own: `berth-monitor` is linked at a
    // fixed address, so the loader dirties none of its binary's pages. Its file
    // pages are shared with every other monitor.
    assert!(anon < MONITOR_BUDGET_KIB, "{anon} KiB of its own is over the {MONITOR_BUDGET_KIB} KiB budget ({memory})");
    if std::env::var_os("BERTH_MONITOR_BIN").is_some() {
        assert!(
            rss < MONITOR_RSS_BUDGET_KIB,
            "RSS {rss} KiB is over the {MONITOR_RSS_BUDGET_KIB} KiB budget ({memory})"
        );
    } else {
        eprintln!("monitor RSS {rss} KiB: the build beside berth's, not held to {MONITOR_RSS_BUDGET_KIB} KiB");
    }
}

#[test]
fn reopen_sends_later_lines_to_a_new_file() {
    let mut bed = Bed::new("reopen", "echo one; read line; echo two", false);
    let args = MonitorArgs { stdin: true, ..bed.args() };
    bed.spawn(&args);
    let mut client = bed.socket(monitor::ATTACH_SOCKET);
    bed.start();
    wait_for_log(&bed.log_path(), "one");
    let rotated = bed.path("container.log.1");
    std::fs::rename(bed.log_path(), &rotated).unwrap();
    assert_eq!(bed.control("reopen"), "ok");
    send_frame(&mut client, STREAM_STDIN, b"go\n");
    assert_eq!(bed.wait_exit().exit_code, 0);
    let old: Vec<String> = entries(&rotated).into_iter().map(|e| e.content).collect();
    let new: Vec<String> = entries(&bed.log_path()).into_iter().map(|e| e.content).collect();
    assert_eq!(old, ["one"]);
    assert_eq!(new, ["two"]);
    assert!(bed.control_is_gone());
}

impl Bed {
    fn control_is_gone(&self) -> bool {
        UnixStream::connect(self.path("sockets").join(monitor::CONTROL_SOCKET)).is_err()
    }
}

#[test]
fn an_attach_client_talks_to_cat_and_stdin_once_closes_it_on_leaving() {
    let mut bed = Bed::new("attach", "cat", false);
    let args = MonitorArgs { stdin: true, stdin_once: true, ..bed.args() };
    let monitor = bed.spawn(&args);
    let mut client = bed.socket(monitor::ATTACH_SOCKET);
    // A client that only watched the output leaving first does not count.
    drop(bed.socket(monitor::ATTACH_SOCKET));
    bed.start();
    send_frame(&mut client, STREAM_STDIN, b"hello\n");
    assert_eq!(read_frame(&mut client), (STREAM_STDOUT, b"hello\n".to_vec()));
    assert!(process_alive(monitor.container_pid), "cat ended before its stdin was closed");
    drop(client);
    assert_eq!(bed.wait_exit().exit_code, 0);
    let lines: Vec<String> = entries(&bed.log_path()).into_iter().map(|e| e.content).collect();
    assert_eq!(lines, ["hello"]);
}

#[test]
fn a_close_stdin_frame_ends_cats_input() {
    let mut bed = Bed::new("close", "cat; echo done", false);
    let args = MonitorArgs { stdin: true, ..bed.args() };
    bed.spawn(&args);
    let mut client = bed.socket(monitor::ATTACH_SOCKET);
    bed.start();
    send_frame(&mut client, STREAM_STDIN, b"a\n");
    send_frame(&mut client, STREAM_CLOSE_STDIN, b"");
    assert_eq!(bed.wait_exit().exit_code, 0);
    let lines: Vec<String> = entries(&bed.log_path()).into_iter().map(|e| e.content).collect();
    assert_eq!(lines, ["a", "done"]);
}

#[test]
fn a_tty_container_logs_stdout_and_takes_resize() {
    let mut bed = Bed::new("tty", "read line; stty size", true);
    let args = MonitorArgs { tty: true, stdin: true, ..bed.args() };
    bed.spawn(&args);
    let mut client = bed.socket(monitor::ATTACH_SOCKET);
    assert_eq!(bed.control("resize 33 101"), "ok");
    bed.start();
    send_frame(&mut client, STREAM_STDIN, b"go\n");
    assert_eq!(bed.wait_exit().exit_code, 0);
    let entries = entries(&bed.log_path());
    assert!(entries.iter().all(|e| e.stream == "stdout"), "{entries:?}");
    // The terminal echoes the input and ends lines with \r\n.
    assert!(entries.iter().any(|e| e.content == "33 101\r"), "{entries:?}");
}

#[test]
fn resize_without_a_tty_is_refused() {
    let mut bed = Bed::new("notty", "sleep 1000", false);
    bed.spawn(&bed.args());
    assert!(bed.control("resize 10 10").starts_with("error "));
    assert!(bed.control("frobnicate").starts_with("error "));
}

#[test]
fn a_bad_bundle_fails_spawn_with_the_runtimes_reason() {
    let bed = Bed::new("bad", "true", false);
    let mut spec = Spec::load(bed.path("bundle/config.json")).unwrap();
    spec.root_mut().as_mut().unwrap().set_path(bed.path("no-such-rootfs"));
    spec.save(bed.path("bundle/config.json")).unwrap();
    match monitor::spawn(&bed.args()) {
        Err(MonitorError::Runtime(RuntimeError::Failed { call, refusal, message })) => {
            assert_eq!(call.command, "create");
            // A broken bundle is no caller's mistake: the kind crosses the pipe apart from the words.
            assert_eq!(refusal, berth::runtime::Refusal::Other);
            assert!(!message.starts_with("other"), "{message}");
            assert!(message.contains("no-such-rootfs") || message.contains("no such file"), "{message}");
        }
        other => panic!("expected runc's refusal, got {other:?}"),
    }
    assert!(!bed.path("sockets").join(monitor::ATTACH_SOCKET).exists(), "the failed monitor left its socket");
}

/// berth gave up waiting for the monitor's answer (its pipe is closed) while
/// runc was still creating: the monitor's `ok` then finds nobody, so it kills and
/// deletes the container it made instead of keeping one berth knows nothing of.
#[test]
fn a_monitor_whose_answer_finds_berth_gone_deletes_its_container() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;

    let bed = Bed::new("late", "sleep 1000", false);
    // A runc whose create waits until the test has closed berth's end of the pipe.
    let go = bed.path("go");
    let wrapper = bed.path("late-runc");
    let script = format!(
        "#!/bin/sh\nfor arg in \"$@\"; do [ \"$arg\" = create ] && while [ ! -e {} ]; do sleep 0.05; done; done\nexec {RUNC} \"$@\"\n",
        go.display()
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = MonitorArgs { runtime: wrapper, ..bed.args() };

    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let sync = write.as_raw_fd();
    let mut command = std::process::Command::new(berth_binary());
    command.args(args.command_line()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: dup2 is async-signal-safe; it gives the monitor its sync pipe on fd 3
    // (the copy loses close-on-exec), as monitor::spawn does.
    unsafe {
        command.pre_exec(
            move || {
                if nix::libc::dup2(sync, 3) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            },
        );
    }
    let mut first = command.spawn().unwrap();
    drop(write);
    // The first process forks the monitor and exits.
    first.wait().unwrap();
    drop(read);
    std::fs::write(&go, "").unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    while monitors_of(&bed.id) > 0 {
        assert!(Instant::now() < deadline, "the monitor is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = bed.runc(&["list", "-q"]);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "", "runc still holds the container");
    assert!(!bed.path("exit.json").exists(), "no exit recorded for a container berth never knew");
}

/// Live monitors of container `id`.
fn monitors_of(id: &str) -> usize {
    let procs = std::fs::read_dir("/proc").unwrap().flatten();
    procs
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| is_monitor(*pid))
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|word| word == id.as_bytes())
        })
        .count()
}
