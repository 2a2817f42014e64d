//! `berth monitor`: creates the container and watches it until it exits.
//!
//! It runs in a fresh single-threaded process and forks once more at start so that
//! it is no child of berth (berth may restart; the monitor stays). It is the child
//! subreaper of the container's init, whose parent (runc) exits after `create`.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use super::attach::{AttachClient, Request};
use super::console::ConsoleSocket;
use super::control::{self, ControlClient};
use super::exit::{self, ExitRecord};
use super::log::{CriLog, Stream};
use super::output::{Output, Read1, STDIN_BACKLOG, Stdin};
use super::{ATTACH_SOCKET, CONTROL_SOCKET, MonitorArgs, STREAM_STDERR, STREAM_STDOUT, sys};
use crate::runtime::{CreateIo, Refusal, RuntimeError};

/// How the monitor failed before the container ran: the runtime refused (its
/// message goes back as `error`), `create` outran its bound (`timeout`), or the
/// monitor's own setup failed (`failed`).
enum Failure {
    Runtime(Refusal, String),
    TimedOut(std::time::Duration),
    Setup(String),
}

fn setup(what: &str) -> impl FnOnce(std::io::Error) -> Failure + '_ {
    move |e| Failure::Setup(format!("{what}: {e}"))
}

/// The monitor's main: returns once the container has exited and its exit is
/// recorded, or with why the container could not be created.
pub fn run(args: &MonitorArgs) -> Result<(), String> {
    let mut sync = sys::take_sync_pipe()?;
    // A session of its own: no signal meant for berth's terminal or process
    // group reaches the container's monitor.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    detach()?;
    match Session::start(args) {
        Ok(mut session) => {
            if let Err(e) = writeln!(sync, "ok {} {}", session.container_pid, std::process::id()) {
                // berth stopped waiting and undid its side of the create: a container
                // nobody knows of must not be left running.
                session.abandon(args);
                return Err(format!("berth is no longer waiting ({e}); the container was deleted"));
            }
            drop(sync);
            sys::release_file_pages();
            session.serve();
            Ok(())
        }
        Err(Failure::Runtime(refusal, message)) => {
            let _ = writeln!(sync, "error {} {}", refusal.as_str(), one_line(&message));
            Err(message)
        }
        Err(Failure::TimedOut(timeout)) => {
            let _ = writeln!(sync, "timeout {}", timeout.as_millis());
            Err(format!("the runtime's create did not finish within {timeout:?}"))
        }
        Err(Failure::Setup(message)) => {
            let _ = writeln!(sync, "failed {}", one_line(&message));
            Err(message)
        }
    }
}

fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// Forks and lets the parent exit, so the monitor is reparented away from berth
/// (which waits for that parent). The parent is a session leader; the child is
/// not one, so it can never acquire a controlling terminal.
fn detach() -> Result<(), String> {
    // SAFETY: this process is single-threaded (no runtime, no threads started), so
    // the child may run any code after fork.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Parent { .. } => std::process::exit(0),
        ForkResult::Child => Ok(()),
    }
}

/// One polled fd and what it stands for.
#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Output(usize),
    Stdin,
    AttachListener,
    Attach(usize),
    ControlListener,
    Control(usize),
}

/// The container's process and stdio, as `create` left them.
struct Created {
    pid: Pid,
    outputs: Vec<Output>,
    stdin: Option<Stdin>,
    pty: Option<OwnedFd>,
}

struct Session {
    container_pid: Pid,
    signals: SignalFd,
    outputs: Vec<Output>,
    stdin: Option<Stdin>,
    /// The pty master (`--tty`): resize goes to it.
    pty: Option<OwnedFd>,
    log: CriLog,
    attach: UnixListener,
    clients: Vec<AttachClient>,
    control: UnixListener,
    controls: Vec<ControlClient>,
    stdin_once: bool,
    /// A first attach client has left (stdin_once closes stdin then).
    first_detached: bool,
    sockets: [PathBuf; 2],
    exit_file: PathBuf,
    oom_counter: Option<PathBuf>,
    exit: Option<(i32, i64)>,
    buffer: Vec<u8>,
}

