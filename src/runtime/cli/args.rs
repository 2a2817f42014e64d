//! The exact command lines berth gives a runc-compatible runtime. They are plain
//! functions so that a caller without tokio (the container monitor) runs the very
//! same commands: `Command::new(cli.program()).args(cli.create_args(...))`.

use std::ffi::OsString;
use std::path::Path;

use nix::sys::signal::Signal;

use super::OciCli;

/// How `exec` runs its process: the flags beyond the container ID.
#[derive(Debug, Clone, Copy)]
pub struct ExecArgs<'a> {
    /// The OCI `Process` as JSON (`--process`): args, env, cwd, user, terminal...
    pub process_file: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    /// Return once the process runs instead of waiting for its exit.
    pub detach: bool,
}

impl OciCli {
    /// The flags every command starts with. `log` receives the runtime's JSON log,
    /// where its error message is read back from.
    pub fn global_args(&self, log: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.root.clone().into()];
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args.extend(["--log".into(), log.into(), "--log-format".into(), "json".into()]);
        args
    }

    pub fn create_args(
        &self,
        log: &Path,
        id: &str,
        bundle: &Path,
        pid_file: Option<&Path>,
        console_socket: Option<&Path>,
    ) -> Vec<OsString> {
        let mut args = self.subcommand(log, "create");
        args.extend(["--bundle".into(), bundle.into()]);
        push_option(&mut args, "--pid-file", pid_file);
        push_option(&mut args, "--console-socket", console_socket);
        args.push(id.into());
        args
    }

    pub fn start_args(&self, log: &Path, id: &str) -> Vec<OsString> {
        self.on_container(log, "start", id)
    }

    pub fn state_args(&self, log: &Path, id: &str) -> Vec<OsString> {
        self.on_container(log, "state", id)
    }

    /// The signal goes by number: every runtime parses numbers, not all the same names.
    pub fn kill_args(&self, log: &Path, id: &str, signal: Signal, all: bool) -> Vec<OsString> {
        let mut args = self.subcommand(log, "kill");
        if all {
            args.push("--all".into());
        }
        args.extend([id.into(), (signal as i32).to_string().into()]);
        args
    }

    pub fn delete_args(&self, log: &Path, id: &str, force: bool) -> Vec<OsString> {
        let mut args = self.subcommand(log, "delete");
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        args
    }

    pub fn exec_args(&self, log: &Path, id: &str, exec: ExecArgs<'_>) -> Vec<OsString> {
        let mut args = self.subcommand(log, "exec");
        args.extend(["--process".into(), exec.process_file.into()]);
        if exec.detach {
            args.push("--detach".into());
        }
        push_option(&mut args, "--pid-file", exec.pid_file);
        push_option(&mut args, "--console-socket", exec.console_socket);
        args.push(id.into());
        args
    }

    /// The new `LinuxResources`, as JSON, go on the command's stdin.
    pub fn update_args(&self, log: &Path, id: &str) -> Vec<OsString> {
        let mut args = self.subcommand(log, "update");
        args.extend(["--resources".into(), "-".into(), id.into()]);
        args
    }

    pub fn pause_args(&self, log: &Path, id: &str) -> Vec<OsString> {
        self.on_container(log, "pause", id)
    }

    pub fn resume_args(&self, log: &Path, id: &str) -> Vec<OsString> {
        self.on_container(log, "resume", id)
    }

    pub fn list_args(&self, log: &Path) -> Vec<OsString> {
        let mut args = self.subcommand(log, "list");
        args.extend(["--format".into(), "json".into()]);
        args
    }

    fn subcommand(&self, log: &Path, name: &str) -> Vec<OsString> {
        let mut args = self.global_args(log);
        args.push(name.into());
        args
    }

    /// A subcommand whose only argument is the container ID.
    fn on_container(&self, log: &Path, name: &str, id: &str) -> Vec<OsString> {
        let mut args = self.subcommand(log, name);
        args.push(id.into());
        args
    }
}

