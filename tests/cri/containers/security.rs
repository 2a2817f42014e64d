//! Capabilities, seccomp, masked and read-only paths, a read-only rootfs: what
//! the process finds in /proc/self/status and when it tries to write.

use berth::cri::v1::security_profile::ProfileType;
use berth::cri::v1::{Capability, ContainerConfig, Mount, SecurityProfile};

use crate::support::containers::{Bed, Pod, log_lines, log_lines_of, security_context, sh};

/// Runs `config` to its end; its stdout lines.
async fn output(bed: &Bed, pod: &Pod, config: ContainerConfig) -> Vec<String> {
    let log = pod.log_path(&config);
    let name = config.metadata.as_ref().unwrap().name.clone();
    let exited = bed.run_to_exit(pod, config).await;
    assert_eq!(exited.exit_code, 0, "{name}: {exited:?}: {:?}", crate::support::containers::log_entries(&log));
    log_lines(&log)
}

/// The value of `field` in a `/proc/self/status` line the container printed.
fn status_field(lines: &[String], field: &str) -> String {
    let prefix = format!("{field}:");
    let line = lines.iter().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {field} in {lines:?}"));
    line[prefix.len()..].trim().to_string()
}

fn capabilities(add: &[&str], drop: &[&str]) -> Option<Capability> {
    Some(Capability {
        add_capabilities: add.iter().map(|c| c.to_string()).collect(),
        drop_capabilities: drop.iter().map(|c| c.to_string()).collect(),
        ..Default::default()
    })
}

/// Docker's default set (containerd's and cri-o's too): CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const DEFAULT_CAPS: u64 = 0xa80425fb;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_CHOWN: u64 = 1;

fn caps_of(lines: &[String], field: &str) -> u64 {
    u64::from_str_radix(&status_field(lines, field), 16).unwrap()
}

#[tokio::test]
async fn capabilities_default_added_dropped_and_privileged() {
    let bed = Bed::new().await;
    let pod = bed.pod("caps").await;
    let script = "grep Cap /proc/self/status";

    let lines = output(&bed, &pod, sh("default", &bed.busybox, script)).await;
    assert_eq!(caps_of(&lines, "CapEff"), DEFAULT_CAPS, "{lines:?}");
    assert_eq!(caps_of(&lines, "CapBnd"), DEFAULT_CAPS, "{lines:?}");

    let mut config = sh("add", &bed.busybox, script);
    security_context(&mut config).capabilities = capabilities(&["NET_ADMIN"], &["CHOWN"]);
    let lines = output(&bed, &pod, config).await;
    assert_eq!(caps_of(&lines, "CapEff"), (DEFAULT_CAPS | CAP_NET_ADMIN) & !CAP_CHOWN, "{lines:?}");

    let mut config = sh("drop-all", &bed.busybox, script);
    security_context(&mut config).capabilities = capabilities(&[], &["ALL"]);
    let lines = output(&bed, &pod, config).await;
    assert_eq!(caps_of(&lines, "CapEff"), 0, "{lines:?}");
    assert_eq!(caps_of(&lines, "CapBnd"), 0, "{lines:?}");

    let mut config = sh("drop-all-add-one", &bed.busybox, script);
    security_context(&mut config).capabilities = capabilities(&["NET_BIND_SERVICE"], &["ALL"]);
    let lines = output(&bed, &pod, config).await;
    assert_eq!(caps_of(&lines, "CapEff"), CAP_NET_BIND_SERVICE, "{lines:?}");

    // Privileged: every capability berth itself holds (this host's root lacks
    // CAP_SYS_RESOURCE, so "every capability the kernel knows" is not possible).
    let berth_status = std::fs::read_to_string(format!("/proc/{}/status", bed.berth.pid().unwrap())).unwrap();
    let berth_lines: Vec<String> = berth_status.lines().map(String::from).collect();
    let mut config = sh("privileged", &bed.busybox, &format!("{script}; grep Seccomp: /proc/self/status"));
    security_context(&mut config).privileged = true;
    let lines = output(&bed, &pod, config).await;
    assert_eq!(caps_of(&lines, "CapEff"), caps_of(&berth_lines, "CapEff"), "{lines:?}");
    assert_eq!(status_field(&lines, "Seccomp"), "0", "privileged means no seccomp filter: {lines:?}");
}

fn profile(profile_type: ProfileType, localhost_ref: &str) -> Option<SecurityProfile> {
    Some(SecurityProfile { profile_type: profile_type as i32, localhost_ref: localhost_ref.into() })
}