impl Session {
    fn start(args: &MonitorArgs) -> Result<Session, Failure> {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Failure::Setup(format!("PR_SET_CHILD_SUBREAPER: {e}")))?;
        // Blocked before the runtime starts, so no exit is missed: a SIGCHLD that
        // comes before the poll loop waits in the signalfd. Command resets the mask
        // for its children, so neither runc nor the container inherits the block.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(|e| Failure::Setup(format!("blocking SIGCHLD: {e}")))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| Failure::Setup(format!("signalfd: {e}")))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.socket_dir)
            .map_err(setup("creating the socket directory"))?;
        // Sockets are bound by name in the socket directory: a unix socket path is
        // limited to 108 bytes, which a run root plus a 64-hex ID can exceed. The
        // monitor has no other use for its working directory.
        std::env::set_current_dir(&args.socket_dir).map_err(setup("entering the socket directory"))?;
        let sockets = [PathBuf::from(ATTACH_SOCKET), PathBuf::from(CONTROL_SOCKET)];
        let attach = listen(&sockets[0]).map_err(setup("binding the attach socket"))?;
        let control = listen(&sockets[1]).map_err(setup("binding the control socket"))?;
        let log = CriLog::open(&args.log_path).map_err(setup("opening the log file"))?;
        let created = create_container(args, &signals).inspect_err(|_| {
            for socket in &sockets {
                let _ = std::fs::remove_file(socket);
            }
        })?;
        Ok(Session {
            container_pid: created.pid,
            signals,
            outputs: created.outputs,
            stdin: created.stdin,
            pty: created.pty,
            log,
            attach,
            clients: Vec::new(),
            control,
            controls: Vec::new(),
            stdin_once: args.stdin_once,
            first_detached: false,
            sockets,
            exit_file: args.exit_file.clone(),
            oom_counter: exit::oom_counter(&args.bundle),
            exit: None,
            buffer: vec![0; 32 * 1024],
        })
    }

    /// The poll loop, until the container's init has exited; then the last output,
    /// the exit record, and the sockets go.
    fn serve(&mut self) {
        // An init that died during `create` was announced by a SIGCHLD that the
        // bounded wait for the runtime consumed.
        self.reap();
        while self.exit.is_none() {
            let Some(ready) = self.wait_ready() else {
                // Cannot happen with valid fds; waiting blind still records the exit.
                self.wait_blocking();
                break;
            };
            for (slot, revents) in ready {
                self.handle(slot, revents);
            }
            self.drop_closed_clients();
        }
        self.finish();
    }

    /// Waits for the next events; the slots that have some, or `None` if poll failed.
    fn wait_ready(&self) -> Option<Vec<(Slot, PollFlags)>> {
        let (mut fds, slots) = self.poll_set();
        sys::poll(&mut fds, PollTimeout::NONE).ok()?;
        let ready = fds.iter().zip(slots).filter_map(|(fd, slot)| Some((slot, fd.revents()?)));
        Some(ready.filter(|(_, revents)| !revents.is_empty()).collect())
    }

    fn poll_set<'a>(&'a self) -> (Vec<PollFd<'a>>, Vec<Slot>) {
        let mut fds = Vec::new();
        let mut slots = Vec::new();
        let mut add = |fd: BorrowedFd<'a>, events: PollFlags, slot: Slot| {
            fds.push(PollFd::new(fd, events));
            slots.push(slot);
        };
        add(self.signals.as_fd(), PollFlags::POLLIN, Slot::Signals);
        for (i, output) in self.outputs.iter().enumerate().filter(|(_, o)| o.open) {
            add(output.file.as_fd(), PollFlags::POLLIN, Slot::Output(i));
        }
        if let Some(file) = self.stdin.as_ref().filter(|s| s.wants_to_write()).and_then(Stdin::file) {
            add(file.as_fd(), PollFlags::POLLOUT, Slot::Stdin);
        }
        // Stop taking stdin from clients while the container does not read it.
        let backlog = self.stdin.as_ref().map_or(0, Stdin::backlog);
        add(self.attach.as_fd(), PollFlags::POLLIN, Slot::AttachListener);
        for (i, client) in self.clients.iter().enumerate() {
            let read = if backlog < STDIN_BACKLOG { PollFlags::POLLIN } else { PollFlags::empty() };
            let write = if client.wants_to_write() { PollFlags::POLLOUT } else { PollFlags::empty() };
            add(client.stream.as_fd(), read | write, Slot::Attach(i));
        }
        add(self.control.as_fd(), PollFlags::POLLIN, Slot::ControlListener);
        for (i, client) in self.controls.iter().enumerate() {
            add(client.stream().as_fd(), PollFlags::POLLIN, Slot::Control(i));
        }
        (fds, slots)
    }

    fn handle(&mut self, slot: Slot, revents: PollFlags) {
        match slot {
            Slot::Signals => self.reap(),
            Slot::Output(i) => {
                self.read_output(i);
            }
            Slot::Stdin => {
                if let Some(stdin) = self.stdin.as_mut() {
                    stdin.flush();
                }
            }
            Slot::AttachListener => self.accept_attach(),
            Slot::Attach(i) => self.serve_attach(i, revents),
            Slot::ControlListener => self.accept_control(),
            Slot::Control(i) => self.serve_control(i),
        }
    }

    /// Reaps every exited child; the container's init ends the session. Others are
    /// orphans reparented to the monitor (it is their subreaper).
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => self.record_if_container(status),
            }
        }
    }

    fn wait_blocking(&mut self) {
        while self.exit.is_none() {
            match waitpid(self.container_pid, None) {
                Ok(status) => self.record_if_container(status),
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => self.exit = Some((255, crate::time::now_nanos())),
            }
        }
    }

    fn record_if_container(&mut self, status: WaitStatus) {
        if status.pid() == Some(self.container_pid)
            && let Some(code) = exit::exit_code(status)
        {
            self.exit = Some((code, crate::time::now_nanos()));
        }
    }

    /// One read of an output stream: to the log and to every attach client.
    fn read_output(&mut self, i: usize) -> Read1 {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.outputs[i].read(&mut buffer);
        match result {
            Read1::Data(n) => {
                self.outputs[i].log(&mut self.log, &buffer[..n]);
                let id = if self.outputs[i].stream == Stream::Stdout { STREAM_STDOUT } else { STREAM_STDERR };
                for client in &mut self.clients {
                    client.send(id, &buffer[..n]);
                }
            }
            Read1::Idle => {}
            Read1::End => self.outputs[i].finish(&mut self.log),
        }
        self.buffer = buffer;
        result
    }

    fn accept_attach(&mut self) {
        while let Ok((stream, _)) = self.attach.accept() {
            if let Ok(client) = AttachClient::new(stream) {
                self.clients.push(client);
            }
        }
    }

    fn serve_attach(&mut self, i: usize, revents: PollFlags) {
        if revents.contains(PollFlags::POLLOUT) {
            self.clients[i].flush();
        }
        if !revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        let requests = self.clients[i].receive();
        if !requests.is_empty() {
            self.clients[i].sent_stdin = true;
        }
        for request in requests {
            match request {
                Request::Stdin(data) => self.stdin.iter_mut().for_each(|s| s.push(&data)),
                Request::CloseStdin => self.close_stdin(),
            }
        }
    }

    fn close_stdin(&mut self) {
        let pty = self.pty.is_some();
        if let Some(stdin) = self.stdin.as_mut() {
            stdin.close(pty);
        }
    }

    /// Forgets clients that left; with stdin_once, the first client that wrote
    /// to stdin (berth's attach sends an empty frame when it carries stdin)
    /// closes it by leaving. A client that only watched the output does not.
    fn drop_closed_clients(&mut self) {
        let stdin_client_left = self.clients.iter().any(|client| client.closed && client.sent_stdin);
        self.clients.retain(|client| !client.closed);
        if stdin_client_left && self.stdin_once && !self.first_detached {
            self.first_detached = true;
            self.close_stdin();
        }
        self.controls.retain(|client| !client.closed);
    }

    fn accept_control(&mut self) {
        while let Ok((stream, _)) = self.control.accept() {
            if let Ok(client) = ControlClient::new(stream) {
                self.controls.push(client);
            }
        }
    }

    fn serve_control(&mut self, i: usize) {
        for line in self.controls[i].receive() {
            let answer = match control::parse(&line).and_then(|command| self.execute(command)) {
                Ok(()) => "ok".to_string(),
                Err(message) => format!("error {message}"),
            };
            // A reopen (each log rotation) or a resize runs code the monitor
            // needs again only at the next one: its pages go back with the
            // start-up's, before the answer, so the client sees it settled.
            sys::release_file_pages();
            self.controls[i].reply(&answer);
        }
    }

    fn execute(&mut self, command: control::Command) -> Result<(), String> {
        match command {
            control::Command::Reopen => self.log.reopen().map_err(|e| format!("reopening the log: {e}")),
            control::Command::Resize { rows, cols } => {
                let pty = self.pty.as_ref().ok_or("the container has no terminal")?;
                sys::set_window_size(pty.as_fd(), rows, cols).map_err(|e| format!("resize: {e}"))
            }
        }
    }

    /// The init exited: what it wrote before is in the pipes; log it, record the
    /// exit, and leave nothing behind.
    fn finish(&mut self) {
        for i in 0..self.outputs.len() {
            self.drain(i);
        }
        let Some((exit_code, exited_at)) = self.exit else { return };
        let oom_killed = exit::oom_killed(self.oom_counter.as_deref());
        let record = ExitRecord { exit_code, exited_at, oom_killed };
        // Nobody is left to tell if this fails: berth finds no exit file and
        // reports the container's state from the runtime instead.
        let _ = exit::write_exit_file(&self.exit_file, &record);
        self.clients.clear();
        self.controls.clear();
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// Undoes a create berth no longer waits for: the init is killed (it is this
    /// monitor's unreaped child, so its PID cannot have been reused), the runtime's
    /// state deleted, the init reaped and the sockets removed. No exit is recorded:
    /// berth has no record of the container.
    fn abandon(&mut self, args: &MonitorArgs) {
        let _ = nix::sys::signal::kill(self.container_pid, Signal::SIGKILL);
        args.runtime().force_delete_blocking(&args.id, Some(&self.signals));
        let _ = waitpid(self.container_pid, None);
        for socket in &self.sockets {
            let _ = std::fs::remove_file(socket);
        }
    }

    /// Reads an output stream until it has nothing more (without waiting), then
    /// ends it: a writer left (an exec'd process) no longer counts.
    fn drain(&mut self, i: usize) {
        while self.outputs[i].open {
            if let Read1::Idle = self.read_output(i) {
                break;
            }
        }
        if self.outputs[i].open {
            self.outputs[i].finish(&mut self.log);
        }
    }
}

