//! Failure injection: runc, a CNI plugin and the registry fail or hang at one
//! step, through the wrappers of `support/faults.rs` and the registry proxy.
//! After each failure the host is as it was before the call (`Footprint`), the
//! error names the step that failed, and the same call succeeds on retry.

use std::time::Duration;

use berth::cri::v1::{ContainerState, PodSandboxConfig, PullImageRequest, RunPodSandboxRequest, StopPodSandboxRequest};
use tonic::Code;

use crate::support::berth::Berth;
use crate::support::cni::TestNetwork;
use crate::support::containers::{Bed, host_pod_config, image_spec, process_alive, sh, unique, wait_gone};
use crate::support::faults::{self, Fault, Wrapper};
use crate::support::footprint::{CgroupParent, Footprint};
use crate::support::pods::pod_config;

/// The bound the tests give the runtime's commands, so a hang fails in seconds.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(2);

/// A bed whose handler `faulty` is `wrapper`, and a pod on it under a cgroup
/// parent of the test's own (removed on drop).
struct Faulty {
    bed: Bed,
    pod: crate::support::containers::Pod,
    // Dropped after the bed, whose berth may still call it, and whose pods use it.
    cgroup_parent: CgroupParent,
    _wrapper: std::sync::Arc<Wrapper>,
}

impl Faulty {
    async fn new(wrapper: std::sync::Arc<Wrapper>) -> Faulty {
        let config = faults::runtime_handler("faulty", &wrapper, RUNTIME_TIMEOUT);
        let bed = Bed::with(Berth::builder().config(&config)).await;
        let cgroup_parent = format!("/berth-test-rollback-{}-{}", std::process::id(), unique());
        let mut pod_config: PodSandboxConfig = host_pod_config("faulty");
        pod_config.linux.get_or_insert_with(Default::default).cgroup_parent = cgroup_parent.clone();
        let pod = bed.pod_with(pod_config, "faulty").await.expect("RunPodSandbox on the faulty handler");
        Faulty { bed, pod, cgroup_parent: CgroupParent(cgroup_parent), _wrapper: wrapper }
    }

    async fn footprint(&self) -> Footprint {
        Footprint::of(&self.bed.berth, None, &self.cgroup_parent.0).await
    }
}

fn assert_names_step(status: &tonic::Status, step: &str) {
    assert!(status.message().contains(step), "the error should name {step:?}: {status:?}");
}

/// CreateContainer through a runc that faults at `create` once: the call fails
/// naming the step (`check` looks further), nothing is left once the hung runc
/// is gone, and kubelet's retry runs the container.
async fn create_through(fault: Fault, check: impl FnOnce(&tonic::Status)) {
    let wrapper = std::sync::Arc::new(faults::runtime("create", fault, 1));
    let t = Faulty::new(wrapper.clone()).await;
    let before = t.footprint().await;
    let config = sh("app", &t.bed.busybox, "sleep 1000");

    let error = t.bed.create(&t.pod, config.clone()).await.expect_err("the injected fault fails the create");
    assert_eq!(wrapper.injected(), 1);
    assert_names_step(&error, "create");
    check(&error);
    for pid in wrapper.hung_pids() {
        wait_gone(pid).await;
    }
    assert_eq!(t.footprint().await, before);

    let id = t.bed.create(&t.pod, config).await.expect("the retry creates the container");
    t.bed.start(&id).await.expect("and it starts");
    assert_eq!(t.bed.status(&id).await.state(), ContainerState::ContainerRunning);
}

#[tokio::test]
async fn a_create_that_runc_refuses_leaves_nothing_and_the_retry_runs() {
    create_through(Fault::Fail, |error| assert_names_step(error, "injected failure at runc create")).await;
}

#[tokio::test]
async fn a_create_that_hangs_is_killed_at_its_bound_leaves_nothing_and_the_retry_runs() {
    create_through(Fault::Hang, |error| assert_eq!(error.code(), Code::Unavailable, "{error:?}")).await;
}

/// runc made the container, then never answered: the late result (a created
/// container, its init waiting) is deleted, not left to run unknown to berth.
#[tokio::test]
async fn a_create_whose_answer_comes_too_late_leaves_no_orphan_container() {
    create_through(Fault::HangAfter, |error| assert_eq!(error.code(), Code::Unavailable, "{error:?}")).await;
}

#[tokio::test]
async fn a_start_that_runc_refuses_is_reported_and_leaves_no_process() {
    let wrapper = std::sync::Arc::new(faults::runtime("start", Fault::Fail, 1));
    let t = Faulty::new(wrapper.clone()).await;
    let id = t.bed.create(&t.pod, sh("app", &t.bed.busybox, "sleep 1000")).await.expect("create");
    let init = t.bed.pid(&id).await;

    let error = t.bed.start(&id).await.expect_err("the injected start failure");
    assert_names_step(&error, "start");
    assert_names_step(&error, "injected failure at runc start");
    // As on containerd: the container is done (kubelet removes it and creates
    // anew), and its init, waiting to exec, is not left behind.
    let status = t.bed.wait_exited(&id).await;
    assert_eq!(status.reason, "StartError", "{status:?}");
    wait_gone(init).await;
    assert!(!process_alive(init));

    t.bed.remove(&id).await.expect("RemoveContainer after the failed start");
    let id = t.bed.create(&t.pod, sh("app", &t.bed.busybox, "sleep 1000")).await.expect("create again");
    t.bed.start(&id).await.expect("the new container starts");
}

