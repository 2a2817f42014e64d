//! berth's client commands (`berth pull`, `ps`, `exec -it`, ...), run as a
//! person runs them: the real binary against a test berth, its output parsed,
//! and the interactive ones in a real terminal (tmux).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::berth::{Berth, berth_binary, output_within};
use crate::support::containers::{Bed, WAIT, sh, unique};
use crate::support::image::{Compression, ImageBuilder, Layer};
use crate::support::tmux::Tmux;

/// The client, pointed at one endpoint.
struct Cli {
    endpoint: String,
}

impl Cli {
    fn of(berth: &Berth) -> Cli {
        Cli { endpoint: format!("unix://{}", berth.paths.socket.display()) }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(berth_binary());
        // A client needs no configuration: this file does not exist.
        command.args(["--config", "/nonexistent/berth/config.toml"]).args(args);
        command.env("CONTAINER_RUNTIME_ENDPOINT", &self.endpoint);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args))
    }

    /// stdout of a run that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(output.status.success(), "berth {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    fn json(&self, args: &[&str]) -> Value {
        let text = self.ok(&[args, &["-o", "json"]].concat());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("berth {args:?} -o json is not JSON ({e}):\n{text}"))
    }

    fn yaml(&self, args: &[&str]) -> Value {
        let text = self.ok(&[args, &["-o", "yaml"]].concat());
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("berth {args:?} -o yaml is not YAML ({e}):\n{text}"))
    }

    /// stderr of a run that must fail with exit code 1 and a one-line message.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
        assert_eq!(output.status.code(), Some(1), "berth {args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
        assert!(stderr.starts_with("berth: "), "{stderr:?}");
        stderr
    }
}

/// The table's rows (header first), each split into its cells by runs of
/// two spaces or more (cells such as "IMAGE ID" hold one).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).map(String::from).collect())
        .collect()
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..13]
}

#[tokio::test]
async fn version_answers_only_when_the_runtime_does() {
    let berth = Berth::start().await;
    let cli = Cli::of(&berth);
    let table = cli.ok(&["version"]);
    assert!(table.contains("RuntimeName:") && table.contains("berth"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("RuntimeApiVersion:") && l.trim_end().ends_with("v1")), "{table}");
    assert_eq!(cli.json(&["version"])["runtimeName"], "berth");
    assert_eq!(cli.yaml(&["version"])["runtimeApiVersion"], "v1");
    // The flag wins over the environment, as with crictl.
    let flag = Cli { endpoint: "unix:///nonexistent.sock".into() };
    assert!(flag.ok(&["version", "-r", &berth.paths.socket.display().to_string()]).contains("berth"));

    let missing = berth.dir().join("no-such.sock");
    let gone = Cli { endpoint: format!("unix://{}", missing.display()) };
    let error = gone.fails(&["version"]);
    assert!(error.contains("cannot connect to") && error.contains("No such file or directory"), "{error}");
    assert!(error.contains("--runtime-endpoint"), "says what to try: {error}");
    let error = Cli { endpoint: "tcp://127.0.0.1:1".into() }.fails(&["version"]);
    assert!(error.contains("unsupported endpoint"), "{error}");
    // Something that is not a CRI endpoint at all.
    let not_a_socket = berth.dir().join("plain-file");
    std::fs::write(&not_a_socket, "").unwrap();
    Cli { endpoint: not_a_socket.display().to_string() }.fails(&["version"]);
}

