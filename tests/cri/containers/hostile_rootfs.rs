//! An image's files the runtime mounts over or enters (its /etc/hosts,
//! /etc/resolv.conf, /etc/hostname, the working directory, a mount's target)
//! may be links out of the image or special files. berth reads none of them; the
//! runtime resolves them inside the container's root (as runc's securejoin does
//! for containerd too): the node's files are never written, nothing hangs.

use std::path::Path;

use berth::cri::v1::Mount;

use crate::support::containers::{Bed, log_lines, sh};
use crate::support::image::{Compression, ImageBuilder, Layer};

fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_default()))
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn links_and_special_files_in_the_image_never_reach_the_node() {
    let node = tempfile::tempdir().unwrap();
    let secret = node.path().join("secret");
    std::fs::write(&secret, "the node's\n").unwrap();
    let node_dir = node.path().join("dir");
    std::fs::create_dir(&node_dir).unwrap();
    std::fs::write(node_dir.join("kept"), "the node's\n").unwrap();
    let volume = node.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let before = snapshot(&node_dir);

    let bed = Bed::bare().await;
    let layer = Layer::new()
        .dir("/etc", 0o755)
        .symlink("/etc/hosts", secret.display().to_string())
        .fifo("/etc/resolv.conf", 0o644)
        .char_device("/etc/hostname", 1, 5, 0o644)
        .symlink("/work", node_dir.display().to_string())
        .symlink("/data", node_dir.display().to_string());
    let image = bed.image("hostile-rootfs", ImageBuilder::busybox().layer(layer, Compression::Gzip)).await;
    let pod = bed.pod("hostile-rootfs").await;
    let mut config = sh("app", &image, "pwd; touch x && echo wrote-workdir; ls /data; touch /data/y && echo wrote-data");
    config.working_dir = "/work".into();
    config.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: volume.display().to_string(),
        ..Default::default()
    }];
    let log = pod.log_path(&config);
    let run = async {
        let id = bed.create(&pod, config).await?;
        bed.start(&id).await?;
        Ok::<_, tonic::Status>(bed.wait_exited(&id).await)
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(120), run).await.expect("the container hung");
    let exited = outcome.expect("the container runs");
    assert_eq!(exited.exit_code, 0, "{exited:?}");

    // The links were followed inside the container's root: the working directory
    // and the volume's target are the same directory there, holding the volume.
    let lines = log_lines(&log);
    assert_eq!(lines, [node_dir.display().to_string().as_str(), "wrote-workdir", "x", "wrote-data"]);
    assert!(volume.join("x").exists() && volume.join("y").exists(), "the writes went to the volume");
    assert_eq!(snapshot(&node_dir), before, "the node's directory is untouched");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "the node's\n");
}