/// A plugin chained after the bridge fails its ADD: the bridge's veth, its IP
/// and the netns pins all go, and kubelet's retry gets a pod.
#[tokio::test]
async fn a_pod_whose_cni_add_fails_leaves_no_network_behind_and_the_retry_runs() {
    let network = TestNetwork::new();
    let plugin = faults::cni_plugin("portmap", "ADD", Fault::Fail, 1);
    let berth = Berth::builder().cni_bin_dir(plugin.dir()).cni_conflist(&network.conflist()).start().await;
    let before = Footprint::of(&berth, Some(&network), "").await;
    let request = RunPodSandboxRequest { config: Some(pod_config("cni-add")), runtime_handler: String::new() };

    let error = berth.runtime().await.run_pod_sandbox(request.clone()).await.expect_err("the injected ADD failure");
    assert_eq!(plugin.injected(), 1);
    assert_names_step(&error, "portmap");
    assert_eq!(Footprint::of(&berth, Some(&network), "").await, before);

    let pod = berth.runtime().await.run_pod_sandbox(request).await.expect("the retry gets a pod").into_inner();
    assert_eq!(network.allocated_ips().len(), 1);
    let stop = StopPodSandboxRequest { pod_sandbox_id: pod.pod_sandbox_id.clone() };
    berth.runtime().await.stop_pod_sandbox(stop).await.expect("StopPodSandbox");
    assert!(network.allocated_ips().is_empty());
}

#[tokio::test]
async fn a_pod_whose_cni_add_hangs_is_failed_at_the_plugin_bound_and_leaves_nothing() {
    let network = TestNetwork::new();
    let plugin = faults::cni_plugin("portmap", "ADD", Fault::Hang, 1);
    let berth = Berth::builder()
        .cni_config("plugin_timeout = \"2s\"")
        .cni_bin_dir(plugin.dir())
        .cni_conflist(&network.conflist())
        .start()
        .await;
    let before = Footprint::of(&berth, Some(&network), "").await;
    let request = RunPodSandboxRequest { config: Some(pod_config("cni-hang")), runtime_handler: String::new() };

    let error = berth.runtime().await.run_pod_sandbox(request.clone()).await.expect_err("the hung ADD fails");
    assert_names_step(&error, "portmap");
    for pid in plugin.hung_pids() {
        wait_gone(pid).await;
    }
    assert_eq!(Footprint::of(&berth, Some(&network), "").await, before);
    berth.runtime().await.run_pod_sandbox(request).await.expect("the retry gets a pod");
}

/// A DEL that fails keeps what kubelet's retry needs to finish the job: the
/// retry releases the IP and the rules.
#[tokio::test]
async fn a_stop_whose_cni_del_fails_is_finished_by_the_retry() {
    let network = TestNetwork::new();
    let plugin = faults::cni_plugin("bridge", "DEL", Fault::Fail, 1);
    let berth = Berth::builder().cni_bin_dir(plugin.dir()).cni_conflist(&network.conflist()).start().await;
    let before = Footprint::of(&berth, Some(&network), "").await;
    let request = RunPodSandboxRequest { config: Some(pod_config("cni-del")), runtime_handler: String::new() };
    let pod = berth.runtime().await.run_pod_sandbox(request).await.expect("RunPodSandbox").into_inner();
    let stop = StopPodSandboxRequest { pod_sandbox_id: pod.pod_sandbox_id.clone() };

    let error = berth.runtime().await.stop_pod_sandbox(stop.clone()).await.expect_err("the injected DEL failure");
    assert_names_step(&error, "bridge");
    assert_eq!(network.allocated_ips().len(), 1, "the failed DEL kept its IP");

    berth.runtime().await.stop_pod_sandbox(stop).await.expect("the retry stops the pod");
    let remove = berth::cri::v1::RemovePodSandboxRequest { pod_sandbox_id: pod.pod_sandbox_id };
    berth.runtime().await.remove_pod_sandbox(remove).await.expect("RemovePodSandbox");
    assert_eq!(Footprint::of(&berth, Some(&network), "").await, before);
}