#[tokio::test]
async fn pull_images_and_rmi() {
    let bed = Bed::bare().await;
    let image = ImageBuilder::busybox()
        .layer(Layer::random(1 << 20, 11), Compression::Gzip)
        .layer(Layer::random(512 << 10, 12), Compression::Zstd)
        .build();
    image.push(&bed.registry, "test/cli-pull", "v1").await;
    let reference = format!("{}/test/cli-pull:v1", bed.registry.host());
    let cli = Cli::of(&bed.berth);

    // stdout and stderr are pipes here: no bars, but a line per layer and a last line.
    let output = cli.run(&["pull", &reference]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, format!("Image is up to date for {}\n", image.image_id()));
    for digest in image.layer_digests() {
        assert!(stderr.lines().any(|l| l.starts_with(short(&digest)) && l.ends_with("unpacked")), "{digest}: {stderr}");
    }
    assert!(!stderr.contains('\x1b'), "no terminal codes into a pipe: {stderr:?}");
    let again = cli.run(&["pull", &reference]);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.lines().filter(|l| l.ends_with("already present")).count(), 3, "{stderr}");

    let table = rows(&cli.ok(&["images"]));
    assert_eq!(table[0], ["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    let repo = format!("{}/test/cli-pull", bed.registry.host());
    let row = table.iter().find(|row| row[0] == repo).unwrap_or_else(|| panic!("{repo} not listed: {table:?}"));
    assert_eq!((row[1].as_str(), row[2].as_str()), ("v1", short(image.image_id())));
    let listed = cli.json(&["images"]);
    let found = listed["images"].as_array().unwrap().iter().find(|i| i["id"] == image.image_id()).expect("listed");
    assert_eq!(found["repoTags"][0], reference.as_str());
    assert_eq!(found["size"].as_u64(), Some(image.size()));
    assert_eq!(cli.yaml(&["images", &reference])["images"][0]["id"], image.image_id());
    assert_eq!(cli.ok(&["images", "-q"]), format!("{}\n", image.image_id()));

    let prefix = &short(image.image_id())[..8];
    assert_eq!(cli.ok(&["rmi", prefix]), format!("Deleted: {prefix}\n"));
    assert_eq!(cli.ok(&["images", "-q"]), "");
    let error = cli.fails(&["rmi", prefix]);
    assert!(error.contains("no image matches") && error.contains("berth images"), "{error}");
    let error = cli.fails(&["pull", &format!("{}/test/missing:v1", bed.registry.host())]);
    assert!(error.contains("PullWithProgress"), "{error}");
}

/// A pod with a running container, for the listing and inspecting commands.
async fn running(bed: &Bed, name: &str) -> (String, String) {
    let pod = bed.pod(&format!("{name}-{}", unique())).await;
    let id = bed.run(&pod, sh(name, &bed.busybox, "sleep 1000")).await;
    (pod.id, id)
}

#[tokio::test]
async fn pods_ps_inspect_and_inspectp_in_every_format() {
    let bed = Bed::new().await;
    let (pod, container) = running(&bed, "lister").await;
    let cli = Cli::of(&bed.berth);

    let table = rows(&cli.ok(&["pods"]));
    assert_eq!(table[0], ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]);
    let row = table.iter().find(|row| row[0] == short(&pod)).unwrap_or_else(|| panic!("{table:?}"));
    assert_eq!((row[2].as_str(), row[4].as_str(), row[5].as_str()), ("Ready", "default", "0"));
    let pods = cli.json(&["pods"]);
    let item = &pods["items"][0];
    assert_eq!((item["id"].as_str(), item["state"].as_str()), (Some(pod.as_str()), Some("SANDBOX_READY")));
    assert!(item["metadata"]["name"].as_str().unwrap().starts_with("lister-"));
    assert_eq!(cli.yaml(&["pods"])["items"][0]["id"], pod.as_str());
    assert_eq!(cli.ok(&["pods", "-q", "--namespace", "default"]), format!("{pod}\n"));
    assert_eq!(cli.ok(&["pods", "-q", "--namespace", "elsewhere"]), "");

    let table = rows(&cli.ok(&["ps"]));
    assert_eq!(table[0], ["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID", "POD"]);
    let row = table.iter().find(|row| row[0] == short(&container)).unwrap_or_else(|| panic!("{table:?}"));
    assert_eq!((row[1].as_str(), row[3].as_str(), row[4].as_str()), (bed.busybox.as_str(), "Running", "lister"));
    assert_eq!(row[6], short(&pod));
    let listed = cli.json(&["ps", "--pod", short(&pod)]);
    let entry = &listed["containers"][0];
    assert_eq!((entry["id"].as_str(), entry["state"].as_str()), (Some(container.as_str()), Some("CONTAINER_RUNNING")));
    assert_eq!(entry["podSandboxId"], pod.as_str());
    assert_eq!(cli.yaml(&["ps", "-a"])["containers"][0]["id"], container.as_str());
    assert_eq!(cli.ok(&["ps", "-q", "--state", "exited"]), "");

    // inspect: the whole status as JSON by default, berth's verbose info parsed.
    let inspected: Value = serde_json::from_str(&cli.ok(&["inspect", short(&container)])).unwrap();
    assert_eq!(inspected["status"]["id"], container.as_str());
    assert_eq!(inspected["status"]["state"], "CONTAINER_RUNNING");
    assert!(inspected["status"]["logPath"].as_str().unwrap().ends_with("lister/0.log"));
    assert!(inspected["info"]["info"]["pid"].as_i64().unwrap() > 0, "{inspected}");
    assert_eq!(cli.yaml(&["inspect", &container])["status"]["metadata"]["name"], "lister");
    let table = rows(&cli.ok(&["inspect", "-o", "table", &container]));
    assert_eq!((table[1][0].as_str(), table[1][2].as_str()), (container.as_str(), "Running"));

    let inspected = cli.json(&["inspectp", short(&pod)]);
    assert_eq!(inspected["status"]["id"], pod.as_str());
    assert_eq!(inspected["status"]["state"], "SANDBOX_READY");
    assert_eq!(cli.yaml(&["inspectp", &pod])["status"]["metadata"]["namespace"], "default");

    let error = cli.fails(&["inspect", "ffffffffffff"]);
    assert!(error.contains("no container matches \"ffffffffffff\""), "{error}");
    cli.fails(&["inspectp", "ffffffffffff"]);
    cli.fails(&["logs", "ffffffffffff"]);
}

