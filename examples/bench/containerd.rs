//! Debian's containerd, as the side-by-side benchmark's reference: its CRI
//! plugin on a root, state, socket and runc root of its own, the bench's
//! registry mirrored over plain HTTP, `restrict_oom_score_adj` (these hosts
//! lack CAP_SYS_RESOURCE), and the same CNI network and sandbox image as berth.
//! A benchmark dependency only: berth's tests never need it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth::cri::v1::image_service_client::ImageServiceClient;
use berth::cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::support::berth::{
    CNI_BIN_DIR, connect, kill_processes_mentioning, remove_all_pods, unmount_everything_under,
};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct CriContainerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub(crate) socket: PathBuf,
}

impl CriContainerd {
    /// Starts containerd; `registry` (host:port) is served over HTTP, pods get
    /// `conflist` and run `sandbox_image`.
    pub(crate) async fn start(registry: &str, conflist: &str, sandbox_image: &str) -> CriContainerd {
        let dir = tempfile::Builder::new().prefix("berth-test-containerd-").tempdir().expect("containerd's dir");
        let root = dir.path();
        let conf_dir = root.join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("containerd's CNI dir");
        std::fs::write(conf_dir.join("10-bench.conflist"), conflist).expect("containerd's CNI config");
        let socket = root.join("containerd.sock");
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let config = format!(
            r#"version = 2
root = "{root}/root"
state = "{root}/state"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "{bin_dir}"
    conf_dir = "{conf_dir}"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{root}/runc"
  [{cri}.registry.mirrors."{registry}"]
    endpoint = ["http://{registry}"]
"#,
            root = root.display(),
            socket = socket.display(),
            bin_dir = CNI_BIN_DIR,
            conf_dir = conf_dir.display(),
        );
        let config_file = root.join("config.toml");
        std::fs::write(&config_file, config).expect("containerd's config");
        let log = std::fs::File::create(root.join("containerd.log")).expect("containerd's log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd (Debian's package `containerd`)");
        let containerd = CriContainerd { dir, child: Some(child), socket };
        containerd.wait_ready().await;
        containerd
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(Instant::now() < deadline, "containerd did not serve within {START_TIMEOUT:?}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("containerd runs")
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub(crate) async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.socket).await)
    }

    pub(crate) async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(connect(&self.socket).await)
    }

    /// The pids of its shims (one per pod).
    pub(crate) fn shim_pids(&self) -> Vec<u32> {
        let needle = self.socket.as_os_str().as_encoded_bytes();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let shim = cmdline.split(|&b| b == 0).next().is_some_and(|arg0| arg0.ends_with(b"containerd-shim-runc-v2"));
            if shim && cmdline.windows(needle.len()).any(|window| window == needle) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        if let Err(e) = remove_all_pods(&self.socket) {
            eprintln!("bench: containerd's pods were not all removed: {e}");
        }
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims, and the containers runc left under the runc root, mention the dir.
        kill_processes_mentioning(self.dir.path());
        let runc_root = self.dir.path().join("runc/k8s.io");
        if let Ok(listed) = Command::new("runc").arg("--root").arg(&runc_root).args(["list", "-q"]).output() {
            for id in String::from_utf8_lossy(&listed.stdout).lines() {
                let _ = Command::new("runc").arg("--root").arg(&runc_root).args(["delete", "-f", id]).status();
            }
        }
        unmount_everything_under(self.dir.path());
    }
}
