//! A real terminal for tests of interactive commands: a detached tmux session
//! on a tmux server of its own (its own socket, no user configuration),
//! driven with send-keys and read with capture-pane. The server is killed
//! when the guard is dropped, also when the test fails.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long "eventually" may take: a bound on a wedged session, not a timing assertion.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Tmux {
    socket: String,
    session: String,
}

impl Tmux {
    /// Runs `command` (through `sh -c`) in a new `width`x`height` terminal.
    pub fn start(name: &str, command: &str, width: u16, height: u16) -> Tmux {
        let unique = format!("berth-test-{name}-{}", std::process::id());
        let tmux = Tmux { socket: unique.clone(), session: unique };
        let (width, height) = (width.to_string(), height.to_string());
        let output = tmux.tmux(&["new-session", "-d", "-s", &tmux.session, "-x", &width, "-y", &height, command]);
        assert!(output.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&output.stderr));
        tmux
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// Types `text` as it is, then Enter.
    pub fn type_line(&self, text: &str) {
        let output = self.tmux(&["send-keys", "-t", &self.session, "-l", text]);
        assert!(output.status.success(), "tmux send-keys: {}", String::from_utf8_lossy(&output.stderr));
        self.tmux(&["send-keys", "-t", &self.session, "Enter"]);
    }

    /// Presses `key` as tmux names it (`C-d`, `Enter`).
    pub fn send_key(&self, key: &str) {
        self.tmux(&["send-keys", "-t", &self.session, key]);
    }

    /// The screen and its scrollback, lines joined where they wrapped.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &self.session]).stdout)
            .into_owned()
    }

    /// Waits until the screen shows what `done` looks for; returns it.
    pub fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the terminal never showed {what}:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn resize(&self, width: u16, height: u16) {
        let (width, height) = (width.to_string(), height.to_string());
        let output = self.tmux(&["resize-window", "-t", &self.session, "-x", &width, "-y", &height]);
        assert!(output.status.success(), "tmux resize-window: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