#[tokio::test]
async fn logs_tail_and_follow() {
    let bed = Bed::new().await;
    let pod = bed.pod(&format!("logs-{}", unique())).await;
    let done = bed.run_to_exit(&pod, sh("talker", &bed.busybox, "echo one; echo two; echo oops >&2; echo three")).await;
    let cli = Cli::of(&bed.berth);
    let output = cli.run(&["logs", &done.id]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), "one\ntwo\nthree\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
    // stdout and stderr are two pipes: only one of them has an order to check.
    let counted = bed.run_to_exit(&pod, sh("counter", &bed.busybox, "for i in 1 2 3 4; do echo $i; done")).await;
    assert_eq!(cli.ok(&["logs", "--tail", "2", &counted.id]), "3\n4\n");
    let stamped = cli.ok(&["logs", "-t", "--tail", "1", &counted.id]);
    let (stamp, line) = stamped.trim_end().split_once(' ').unwrap();
    assert_eq!(line, "4");
    assert!(stamp.contains('T') && stamp.len() > 20, "RFC 3339: {stamp}");

    // -f prints what comes while it runs, and returns once the container exits.
    let script = "echo start; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo end";
    let waiter = bed.run(&pod, sh("waiter", &bed.busybox, script)).await;
    let mut follower = cli.command(&["logs", "-f", &waiter]).stdout(Stdio::piped()).spawn().unwrap();
    let (lines, seen) = mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    assert_eq!(seen.recv_timeout(WAIT).as_deref(), Ok("start"));
    bed.exec(&waiter, &["touch", "/tmp/go"], 10).await.unwrap();
    assert_eq!(seen.recv_timeout(WAIT).as_deref(), Ok("end"));
    let status = wait_child(&mut follower);
    assert!(status.success(), "logs -f ends with the container");
}

fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn stats_and_info() {
    let bed = Bed::new().await;
    let (_, container) = running(&bed, "counted").await;
    let cli = Cli::of(&bed.berth);
    let table = rows(&cli.ok(&["stats"]));
    assert_eq!(table[0], ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
    let row = table.iter().find(|row| row[0] == short(&container)).unwrap_or_else(|| panic!("{table:?}"));
    assert_eq!(row[1], "counted");
    assert!(row[2].parse::<f64>().is_ok(), "a CPU figure: {row:?}");
    let stats = cli.json(&["stats", short(&container)]);
    assert_eq!(stats["stats"].as_array().unwrap().len(), 1);
    assert_eq!(stats["stats"][0]["attributes"]["id"], container.as_str());
    assert!(stats["stats"][0]["memory"]["workingSetBytes"]["value"].as_u64().unwrap() > 0);

    let info: Value = serde_json::from_str(&cli.ok(&["info"])).unwrap();
    let conditions = info["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|c| c["type"] == "RuntimeReady" && c["status"] == true), "{info}");
    let table = rows(&cli.ok(&["info", "-o", "table"]));
    assert_eq!(table[0], ["CONDITION", "STATUS", "REASON", "MESSAGE"]);
    assert!(table.iter().any(|row| row[..2] == ["RuntimeReady", "true"]), "{table:?}");
    assert!(cli.yaml(&["info"])["status"]["conditions"].is_array());
}

#[tokio::test]
async fn exec_without_a_terminal_passes_output_stdin_and_exit_codes() {
    let bed = Bed::new().await;
    let (_, container) = running(&bed, "execed").await;
    let cli = Cli::of(&bed.berth);
    let output = cli.run(&["exec", short(&container), "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!((output.stdout.as_slice(), output.stderr.as_slice()), (&b"out\n"[..], &b"err\n"[..]));
    assert_eq!(cli.ok(&["exec", &container, "echo", "-n", "fine"]), "fine");

    // -i: stdin through the streaming server; its end reaches the command (v5).
    let mut child = cli
        .command(&["exec", "-i", &container, "sh", "-c", "tr a-z A-Z; exit 4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello from a pipe\n").unwrap();
    let status = wait_child(&mut child);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!((stdout.as_str(), status.code()), ("HELLO FROM A PIPE\n", Some(4)));

    let error = cli.fails(&["exec", "-t", &container, "true"]);
    assert!(error.contains("needs a terminal"), "{error}");
    let error = cli.fails(&["exec", "ffffffffffff", "true"]);
    assert!(error.contains("no container matches"), "{error}");
}

/// `berth <args>` in a terminal of its own; its exit code goes to
/// `exit_file`. The terminal stays up after it (until the guard kills it),
/// so that a failure shows what it printed.
/// The endpoint comes first: what follows the container ID is the command's.
fn in_terminal(name: &str, cli: &Cli, subcommand: &str, args: &str, exit_file: &std::path::Path) -> Tmux {
    let command = format!(
        "{} {subcommand} -r {} {args}; echo EXIT=$? > {}; exec sleep 3600",
        berth_binary().display(),
        cli.endpoint,
        exit_file.display()
    );
    Tmux::start(name, &command, 120, 40)
}

fn exit_code_in(file: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(file)
            && text.ends_with('\n')
        {
            return text.trim().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "the command never ended");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn exec_it_gives_a_shell_in_a_real_terminal() {
    let bed = Bed::new().await;
    let (_, container) = running(&bed, "shell").await;
    let cli = Cli::of(&bed.berth);
    let exit_file = bed.berth.dir().join("exec-it.exit");
    let terminal = in_terminal("exec-it", &cli, "exec", &format!("-it {} sh", short(&container)), &exit_file);
    terminal.wait_for("a prompt", |screen| screen.contains('#'));
    terminal.type_line("echo $((6*7))");
    terminal.wait_for("42", |screen| screen.lines().any(|l| l.trim() == "42"));
    terminal.type_line("stty size");
    terminal.wait_for("the terminal's size", |screen| screen.lines().any(|l| l.trim() == "40 120"));
    terminal.resize(100, 30);
    terminal.type_line("stty size");
    terminal.wait_for("the new size", |screen| screen.lines().any(|l| l.trim() == "30 100"));
    terminal.type_line("exit 3");
    assert_eq!(exit_code_in(&exit_file), "EXIT=3");
}

#[tokio::test]
async fn attach_it_types_into_a_containers_terminal() {
    let bed = Bed::new().await;
    let pod = bed.pod(&format!("attach-{}", unique())).await;
    let mut config = sh("console", &bed.busybox, "while read line; do echo \"got $line\"; stty size; done; exit 5");
    (config.stdin, config.tty) = (true, true);
    let container = bed.run(&pod, config).await;
    let cli = Cli::of(&bed.berth);
    let exit_file = bed.berth.dir().join("attach.exit");
    let terminal = in_terminal("attach-it", &cli, "attach", &format!("-it {container}"), &exit_file);
    // The line typed and the resize arrive through the attach; tmux's
    // terminal is 120x40, which the container's now is too.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        terminal.type_line("hi");
        let screen = terminal.screen();
        if screen.contains("got hi") && screen.lines().any(|l| l.trim() == "40 120") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no echo or size through the attach:\n{screen}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl-D ends `read`, and with it the container: attach ends with it,
    // successfully (the session's status, not the container's, as kubelet's).
    terminal.send_key("C-d");
    assert_eq!(exit_code_in(&exit_file), "EXIT=0");
}
