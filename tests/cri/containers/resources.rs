//! Cgroup limits: memory and CPU in the container's cgroup files, changed by
//! UpdateContainerResources, and a memory hog killed by the OOM killer.

use berth::cri::v1::{LinuxContainerResources, NamespaceMode, UpdateContainerResourcesRequest};

use crate::support::containers::{
    Bed, cgroup_file, host_namespace_options, host_pod_config, log_lines, read_trimmed, sh, wait_for_line,
};

const MIB: i64 = 1024 * 1024;

#[tokio::test]
async fn memory_and_cpu_limits_are_in_the_cgroup_and_can_be_updated() {
    let bed = Bed::new().await;
    let pod = bed.pod("limits").await;
    // cgroup v1 without a cgroup namespace: runc mounts the container's own
    // cgroup at /sys/fs/cgroup/<controller>.
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; echo ready; sleep 1000";
    let mut config = sh("limited", &bed.busybox, script);
    config.linux.get_or_insert_with(Default::default).resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 64 * MIB,
        cpu_shares: 512,
        cpu_quota: 50_000,
        cpu_period: 100_000,
        ..Default::default()
    });
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    wait_for_line(&log, "ready").await;
    assert_eq!(log_lines(&log)[0], (64 * MIB).to_string(), "the limit seen from inside");

    let path = bed.cgroups_path(&id).await;
    assert!(path.contains(&id), "{path}");
    let memory = cgroup_file(&path, "memory.limit_in_bytes");
    assert_eq!(read_trimmed(&memory), (64 * MIB).to_string());
    assert_eq!(read_trimmed(&cgroup_file(&path, "cpu.shares")), "512");
    assert_eq!(read_trimmed(&cgroup_file(&path, "cpu.cfs_quota_us")), "50000");
    assert_eq!(read_trimmed(&cgroup_file(&path, "cpu.cfs_period_us")), "100000");
    let pid = bed.pid(&id).await;
    let procs = read_trimmed(&cgroup_file(&path, "cgroup.procs"));
    assert!(procs.lines().any(|p| p == pid.to_string()), "pid {pid} in the cgroup: {procs}");

    let request = UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 128 * MIB,
            cpu_shares: 256,
            ..Default::default()
        }),
        ..Default::default()
    };
    bed.berth.runtime().await.update_container_resources(request).await.unwrap();
    assert_eq!(read_trimmed(&memory), (128 * MIB).to_string());
    assert_eq!(read_trimmed(&cgroup_file(&path, "cpu.shares")), "256");
    let status = bed.status(&id).await;
    let reported = status.resources.and_then(|r| r.linux).map(|l| l.memory_limit_in_bytes);
    assert_eq!(reported, Some(128 * MIB), "ContainerStatus reports the new limit");

    bed.stop(&id, 0).await.unwrap();
    bed.remove(&id).await.unwrap();
    assert!(!memory.parent().unwrap().exists(), "the cgroup is removed with the container");
}

/// In a pod that shares one PID namespace, the container's PID there is not
/// its PID on the host: /sys/fs/cgroup must still show the container's own
/// cgroups, read-only, not another process's or none.
#[tokio::test]
async fn the_cgroup_mount_shows_the_containers_own_cgroups_in_a_shared_pid_namespace() {
    let bed = Bed::new().await;
    let mut pod_config = host_pod_config("shared-pid-cgroups");
    let options = pod_config.linux.as_mut().and_then(|linux| linux.security_context.as_mut()).unwrap();
    options.namespace_options = Some(berth::cri::v1::NamespaceOption {
        pid: NamespaceMode::Pod as i32,
        ..host_namespace_options()
    });
    let pod = bed.pod_with(pod_config, "").await.unwrap();
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
        grep -qx $$ /sys/fs/cgroup/memory/cgroup.procs && echo in-own-cgroup; \
        if echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes; then echo writable; else echo read-only; fi";
    let mut config = sh("reader", &bed.busybox, script);
    config.linux.get_or_insert_with(Default::default).resources =
        Some(LinuxContainerResources { memory_limit_in_bytes: 48 * MIB, ..Default::default() });
    let log = pod.log_path(&config);
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    assert_eq!(log_lines(&log), [(48 * MIB).to_string().as_str(), "in-own-cgroup", "read-only"]);
}

#[tokio::test]
async fn a_memory_hog_is_oom_killed() {
    let bed = Bed::new().await;
    let pod = bed.pod("oom").await;
    // dd reads 64 MiB from /dev/zero into one buffer: far over a 16 MiB limit.
    let mut config = sh("hog", &bed.busybox, "dd if=/dev/zero of=/dev/null bs=64M count=4");
    config.linux.get_or_insert_with(Default::default).resources =
        Some(LinuxContainerResources { memory_limit_in_bytes: 16 * MIB, ..Default::default() });
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.reason, "OOMKilled", "{exited:?}");
    assert_eq!(exited.exit_code, 137, "{exited:?}");
}
