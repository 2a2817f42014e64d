//! Running one CNI plugin binary, per the CNI spec's "Execution Protocol": parameters in
//! the environment, the plugin's config on stdin, a result or an error on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::{NetworkConfigList, NetworkError, PluginConfig, PluginError, find_plugin};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Command {
    Add,
    Del,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// The per-call parameters every plugin of a list gets.
pub(super) struct Invocation<'a> {
    pub command: Command,
    pub container_id: &'a str,
    /// `None` on a DEL whose netns is gone: `CNI_NETNS` is then empty, as the spec allows.
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    pub cni_args: &'a str,
}

/// Used when berth itself runs without `PATH`: plugins call `iptables`, `ip`, `ipset`...
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) struct PluginRunner {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

/// What a plugin that fails prints on stdout (CNI spec, "Error" section).
#[derive(Deserialize)]
struct ErrorOutput {
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// What a finished plugin left behind.
struct Output {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl PluginRunner {
    /// Runs plugin `kind` of network `network` with `config` on stdin. `Ok(None)` is a success
    /// that printed nothing (what DEL prints); `Ok(Some(result))` a success with a result.
    pub async fn run(
        &self,
        network: &str,
        kind: &str,
        invocation: &Invocation<'_>,
        config: &Value,
    ) -> Result<Option<Value>, NetworkError> {
        let command = invocation.command.as_str();
        let path = find_plugin(&self.bin_dirs, kind)
            .ok_or_else(|| NetworkError::PluginMissing { plugin: kind.to_string(), bin_dirs: self.cni_path() })?;
        let stdin = serde_json::to_vec(config).map_err(|e| NetworkError::BadResult {
            network: network.to_string(),
            plugin: kind.to_string(),
            command,
            reason: format!("cannot encode its config: {e}"),
        })?;
        let started = Instant::now();
        let step = format!("{command} {kind}");
        let span = tracing::debug_span!(target: crate::metrics::STEP_TARGET, "cni", what = step.as_str());
        let output = self.execute(&path, invocation, stdin).instrument(span).await.map_err(|e| match e {
            ExecError::Spawn(source) => NetworkError::Spawn { path: path.clone(), source },
            ExecError::Timeout => NetworkError::Timeout {
                network: network.to_string(),
                plugin: kind.to_string(),
                command,
                timeout: self.timeout,
            },
        })?;
        tracing::debug!(
            network,
            plugin = kind,
            command,
            container_id = invocation.container_id,
            elapsed = ?started.elapsed(),
            status = %output.status,
            "ran CNI plugin"
        );
        if !output.stderr.is_empty() {
            tracing::debug!(plugin = kind, command, stderr = %String::from_utf8_lossy(&output.stderr), "CNI plugin stderr");
        }
        if !output.status.success() {
            return Err(plugin_error(network, kind, command, &output).into());
        }
        parse_result(&output.stdout).map_err(|reason| NetworkError::BadResult {
            network: network.to_string(),
            plugin: kind.to_string(),
            command,
            reason,
        })
    }

    /// `CNI_PATH`: where plugins that delegate (to IPAM plugins) look.
    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self.bin_dirs.iter().map(|dir| dir.display().to_string()).collect();
        dirs.join(":")
    }

    async fn execute(&self, path: &Path, invocation: &Invocation<'_>, stdin: Vec<u8>) -> Result<Output, ExecError> {
        let netns = invocation.netns.map(|p| p.as_os_str().to_owned()).unwrap_or_default();
        let host_path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
        let mut child = tokio::process::Command::new(path)
            // Only what the spec defines reaches the plugin, so berth's own environment
            // (proxies, credentials, locale) cannot change what plugins do.
            .env_clear()
            .env("PATH", host_path)
            .env("CNI_COMMAND", invocation.command.as_str())
            .env("CNI_CONTAINERID", invocation.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", invocation.ifname)
            .env("CNI_ARGS", invocation.cni_args)
            .env("CNI_PATH", self.cni_path())
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills whatever it started too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(ExecError::Spawn)?;
        let pid = child.id();
        let finished = tokio::time::timeout(self.timeout, communicate(&mut child, stdin)).await;
        match finished {
            Ok(result) => result.map_err(ExecError::Spawn),
            Err(_elapsed) => {
                kill_group(pid);
                // Reap it, so no zombie is left; the kill makes this quick.
                let _ = child.wait().await;
                Err(ExecError::Timeout)
            }
        }
    }
}

enum ExecError {
    Spawn(std::io::Error),
    Timeout,
}

/// Feeds stdin and drains stdout and stderr at the same time, so that neither side can block
/// the other on a full pipe, then waits for the exit.
async fn communicate(child: &mut tokio::process::Child, input: Vec<u8>) -> std::io::Result<Output> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A plugin may exit without reading its config (e.g. on a bad environment): the
            // broken pipe is then not the error to report, its exit status and output are.
            if let Err(e) = stdin.write_all(&input).await {
                tracing::debug!(error = %e, "writing a CNI plugin's stdin");
            }
        }
    };
    let (_, stdout, stderr) = tokio::join!(write, read_all(stdout), read_all(stderr));
    let status = child.wait().await?;
    Ok(Output { status, stdout: stdout?, stderr: stderr? })
}

