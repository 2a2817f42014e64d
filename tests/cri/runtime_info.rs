//! Version, Status, RuntimeConfig and UpdateRuntimeConfig; Unimplemented for CheckpointContainer.

use berth::cri::v1::{
    CgroupDriver, CheckpointContainerRequest, NetworkConfig, RuntimeConfig, RuntimeConfigRequest, StatusRequest,
    UpdateRuntimeConfigRequest, VersionRequest,
};

use crate::support::berth::{Berth, LOOPBACK_CONFLIST};

fn condition(status: &berth::cri::v1::StatusResponse, kind: &str) -> berth::cri::v1::RuntimeCondition {
    status
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.r#type == kind))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition in {status:?}"))
}

#[tokio::test]
async fn version_names_berth_and_cri_v1() {
    let berth = Berth::start().await;
    let v = berth.runtime().await.version(VersionRequest { version: "v1".into() }).await.unwrap().into_inner();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.version, "0.1.0");
}

#[tokio::test]
async fn status_is_ready_with_runtime_and_network() {
    let berth = Berth::builder().runc_handler_only().cni_conflist(LOOPBACK_CONFLIST).start().await;
    let status = berth.runtime().await.status(StatusRequest { verbose: false }).await.unwrap().into_inner();
    let runtime = condition(&status, "RuntimeReady");
    assert!(runtime.status, "{runtime:?}");
    let network = condition(&status, "NetworkReady");
    assert!(network.status, "{network:?}");
    assert!(status.info.is_empty(), "info is verbose-only");
    let names: Vec<_> = status.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["", "runc"], "default handler listed with an empty name, then by name");
}

#[tokio::test]
async fn network_not_ready_without_cni_config_until_one_appears() {
    let berth = Berth::start().await;
    let mut client = berth.runtime().await;
    let status = client.status(StatusRequest::default()).await.unwrap().into_inner();
    let network = condition(&status, "NetworkReady");
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(network.message.contains("no network config"), "{}", network.message);
    assert!(condition(&status, "RuntimeReady").status);

    std::fs::write(berth.paths.cni_conf_dir.join("10-lo.conflist"), LOOPBACK_CONFLIST).unwrap();
    let status = client.status(StatusRequest::default()).await.unwrap().into_inner();
    assert!(condition(&status, "NetworkReady").status, "a config written after start is picked up");
}

#[tokio::test]
async fn network_not_ready_when_a_plugin_is_missing() {
    let conflist = r#"{"cniVersion":"1.0.0","name":"ghost","plugins":[{"type":"loopback"},{"type":"no-such-plugin"}]}"#;
    let berth = Berth::builder().cni_conflist(conflist).start().await;
    let status = berth.runtime().await.status(StatusRequest::default()).await.unwrap().into_inner();
    let network = condition(&status, "NetworkReady");
    assert!(!network.status);
    assert!(network.message.contains("no-such-plugin"), "{}", network.message);
}

#[tokio::test]
async fn runtime_not_ready_when_the_runtime_binary_is_missing_or_broken() {
    for (path, expect) in [("/nonexistent/runc", "not found"), ("/bin/false", "/bin/false --version")] {
        let berth = Berth::builder()
            .runc_handler_only()
            .config(&format!("[runtime.handlers.runc]\npath = {path:?}"))
            .cni_conflist(LOOPBACK_CONFLIST)
            .start()
            .await;
        let status = berth.runtime().await.status(StatusRequest::default()).await.unwrap().into_inner();
        let runtime = condition(&status, "RuntimeReady");
        assert!(!runtime.status, "{path}");
        assert_eq!(runtime.reason, "RuntimeNotReady");
        assert!(runtime.message.contains(expect), "{path}: {}", runtime.message);
        assert!(condition(&status, "NetworkReady").status);
    }
}

#[tokio::test]
async fn verbose_status_carries_the_effective_config_and_pod_cidr() {
    let berth = Berth::builder().config("[images]\nmax_concurrent_downloads = 7").start().await;
    let mut client = berth.runtime().await;
    let request = UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig { network_config: Some(NetworkConfig { pod_cidr: "10.88.0.0/16".into() }) }),
    };
    client.update_runtime_config(request).await.unwrap();

    let status = client.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let config: serde_json::Value = serde_json::from_str(&status.info["config"]).unwrap();
    assert_eq!(config["images"]["max_concurrent_downloads"], 7);
    assert_eq!(config["socket"], berth.paths.socket.display().to_string());
    let network: serde_json::Value = serde_json::from_str(&status.info["network"]).unwrap();
    assert_eq!(network["podCIDR"], "10.88.0.0/16");

    let clear = UpdateRuntimeConfigRequest {
        runtime_config: Some(RuntimeConfig { network_config: Some(NetworkConfig { pod_cidr: String::new() }) }),
    };
    client.update_runtime_config(clear).await.unwrap();
    let status = client.status(StatusRequest { verbose: true }).await.unwrap().into_inner();
    let network: serde_json::Value = serde_json::from_str(&status.info["network"]).unwrap();
    assert!(network["podCIDR"].is_null());
}

#[tokio::test]
async fn runtime_config_reports_the_cgroup_driver() {
    let cgroupfs = Berth::start().await;
    let reply = cgroupfs.runtime().await.runtime_config(RuntimeConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.linux.unwrap().cgroup_driver(), CgroupDriver::Cgroupfs);

    let systemd = Berth::builder().config("cgroup_driver = \"systemd\"").start().await;
    let reply = systemd.runtime().await.runtime_config(RuntimeConfigRequest {}).await.unwrap().into_inner();
    assert_eq!(reply.linux.unwrap().cgroup_driver(), CgroupDriver::Systemd);
}

#[tokio::test]
async fn checkpointing_answers_unimplemented() {
    let berth = Berth::start().await;
    let request = CheckpointContainerRequest { container_id: "c".repeat(64), ..Default::default() };
    let err = berth.runtime().await.checkpoint_container(request).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(err.message().contains("CheckpointContainer"), "{}", err.message());
}