#[tokio::test]
async fn seccomp_runtime_default_unconfined_and_localhost() {
    let bed = Bed::new().await;
    let pod = bed.pod("seccomp").await;
    let script = "grep Seccomp: /proc/self/status";

    let mut config = sh("default", &bed.busybox, script);
    security_context(&mut config).seccomp = profile(ProfileType::RuntimeDefault, "");
    assert_eq!(status_field(&output(&bed, &pod, config).await, "Seccomp"), "2", "a filter is installed");

    let mut config = sh("unconfined", &bed.busybox, script);
    security_context(&mut config).seccomp = profile(ProfileType::Unconfined, "");
    assert_eq!(status_field(&output(&bed, &pod, config).await, "Seccomp"), "0");

    let file = bed.berth.dir().join("no-mkdir.json");
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
    });
    std::fs::write(&file, json.to_string()).unwrap();
    let mut config = sh(
        "localhost",
        &bed.busybox,
        "grep Seccomp: /proc/self/status; if mkdir /tmp/made; then echo made; else echo refused; fi",
    );
    security_context(&mut config).seccomp = profile(ProfileType::Localhost, &file.display().to_string());
    let log = pod.log_path(&config);
    let lines = output(&bed, &pod, config).await;
    assert_eq!(status_field(&lines, "Seccomp"), "2");
    assert_eq!(lines.last().unwrap(), "refused", "{lines:?}");
    let errors = log_lines_of(&log, "stderr").join("\n");
    assert!(errors.contains("Operation not permitted"), "{errors}");

    // A process exec'd into the container gets the container's filter too.
    let mut config = sh("exec-default", &bed.busybox, "sleep 1000");
    security_context(&mut config).seccomp = profile(ProfileType::Localhost, &file.display().to_string());
    let id = bed.run(&pod, config).await;
    let reply = bed.exec(&id, &["sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/made"], 30).await.unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&reply.stdout).lines().map(str::to_string).collect();
    assert_eq!(status_field(&lines, "Seccomp"), "2", "{reply:?}");
    assert_ne!(reply.exit_code, 0, "mkdir refused in the exec'd process: {reply:?}");
    // With the capabilities of the container's own process, no more.
    let script = "grep -E '^Cap(Bnd|Prm|Eff)' /proc/self/status; grep -E '^Cap(Bnd|Prm|Eff)' /proc/1/status";
    let reply = bed.exec(&id, &["sh", "-c", script], 30).await.unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&reply.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 6, "{reply:?}");
    assert_eq!(lines[..3], lines[3..], "exec'd process vs the container's init");

    // A profile that does not exist is refused at create.
    let mut config = sh("missing", &bed.busybox, script);
    let missing = bed.berth.dir().join("missing.json").display().to_string();
    security_context(&mut config).seccomp = profile(ProfileType::Localhost, &missing);
    let err = bed.create(&pod, config).await.unwrap_err();
    assert!(err.message().contains("missing.json"), "{err:?}");
}

#[tokio::test]
async fn masked_and_read_only_proc_paths() {
    let bed = Bed::new().await;
    let pod = bed.pod("masked").await;
    // Some kernels (this VM's) have no /proc/kcore: the first masked file that
    // has content on the host is the one to read.
    let masked = ["/proc/kcore", "/proc/timer_list", "/proc/keys"]
        .into_iter()
        .find(|path| {
            std::fs::File::open(path)
                .is_ok_and(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]).is_ok_and(|n| n == 1))
        })
        .expect("a masked /proc file with content on the host");
    assert!(std::fs::read_dir("/sys/firmware").unwrap().count() > 0, "/sys/firmware has entries on the host");
    // kernel.shmmni belongs to the pod's IPC namespace: harmless if the write went through.
    let script = format!(
        "wc -c < {masked}; ls -A /sys/firmware | wc -l; \
         if echo 4096 > /proc/sys/kernel/shmmni; then echo sys-writable; else echo sys-refused; fi"
    );
    let config = sh("masked", &bed.busybox, &script);
    let log = pod.log_path(&config);
    let lines = output(&bed, &pod, config).await;
    let errors = log_lines_of(&log, "stderr");
    assert_eq!(lines, ["0", "0", "sys-refused"], "{masked} and /sys/firmware masked, /proc/sys read-only; {errors:?}");
}

#[tokio::test]
async fn a_read_only_rootfs_keeps_kubelet_mounts_writable() {
    let bed = Bed::new().await;
    let pod = bed.pod("rorootfs").await;
    let host_dir = bed.berth.dir().join("volume");
    std::fs::create_dir_all(&host_dir).unwrap();
    let script = "if touch /written; then echo root-writable; else echo root-refused; fi; \
        if echo hello > /data/written; then echo volume-writable; else echo volume-refused; fi";
    let mut config = sh("ro", &bed.busybox, script);
    config.mounts =
        vec![Mount { container_path: "/data".into(), host_path: host_dir.display().to_string(), ..Default::default() }];
    security_context(&mut config).readonly_rootfs = true;
    let lines = output(&bed, &pod, config).await;
    assert_eq!(lines, ["root-refused", "volume-writable"]);
    assert_eq!(std::fs::read_to_string(host_dir.join("written")).unwrap(), "hello\n");
}
