//! The per-container monitor (`berth monitor`), berth's conmon: one small synchronous
//! process per container that outlives berth. It creates the container through the
//! runtime with pipes (or a pty) as its stdio, writes the output to the CRI log file,
//! serves attach clients and control commands on unix sockets, reaps the container's
//! init as a child subreaper, and records its exit in a file berth reads back.
//!
//! The library side ([`spawn`]) starts a monitor and waits for its first word on a
//! sync pipe (the monitor's stdout): `ok <container pid> <monitor pid>`, `error
//! <refusal> <runtime's message>` (the runtime refused to create the container;
//! [`crate::runtime::Refusal`]'s word), `timeout
//! <milliseconds>` (`create` outran its bound and was killed, its remains deleted)
//! or `failed <message>` (the monitor itself could not set up). The monitor side
//! ([`run`]) is what `berth monitor` runs; it starts no async runtime and no threads.
//!
//! A late answer is never left running: a monitor whose `ok` finds the pipe closed
//! (berth gave up waiting) kills and deletes its container, and berth, having
//! closed the pipe, deletes the container from the runtime in its undo, which
//! catches an `ok` written just before the close.

mod attach;
mod console;
mod control;
mod exit;
mod log;
mod output;
mod process;
mod spawn;
pub(crate) mod sys;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

pub use exit::{ExitRecord, read_exit_file};
pub use log::rfc3339_nano;
pub use process::run;
pub use spawn::{Monitor, MonitorError, spawn};

/// Attach frames: 1 byte stream id, 4-byte big-endian payload length, payload.
/// Client to monitor: bytes for the container's stdin.
pub const STREAM_STDIN: u8 = 0;
/// Monitor to client: the container's stdout (everything, with a tty).
pub const STREAM_STDOUT: u8 = 1;
/// Monitor to client: the container's stderr.
pub const STREAM_STDERR: u8 = 2;
/// Client to monitor, empty payload: close the container's stdin.
pub const STREAM_CLOSE_STDIN: u8 = 3;
/// The attach socket's name in `--socket-dir`.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The control socket's name in `--socket-dir`: line commands `reopen` and
/// `resize <rows> <cols>`, each answered with `ok` or `error <message>`.
pub const CONTROL_SOCKET: &str = "control.sock";

/// What one container's monitor needs; also the flags of `berth monitor`.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    /// The container ID the runtime knows it by.
    #[arg(long)]
    pub id: String,
    /// The OCI bundle (config.json and rootfs).
    #[arg(long, value_name = "DIR")]
    pub bundle: PathBuf,
    /// What creates the container: a runc-compatible binary, or berth's own runtime.
    #[arg(long = "runtime-kind", value_enum, default_value = "oci")]
    pub runtime_kind: crate::config::RuntimeKind,
    /// The runc-compatible runtime binary (an `oci` runtime's; none for `internal`).
    #[arg(long, value_name = "PATH", value_parser = parse_path, default_value = "")]
    pub runtime: PathBuf,
    /// The runtime's state directory (`--root`).
    #[arg(long, value_name = "DIR")]
    pub runtime_root: PathBuf,
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// The bound on each runtime command the monitor runs (`create`, and the
    /// `delete` that cleans up after one that failed or was too late).
    #[arg(long = "runtime-timeout-ms", value_name = "MS", value_parser = parse_millis, default_value = "30000")]
    pub runtime_timeout: Duration,
    /// The CRI log file the container's output goes to.
    #[arg(long, value_name = "FILE")]
    pub log_path: PathBuf,
    /// Where the exit record is written (JSON, atomically) when the container exits.
    #[arg(long, value_name = "FILE")]
    pub exit_file: PathBuf,
    /// Where `attach.sock` and `control.sock` are created.
    #[arg(long, value_name = "DIR")]
    pub socket_dir: PathBuf,
    #[arg(long)]
    pub tty: bool,
    /// Keep the container's stdin open for attach clients.
    #[arg(long)]
    pub stdin: bool,
    /// Close the container's stdin when the first attach client leaves.
    #[arg(long)]
    pub stdin_once: bool,
    /// The berth binary to run as the monitor; `/proc/self/exe` when unset (tests
    /// set it: their own executable is the test harness).
    #[arg(skip)]
    pub berth_binary: Option<PathBuf>,
}

impl MonitorArgs {
    /// The `berth monitor` command line for these arguments.
    pub fn command_line(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["monitor".into(), "--id".into(), self.id.clone().into()];
        let paths = [
            ("--bundle", &self.bundle),
            ("--runtime", &self.runtime),
            ("--runtime-root", &self.runtime_root),
            ("--log-path", &self.log_path),
            ("--exit-file", &self.exit_file),
            ("--socket-dir", &self.socket_dir),
        ];
        for (flag, path) in paths.into_iter().filter(|(_, path)| !path.as_os_str().is_empty()) {
            args.extend([flag.into(), path.into()]);
        }
        let switches = [
            ("--systemd-cgroup", self.systemd_cgroup),
            ("--tty", self.tty),
            ("--stdin", self.stdin),
            ("--stdin-once", self.stdin_once),
        ];
        args.extend(switches.into_iter().filter(|(_, on)| *on).map(|(flag, _)| flag.into()));
        args.extend(["--runtime-timeout-ms".into(), self.runtime_timeout.as_millis().to_string().into()]);
        let kind = match self.runtime_kind {
            crate::config::RuntimeKind::Oci => "oci",
            crate::config::RuntimeKind::Internal => "internal",
        };
        args.extend(["--runtime-kind".into(), kind.into()]);
        args
    }

    /// The runtime for these arguments, through the interface berth drives it by.
    fn runtime(&self) -> std::sync::Arc<dyn crate::runtime::OciRuntime> {
        let handler = crate::runtime::RuntimeHandler {
            name: self.runtime_name(),
            kind: self.runtime_kind,
            binary: self.runtime.clone(),
            root: self.runtime_root.clone(),
            systemd_cgroup: self.systemd_cgroup,
            timeout: self.runtime_timeout,
        };
        handler.runtime()
    }

    /// The name errors give the runtime: its binary's file name.
    fn runtime_name(&self) -> String {
        if self.runtime_kind == crate::config::RuntimeKind::Internal {
            return "internal".into();
        }
        self.runtime
            .file_name()
            .map_or_else(|| self.runtime.display().to_string(), |n| n.to_string_lossy().into_owned())
    }
}

/// Connects to one of a monitor's sockets (`ATTACH_SOCKET`, `CONTROL_SOCKET`)
/// through a descriptor of its directory, so the path's length never matters.
pub fn connect(socket_dir: &std::path::Path, name: &str) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
        .open(socket_dir)?;
    std::os::unix::net::UnixStream::connect(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

/// Any path, the empty one included (clap's own refuses it): an internal
/// runtime has no binary.
fn parse_path(text: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(text))
}

fn parse_millis(text: &str) -> Result<Duration, std::num::ParseIntError> {
    text.parse().map(Duration::from_millis)
}