fn listen(path: &Path) -> std::io::Result<UnixListener> {
    // A socket left by an earlier monitor of this container (a crash) is stale.
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Has the runtime create the container with its stdio, and returns its init's pid.
fn create_container(args: &MonitorArgs, signals: &SignalFd) -> Result<Created, Failure> {
    let pid_file = args.socket_dir.join("container.pid");
    let console = if args.tty {
        Some(ConsoleSocket::bind(Path::new("console.sock")).map_err(setup("binding the console socket"))?)
    } else {
        None
    };
    // The runtime runs elsewhere (runc in the bundle directory; libcontainer moves
    // this very process into its state directory while it creates), so it gets a
    // short absolute path through a descriptor of our socket directory, held
    // until the create is done: a unix socket path is limited to 108 bytes.
    let socket_dir = match &console {
        Some(_) => Some(
            std::fs::File::options()
                .read(true)
                .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
                .open(&args.socket_dir)
                .map_err(setup("opening the socket directory"))?,
        ),
        None => None,
    };
    let console_path = console.as_ref().zip(socket_dir.as_ref()).map(|(console, dir)| {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), dir.as_raw_fd())).join(console.path())
    });
    let (ends, pipes) = ContainerStdio::new(args)?.split();
    let io = CreateIo {
        stdin: ends.stdin,
        stdout: ends.stdout,
        stderr: ends.stderr,
        console_socket: console_path,
        pid_file: Some(pid_file),
    };
    let created =
        args.runtime().create_blocking(&args.id, &args.bundle, io, Some(signals), &|| read_available(&pipes.stderr));
    drop(socket_dir);
    let pid = match created {
        Ok(pid) => Pid::from_raw(pid),
        Err(RuntimeError::TimedOut { timeout, .. }) => return Err(Failure::TimedOut(timeout)),
        Err(RuntimeError::Failed { refusal, message, .. }) => return Err(Failure::Runtime(refusal, message)),
        Err(other) => return Err(Failure::Setup(other.to_string())),
    };
    match console {
        Some(console) => terminal(&console, args.stdin, pid),
        None => Ok(pipes.into_created(pid)),
    }
}

