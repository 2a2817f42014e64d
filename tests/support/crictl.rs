//! crictl, as a user runs it: pointed at a berth through a `crictl.yaml` like
//! the README's, every call bounded in time and killed if it overruns.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::berth::Berth;
use super::tools;

/// A crictl call that takes longer has hung.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Crictl {
    binary: PathBuf,
    config: PathBuf,
}

impl Crictl {
    /// crictl configured for `berth`'s socket (the file lives in berth's test dir).
    pub fn for_berth(berth: &Berth) -> Crictl {
        let config = berth.dir().join("crictl.yaml");
        let endpoint = format!("unix://{}", berth.paths.socket.display());
        let yaml = format!("runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 60\n");
        std::fs::write(&config, yaml).expect("write crictl.yaml");
        Crictl { binary: tools::crictl(), config }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--config").arg(&self.config).args(args);
        command
    }

    /// Runs crictl to its end; the output whatever the exit status.
    pub fn output(&self, args: &[&str]) -> Output {
        self.spawn(args).wait(CALL_TIMEOUT)
    }

    /// Runs crictl and returns its stdout, trimmed; a failure panics with its stderr.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(
            output.status.success(),
            "crictl {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Runs crictl and parses its stdout as JSON (`-o json`, `inspect`).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.run(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("crictl {}: not JSON ({e}):\n{text}", args.join(" ")))
    }

    /// Runs crictl on a terminal, as `exec -it` wants: `typed` is written to it
    /// as a user types; returns all the terminal showed.
    pub fn on_terminal(&self, args: &[&str], typed: &[u8]) -> String {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty"));
        let mut child = self
            .command(args)
            .stdin(slave(&pty.slave))
            .stdout(slave(&pty.slave))
            .stderr(slave(&pty.slave))
            .spawn()
            .expect("spawn crictl");
        drop(pty.slave);
        let mut master = std::fs::File::from(pty.master);
        std::io::Write::write_all(&mut master.try_clone().expect("dup pty master"), typed).expect("type");
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut chunk = [0u8; 4096];
            // EIO once the last holder of the slave (crictl) is gone.
            while let Ok(n) = master.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&chunk[..n]);
            }
            seen
        });
        let deadline = Instant::now() + CALL_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait crictl") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("crictl {} did not finish within {CALL_TIMEOUT:?}", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let seen = String::from_utf8_lossy(&reader.join().expect("pty reader")).into_owned();
        assert!(status.success(), "crictl {} failed ({status}):\n{seen}", args.join(" "));
        seen
    }

    /// Starts crictl and leaves it running (`port-forward`, `logs -f`); it is
    /// killed when the returned guard drops.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crictl");
        Running { child: Some(child), what: format!("crictl {}", args.join(" ")) }
    }
}

pub struct Running {
    child: Option<Child>,
    what: String,
}

impl Running {
    pub fn stdout(&mut self) -> std::process::ChildStdout {
        self.child.as_mut().and_then(|c| c.stdout.take()).expect("stdout taken once")
    }

    /// Waits for the end (bounded) and returns the output not read yet.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let child = self.child.take().expect("running");
        wait_bounded(child, timeout, &self.what)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_bounded(child: Child, timeout: Duration, what: &str) -> Output {
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done_tx.send(());
        output
    });
    if done_rx.recv_timeout(timeout).is_err() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        let _ = waiter.join();
        panic!("{what} did not finish within {timeout:?}");
    }
    waiter.join().expect("waiter").expect("crictl output")
}

/// A JSON file in `dir`, for crictl's config arguments.
pub fn json_file(dir: &Path, name: &str, value: &serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).expect("JSON")).expect("write JSON file");
    path.display().to_string()
}