/// The registry answers each step of a pull with a server error once: the
/// error names the step, no partial snapshot stays, and the retry pulls.
#[tokio::test]
async fn a_pull_failing_at_each_step_leaves_no_partial_image_and_the_retry_pulls() {
    use crate::support::image::ImageBuilder;
    use crate::support::proxy::{RegistryProxy, Rule};
    use crate::support::registry::Registry;

    let registry = Registry::start().await;
    ImageBuilder::busybox().build().push(&registry, "test/steps", "latest").await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let berth = Berth::builder().config(&crate::support::containers::plain_http(&proxy.host())).start().await;
    let reference = format!("{}/test/steps:latest", proxy.host());
    let snapshots = berth.paths.state_root.join("snapshots");
    let pull = PullImageRequest { image: Some(image_spec(&reference)), auth: None, sandbox_config: None };

    for (step, path) in [("manifest", "/manifests/"), ("blob", "/blobs/")] {
        proxy.set_rule(Rule::Respond {
            path_contains: path.into(),
            status: 500,
            content_type: "text/plain".into(),
            body: b"injected failure".to_vec(),
        });
        let error = berth.images().await.pull_image(pull.clone()).await.expect_err("the injected registry failure");
        assert!(error.message().contains(step), "the error should name the {step}: {error:?}");
        let left: Vec<_> =
            std::fs::read_dir(&snapshots).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "the failed pull left {left:?}");
    }
    proxy.set_rule(Rule::PassThrough);
    let pulled = berth.images().await.pull_image(pull).await.expect("the retry pulls").into_inner();
    assert!(pulled.image_ref.starts_with("sha256:"), "{pulled:?}");
}

/// A registry that answers the config blob with far more than its descriptor's
/// size is cut off at that size, as the bytes arrive: the error says so, where a
/// check after buffering the whole body could only report a digest mismatch.
#[tokio::test]
async fn a_config_blob_longer_than_its_descriptor_is_cut_off_while_it_arrives() {
    use crate::support::image::ImageBuilder;
    use crate::support::proxy::{RegistryProxy, Rule};
    use crate::support::registry::Registry;

    let registry = Registry::start().await;
    let image = ImageBuilder::busybox().build();
    image.push(&registry, "test/long-config", "latest").await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let berth = Berth::builder().config(&crate::support::containers::plain_http(&proxy.host())).start().await;
    proxy.set_rule(Rule::Respond {
        path_contains: image.config_digest.clone(),
        status: 200,
        content_type: "application/octet-stream".into(),
        body: vec![b' '; 64 << 20],
    });
    let reference = format!("{}/test/long-config:latest", proxy.host());
    let pull = PullImageRequest { image: Some(image_spec(&reference)), auth: None, sandbox_config: None };
    let error = berth.images().await.pull_image(pull).await.expect_err("the oversized config is refused");
    let expected = format!("more than the {} bytes expected", image.config.len());
    assert!(error.message().contains(&expected), "{error:?}");
}

/// A "manifest" that never ends is refused once it passes the manifest limit
/// (16 MiB), as it arrives: buffered whole, it would grow until the pull fails as
/// stalled (the body is paced so that this takes only a few hundred MiB).
#[tokio::test]
async fn an_endless_manifest_is_refused_at_its_limit_not_buffered() {
    use crate::support::proxy::{RegistryProxy, Rule};
    use crate::support::registry::Registry;

    let registry = Registry::start().await;
    let proxy = RegistryProxy::start(&registry.url()).await;
    let config =
        format!("[images]\nstall_timeout = \"10s\"\n{}", crate::support::containers::plain_http(&proxy.host()));
    let berth = Berth::builder().config(&config).start().await;
    proxy.set_rule(Rule::RespondEndless {
        path_contains: "/manifests/".into(),
        content_type: "application/vnd.oci.image.manifest.v1+json".into(),
        bytes_per_sec: 32 << 20,
    });
    let reference = format!("{}/test/endless:latest", proxy.host());
    let pull = PullImageRequest { image: Some(image_spec(&reference)), auth: None, sandbox_config: None };
    let error = berth.images().await.pull_image(pull).await.expect_err("the endless manifest is refused");
    assert!(error.message().contains("larger than"), "{error:?}");
}

/// StopPodSandbox kills the pod's containers first: runc's kill failing once
/// fails the stop, naming the step, and kubelet's retry stops everything.
#[tokio::test]
async fn a_stop_whose_runc_kill_fails_is_finished_by_the_retry() {
    let wrapper = std::sync::Arc::new(faults::runtime("kill", Fault::Fail, 1));
    let t = Faulty::new(wrapper.clone()).await;
    let id = t.bed.run(&t.pod, sh("app", &t.bed.busybox, "sleep 1000")).await;
    let init = t.bed.pid(&id).await;

    let stop = StopPodSandboxRequest { pod_sandbox_id: t.pod.id.clone() };
    let error =
        t.bed.berth.runtime().await.stop_pod_sandbox(stop.clone()).await.expect_err("the injected kill failure");
    assert_eq!(wrapper.injected(), 1);
    assert_names_step(&error, "kill");
    t.bed.berth.runtime().await.stop_pod_sandbox(stop).await.expect("the retry stops the pod");
    wait_gone(init).await;
    assert_eq!(t.bed.status(&id).await.state(), ContainerState::ContainerExited);
}
