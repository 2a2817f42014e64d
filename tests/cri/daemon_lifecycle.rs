//! The daemon's life: one per socket and state root, clean shutdown, stale sockets.
//! Every berth here runs on a test's own directories, and one expected to exit
//! is killed, failing its test, if it serves instead.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use berth::cri::v1::VersionRequest;
use nix::sys::signal::Signal;

use crate::support::berth::{Berth, output_within};

#[tokio::test]
async fn socket_and_its_directory_have_the_documented_modes() {
    let berth = Berth::start().await;
    let socket = std::fs::metadata(&berth.paths.socket).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o777, 0o660);
    let dir = std::fs::metadata(berth.paths.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o711);
}

#[tokio::test]
async fn a_second_instance_on_the_same_socket_is_refused() {
    let berth = Berth::start().await;
    let output = output_within(berth.command().arg("serve"));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("in use") || stderr.contains("already served"), "{stderr}");
    // The first one is untouched and still serving.
    berth.runtime().await.version(VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn a_second_instance_on_another_socket_but_the_same_state_is_refused() {
    let berth = Berth::start().await;
    let other_socket = berth.dir().join("other.sock");
    let output = output_within(berth.command().arg("serve").arg("--socket").arg(&other_socket));
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another berth"));
    assert!(!other_socket.exists());
}

#[tokio::test]
async fn sigterm_removes_the_sockets_and_exits_zero() {
    let mut berth = Berth::start().await;
    assert!(berth.paths.nri_socket.exists(), "NRI is served");
    let status = berth.stop().unwrap();
    assert!(status.success(), "{status:?}\n{}", berth.log());
    assert!(!berth.paths.socket.exists());
    assert!(!berth.paths.nri_socket.exists(), "the NRI socket goes too");
    assert!(berth.log().contains("SIGTERM"));
}

#[tokio::test]
async fn sigint_shuts_down_too() {
    let mut berth = Berth::start().await;
    berth.signal(Signal::SIGINT);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while berth.paths.socket.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!berth.paths.socket.exists(), "{}", berth.log());
    assert!(berth.stop().unwrap().success());
}

#[tokio::test]
async fn a_stale_socket_left_by_a_killed_berth_is_replaced() {
    let mut berth = Berth::start().await;
    berth.kill();
    assert!(berth.paths.socket.exists(), "SIGKILL leaves the socket file behind");
    berth.restart().await;
    berth.runtime().await.version(VersionRequest::default()).await.unwrap();
    assert!(berth.log().contains("removing stale socket"));
}

#[tokio::test]
async fn json_log_format_writes_one_json_object_per_line() {
    let mut berth = Berth::builder().config("[log]\nformat = \"json\"").start().await;
    berth.runtime().await.version(VersionRequest::default()).await.unwrap();
    berth.stop();
    let log = berth.log();
    let lines: Vec<serde_json::Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect();
    assert!(lines.iter().any(|l| l["rpc"] == "Version" && l["code"] == "Ok"), "{log}");
}