async fn read_all(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

fn kill_group(pid: Option<u32>) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    let Some(pid) = pid.and_then(|pid| i32::try_from(pid).ok()) else { return };
    if let Err(e) = killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        tracing::warn!(pid, error = %e, "killing a timed-out CNI plugin");
    }
}

/// An empty stdout is a result-less success; anything else must be JSON.
fn parse_result(stdout: &[u8]) -> Result<Option<Value>, String> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(stdout).map(Some).map_err(|e| format!("stdout is not JSON: {e}"))
}

/// The plugin's JSON error if it printed one, else what it said on stderr.
fn plugin_error(network: &str, kind: &str, command: &'static str, output: &Output) -> PluginError {
    let (code, msg, details) = match serde_json::from_slice::<ErrorOutput>(&output.stdout) {
        Ok(error) => (error.code, error.msg, error.details),
        Err(_) => {
            let said = [&output.stderr, &output.stdout]
                .into_iter()
                .map(|bytes| String::from_utf8_lossy(bytes).trim().to_string())
                .find(|text| !text.is_empty());
            (None, said.unwrap_or_else(|| format!("exited with {}", output.status)), String::new())
        }
    };
    PluginError { network: network.to_string(), plugin: kind.to_string(), command, code, msg, details }
}

/// What plugin `plugin` of `list` reads on stdin: its own config, with the list's `name` and
/// `cniVersion`, the previous result, and the runtime config of the capabilities it declares
/// (libcni's `buildOneConfig` and `injectRuntimeConfig`).
pub(super) fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    prev_result: Option<&Value>,
    runtime_config: &Map<String, Value>,
) -> Value {
    let mut config = match &plugin.raw {
        Value::Object(map) => map.clone(),
        // The loader only accepts objects with a `type`; this keeps the function total.
        _ => Map::new(),
    };
    config.insert("name".into(), Value::String(list.name.clone()));
    if !list.cni_version.is_empty() {
        config.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    }
    if let Some(result) = prev_result {
        config.insert("prevResult".into(), result.clone());
    }
    let declared = plugin.raw.get("capabilities").and_then(Value::as_object);
    let granted: Map<String, Value> = runtime_config
        .iter()
        .filter(|(name, _)| declared.and_then(|caps| caps.get(*name)) == Some(&Value::Bool(true)))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if !granted.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(granted));
    }
    Value::Object(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn list(plugins: Value) -> NetworkConfigList {
        let raw = json!({"cniVersion": "1.0.0", "name": "pods", "plugins": plugins});
        NetworkConfigList::from_value(raw, Path::new("test")).unwrap()
    }

    #[test]
    fn stdin_gets_list_identity_prev_result_and_declared_capabilities_only() {
        let list = list(json!([{"type": "portmap", "cniVersion": "0.4.0", "capabilities": {
            "portMappings": true, "bandwidth": false, "dns": true, "ipRanges": true}}]));
        let mut runtime = Map::new();
        runtime.insert("portMappings".into(), json!([{"hostPort": 80}]));
        runtime.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let stdin = plugin_stdin(&list, &list.plugins[0], Some(&prev), &runtime);
        assert_eq!(stdin["name"], "pods");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["prevResult"], prev);
        assert_eq!(stdin["runtimeConfig"], json!({"portMappings": [{"hostPort": 80}]}));
        let first = plugin_stdin(&list, &list.plugins[0], None, &Map::new());
        assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none(), "{first}");
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Neither gone nor a zombie (killed, waiting for its reaper).
    fn process_alive(pid: i32) -> bool {
        crate::procfs::is_alive(pid)
    }

    fn invocation() -> Invocation<'static> {
        Invocation { command: Command::Add, container_id: "c1", netns: None, ifname: "eth0", cni_args: "" }
    }

    #[tokio::test]
    async fn non_json_failure_reports_stderr_and_timeout_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "noisy", "cat >/dev/null; echo 'something broke' >&2; exit 2");
        // A plugin and a process it started, both holding stdout open and
        // never ending by themselves: only the deadline ends the call.
        let started = dir.path().join("started");
        let body = format!("sleep 100000 & echo $! > {0}.tmp; mv {0}.tmp {0}; sleep 100000", started.display());
        script(dir.path(), "slow", &body);
        let runner = PluginRunner { bin_dirs: vec![dir.path().to_path_buf()], timeout: Duration::from_millis(500) };
        let err = runner.run("pods", "noisy", &invocation(), &json!({})).await.unwrap_err();
        assert!(matches!(&err, NetworkError::Plugin(e) if e.msg == "something broke" && e.code.is_none()), "{err}");
        // Only a guard against a hang: the call ends at its own deadline.
        let (invocation, config) = (invocation(), json!({}));
        let slow = runner.run("pods", "slow", &invocation, &config);
        let err = tokio::time::timeout(Duration::from_secs(60), slow).await.expect("the plugin call hung").unwrap_err();
        assert!(matches!(err, NetworkError::Timeout { .. }), "{err}");
        // The group went: the process the plugin started dies with it (and,
        // orphaned, is reaped by init), if it got to start before the deadline.
        if let Ok(pid) = std::fs::read_to_string(&started) {
            let pid: i32 = pid.trim().parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while process_alive(pid) {
                assert!(Instant::now() < deadline, "the plugin's child {pid} outlived the group kill");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let err = runner.run("pods", "absent", &invocation, &config).await.unwrap_err();
        assert!(matches!(err, NetworkError::PluginMissing { .. }), "{err}");
    }
}