fn push_option(args: &mut Vec<OsString>, flag: &str, value: Option<&Path>) {
    if let Some(value) = value {
        args.extend([flag.into(), value.into()]);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::RuntimeKind;
    use crate::runtime::RuntimeHandler;

    fn cli(systemd_cgroup: bool) -> OciCli {
        OciCli::new(&RuntimeHandler {
            name: "runc".into(),
            kind: RuntimeKind::Oci,
            binary: PathBuf::from("runc"),
            root: PathBuf::from("/run/berth/runtimes/runc"),
            systemd_cgroup,
            timeout: crate::runtime::DEFAULT_TIMEOUT,
        })
    }

    fn words(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    const GLOBAL: &str = "--root /run/berth/runtimes/runc --log /l.json --log-format json";

    fn line(args: Vec<OsString>) -> String {
        words(args).join(" ")
    }

    #[test]
    fn global_flags_come_first_and_systemd_only_when_asked() {
        assert_eq!(line(cli(false).start_args(Path::new("/l.json"), "c1")), format!("{GLOBAL} start c1"));
        assert_eq!(
            line(cli(true).state_args(Path::new("/l.json"), "c1")),
            "--root /run/berth/runtimes/runc --systemd-cgroup --log /l.json --log-format json state c1"
        );
    }

    #[test]
    fn create_names_bundle_and_optional_files_before_the_id() {
        let cli = cli(false);
        let log = Path::new("/l.json");
        let bundle = Path::new("/b");
        assert_eq!(line(cli.create_args(log, "c1", bundle, None, None)), format!("{GLOBAL} create --bundle /b c1"));
        assert_eq!(
            line(cli.create_args(log, "c1", bundle, Some(Path::new("/b/pid")), Some(Path::new("/s.sock")))),
            format!("{GLOBAL} create --bundle /b --pid-file /b/pid --console-socket /s.sock c1")
        );
    }

    #[test]
    fn kill_sends_the_signal_number() {
        let cli = cli(false);
        let log = Path::new("/l.json");
        assert_eq!(line(cli.kill_args(log, "c1", Signal::SIGKILL, false)), format!("{GLOBAL} kill c1 9"));
        assert_eq!(line(cli.kill_args(log, "c1", Signal::SIGTERM, true)), format!("{GLOBAL} kill --all c1 15"));
    }

    #[test]
    fn delete_forces_only_when_asked() {
        let cli = cli(false);
        let log = Path::new("/l.json");
        assert_eq!(line(cli.delete_args(log, "c1", false)), format!("{GLOBAL} delete c1"));
        assert_eq!(line(cli.delete_args(log, "c1", true)), format!("{GLOBAL} delete --force c1"));
    }

    #[test]
    fn exec_takes_a_process_file() {
        let cli = cli(false);
        let log = Path::new("/l.json");
        let attached =
            ExecArgs { process_file: Path::new("/p.json"), pid_file: None, console_socket: None, detach: false };
        assert_eq!(line(cli.exec_args(log, "c1", attached)), format!("{GLOBAL} exec --process /p.json c1"));
        let detached = ExecArgs {
            pid_file: Some(Path::new("/pid")),
            console_socket: Some(Path::new("/s.sock")),
            detach: true,
            ..attached
        };
        assert_eq!(
            line(cli.exec_args(log, "c1", detached)),
            format!("{GLOBAL} exec --process /p.json --detach --pid-file /pid --console-socket /s.sock c1")
        );
    }

    #[test]
    fn the_other_commands() {
        let cli = cli(false);
        let log = Path::new("/l.json");
        assert_eq!(line(cli.update_args(log, "c1")), format!("{GLOBAL} update --resources - c1"));
        assert_eq!(line(cli.pause_args(log, "c1")), format!("{GLOBAL} pause c1"));
        assert_eq!(line(cli.resume_args(log, "c1")), format!("{GLOBAL} resume c1"));
        assert_eq!(line(cli.list_args(log)), format!("{GLOBAL} list --format json"));
    }

    #[test]
    fn paths_stay_single_arguments() {
        let args = cli(false).create_args(Path::new("/l.json"), "c1", Path::new("/with space/b"), None, None);
        assert!(words(args).contains(&"/with space/b".to_string()));
    }
}
