//! berth killed (SIGKILL) in the middle of a call, at a step held open by a
//! hanging runc or CNI plugin, then started again: it serves, and the host is as
//! it was before the call (`Footprint`), its start-up repair having removed what
//! the interrupted call had made.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::cri::v1::{ContainerState, RunPodSandboxRequest};

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, host_pod_config, sh, unique, wait_gone};
use crate::support::faults::{self, Fault, Wrapper};
use crate::support::footprint::{CgroupParent, Footprint};
use crate::support::pods::pod_config;

/// Only a guard against a hang: every wait here ends on an event.
const HANG_GUARD: Duration = Duration::from_secs(60);

/// Waits until the wrapper has hung a process: the call is at that step.
async fn wait_hung(wrapper: &Wrapper) {
    let deadline = Instant::now() + HANG_GUARD;
    while wrapper.hung_pids().is_empty() {
        assert!(Instant::now() < deadline, "the call never reached the faulty step");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `call` on a task of its own until `wrapper` has hung it, then SIGKILLs
/// berth: the call dies with berth in the middle of that step.
async fn kill_berth_during<T: Send + 'static>(
    berth: &mut Berth,
    wrapper: &Wrapper,
    call: impl Future<Output = T> + Send + 'static,
) {
    let call = tokio::spawn(call);
    wait_hung(wrapper).await;
    berth.kill();
    let _ = call.await;
}

/// Waits for the footprint to settle back to `before` (processes of the
/// interrupted call end on their own bounds), then asserts it.
async fn assert_settles(before: &Footprint, now: impl AsyncFn() -> Footprint) {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        let footprint = now().await;
        if footprint == *before || Instant::now() > deadline {
            assert_eq!(footprint, *before);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn berth_killed_while_runc_create_hangs_restarts_with_no_half_made_container() {
    let wrapper = Arc::new(faults::runtime("create", Fault::Hang, 1));
    let config = faults::runtime_handler("faulty", &wrapper, Duration::from_secs(2));
    let cgroup_parent = format!("/berth-test-crash-{}-{}", std::process::id(), unique());
    let _cgroups = CgroupParent(cgroup_parent.clone());
    let mut bed = Bed::with(Berth::builder().config(&config)).await;
    let mut pod_config = host_pod_config("crash");
    pod_config.linux.get_or_insert_with(Default::default).cgroup_parent = cgroup_parent.clone();
    let pod = bed.pod_with(pod_config, "faulty").await.expect("RunPodSandbox");
    let before = Footprint::of(&bed.berth, None, &cgroup_parent).await;
    let container = sh("app", &bed.busybox, "sleep 1000");

    let request = pod.create_request(container.clone());
    std::fs::create_dir_all(pod.log_path(&container).parent().expect("log dir")).expect("log dir");
    let mut client = bed.berth.runtime().await;
    kill_berth_during(&mut bed.berth, &wrapper, async move { client.create_container(request).await }).await;
    // The monitor outlives berth, still bounds its runc, and deletes what it made.
    for pid in wrapper.hung_pids() {
        wait_gone(pid).await;
    }
    bed.berth.restart().await;
    assert_settles(&before, || Footprint::of(&bed.berth, None, &cgroup_parent)).await;

    let id = bed.create(&pod, container).await.expect("the same create succeeds after the restart");
    bed.start(&id).await.expect("StartContainer");
    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerRunning);
}

/// The bridge plugin has made the veth and taken an IP when the next plugin
/// hangs and berth dies: the restarted berth's repair must DEL them.
#[tokio::test]
async fn berth_killed_mid_cni_add_restarts_with_no_leaked_network() {
    let network = TestNetwork::new();
    let plugin = faults::cni_plugin("portmap", "ADD", Fault::Hang, 1);
    let mut berth = Berth::builder().cni_bin_dir(plugin.dir()).cni_conflist(&network.conflist()).start().await;
    let before = Footprint::of(&berth, Some(&network), "").await;

    let request = RunPodSandboxRequest { config: Some(pod_config("crash-net")), runtime_handler: String::new() };
    let (mut client, call) = (berth.runtime().await, request.clone());
    kill_berth_during(&mut berth, &plugin, async move { client.run_pod_sandbox(call).await }).await;
    assert_eq!(network.allocated_ips().len(), 1, "the bridge had taken an IP when berth died");
    drop(plugin);
    berth.restart().await;
    assert_settles(&before, || Footprint::of(&berth, Some(&network), "")).await;

    berth.runtime().await.run_pod_sandbox(request).await.expect("the same pod runs after the restart");
}

/// berth dies while runc start hangs: the restarted berth reports the container
/// as it is (created, not started), and kubelet's StartContainer runs it.
#[tokio::test]
async fn berth_killed_while_runc_start_hangs_reports_the_truth_and_the_retry_starts() {
    let wrapper = Arc::new(faults::runtime("start", Fault::Hang, 1));
    let config = faults::runtime_handler("faulty", &wrapper, Duration::from_secs(60));
    let mut bed = Bed::with(Berth::builder().config(&config)).await;
    let pod = bed.pod_with(host_pod_config("crash-start"), "faulty").await.expect("RunPodSandbox");
    let id = bed.create(&pod, sh("app", &bed.busybox, "sleep 1000")).await.expect("CreateContainer");

    let mut client = bed.berth.runtime().await;
    let request = berth::cri::v1::StartContainerRequest { container_id: id.clone() };
    kill_berth_during(&mut bed.berth, &wrapper, async move { client.start_container(request).await }).await;
    bed.berth.restart().await;

    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerCreated);
    bed.start(&id).await.expect("StartContainer after the restart");
    assert_eq!(bed.status(&id).await.state(), ContainerState::ContainerRunning);
}

/// berth dies while a pod's CNI DEL hangs: the pod's network is still there,
/// and kubelet's StopPodSandbox after the restart releases all of it.
#[tokio::test]
async fn berth_killed_mid_cni_del_leaves_the_stop_to_the_retry() {
    let network = TestNetwork::new();
    let plugin = faults::cni_plugin("bridge", "DEL", Fault::Hang, 1);
    let mut berth = Berth::builder().cni_bin_dir(plugin.dir()).cni_conflist(&network.conflist()).start().await;
    let before = Footprint::of(&berth, Some(&network), "").await;
    let request = RunPodSandboxRequest { config: Some(pod_config("crash-del")), runtime_handler: String::new() };
    let pod = berth.runtime().await.run_pod_sandbox(request).await.expect("RunPodSandbox").into_inner().pod_sandbox_id;

    let stop = berth::cri::v1::StopPodSandboxRequest { pod_sandbox_id: pod.clone() };
    let (mut client, call) = (berth.runtime().await, stop.clone());
    kill_berth_during(&mut berth, &plugin, async move { client.stop_pod_sandbox(call).await }).await;
    drop(plugin);
    berth.restart().await;

    berth.runtime().await.stop_pod_sandbox(stop).await.expect("StopPodSandbox after the restart");
    let remove = berth::cri::v1::RemovePodSandboxRequest { pod_sandbox_id: pod };
    berth.runtime().await.remove_pod_sandbox(remove).await.expect("RemovePodSandbox");
    assert_settles(&before, || Footprint::of(&berth, Some(&network), "")).await;
}