/// With `--tty`: output and stdin both go through the pty master runc sent.
fn terminal(console: &ConsoleSocket, with_stdin: bool, pid: Pid) -> Result<Created, Failure> {
    let master = console.receive_master().map_err(setup("receiving the pty master"))?;
    sys::set_nonblocking(master.as_fd()).map_err(setup("pty master"))?;
    let dup = || master.try_clone().map_err(setup("duplicating the pty master"));
    let outputs = vec![Output::new(dup()?, Stream::Stdout)];
    let stdin = if with_stdin { Some(Stdin::new(dup()?)) } else { None };
    Ok(Created { pid, outputs, stdin, pty: Some(master) })
}

/// The pipes made for the container's stdio, before the runtime gets its ends.
struct ContainerStdio {
    stdin: Option<(OwnedFd, OwnedFd)>,
    stdout: Option<(OwnedFd, OwnedFd)>,
    stderr: (OwnedFd, OwnedFd),
}

/// The monitor's ends once the runtime has the others.
struct Pipes {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: OwnedFd,
}

impl ContainerStdio {
    /// Without a tty, the container gets stdout and stderr pipes (and stdin with
    /// `--stdin`), through the runtime, which passes its own stdio on. With one, only
    /// the runtime's stderr is piped, for its error message.
    fn new(args: &MonitorArgs) -> Result<ContainerStdio, Failure> {
        let pipe = || sys::pipe().map_err(setup("creating a pipe"));
        let piped = !args.tty;
        Ok(ContainerStdio {
            stdin: if piped && args.stdin { Some(pipe()?) } else { None },
            stdout: if piped { Some(pipe()?) } else { None },
            stderr: pipe()?,
        })
    }

    /// The runtime's ends, and the monitor's.
    fn split(self) -> (RuntimeEnds, Pipes) {
        let (stdin, stdin_end) = self.stdin.unzip();
        let (stdout_end, stdout) = self.stdout.unzip();
        let (stderr_read, stderr_write) = self.stderr;
        let ends = RuntimeEnds { stdin, stdout, stderr: Some(stderr_write) };
        // Never blocks: after a failed create the pipe may still have a writer (a
        // leftover `runc init`), and the monitor must answer anyway.
        let _ = sys::set_nonblocking(stderr_read.as_fd());
        (ends, Pipes { stdin: stdin_end, stdout: stdout_end, stderr: stderr_read })
    }
}

/// The container's stdio as the runtime gets it: dropped with the create, so
/// that the container's output ends when the container does.
struct RuntimeEnds {
    stdin: Option<OwnedFd>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
}

/// What a non-blocking pipe holds now, up to 64 KiB.
fn read_available(fd: &OwnedFd) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    while bytes.len() < 64 * 1024 {
        match nix::unistd::read(fd.as_raw_fd(), &mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
    bytes
}

impl Pipes {
    fn into_created(self, pid: Pid) -> Created {
        let mut outputs = Vec::new();
        for (fd, stream) in [(self.stdout, Stream::Stdout), (Some(self.stderr), Stream::Stderr)] {
            if let Some(fd) = fd {
                let _ = sys::set_nonblocking(fd.as_fd());
                outputs.push(Output::new(fd, stream));
            }
        }
        let stdin = self.stdin.map(|fd| {
            let _ = sys::set_nonblocking(fd.as_fd());
            Stdin::new(fd)
        });
        Created { pid, outputs, stdin, pty: None }
    }
}
