//! Image volumes (kubelet's ImageVolume feature): an image mounted read-only
//! into a container, whole or by a sub path, held while mounted, reported in
//! ContainerStatus with its image ID, and refused clearly when asked wrongly.

use berth::cri::v1::{ImageSpec, ImageStatusRequest, Mount, RemoveImageRequest};
use tonic::Code;

use crate::support::containers::{Bed, container, log_lines, mounts_mentioning, sh};
use crate::support::image::{Compression, ImageBuilder, Layer};

/// Two layers, the top one replacing a file of the bottom one, a link that
/// points at an absolute path (which must stay inside the image), and an
/// executable from the busybox layer.
fn data_image() -> ImageBuilder {
    ImageBuilder::busybox()
        .layer(
            Layer::new()
                .file("etc/app.conf", "base\n", 0o644)
                .file("docs/readme", "v1\n", 0o644)
                .symlink("config", "/etc"),
            Compression::Gzip,
        )
        .layer(Layer::new().file("docs/readme", "v2\n", 0o644), Compression::Gzip)
}

fn image_mount(container_path: &str, image: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: container_path.into(),
        readonly: true,
        image: Some(ImageSpec { image: image.into(), user_specified_image: image.into(), ..Default::default() }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

async fn image_id(bed: &Bed, image: &str) -> String {
    let request = ImageStatusRequest { image: Some(ImageSpec { image: image.into(), ..Default::default() }), verbose: false };
    let status = bed.berth.images().await.image_status(request).await.unwrap().into_inner();
    status.image.map(|i| i.id).unwrap_or_default()
}

#[tokio::test]
async fn an_image_is_mounted_read_only_whole_or_by_sub_path_and_held_while_mounted() {
    let bed = Bed::new().await;
    let data = bed.image("volume-data", data_image()).await;
    let data_id = image_id(&bed, &data).await;
    let pod = bed.pod("image-volumes").await;

    let script = "cat /data/docs/readme; cat /conf/app.conf; cat /linked/app.conf; \
        if touch /data/new 2>/dev/null; then echo writable; else echo read-only; fi; \
        /data/bin/busybox echo runs-from-the-volume; \
        if ! touch /tools/new 2>/dev/null && /tools/bin/busybox true; then echo one-layer-bound-read-only; fi; \
        test -e /conf/etc && echo sub-path-ignored || echo sub-path-applied; \
        exec sleep 1000";
    let mut config = sh("volumes", &bed.busybox, script);
    config.mounts = vec![
        image_mount("/data", &data, ""),
        image_mount("/conf", &data, "etc"),
        image_mount("/linked", &data, "config"),
        image_mount("/tools", &bed.busybox, ""),
    ];
    let log = pod.log_path(&config);
    let id = bed.run(&pod, config).await;
    crate::support::containers::wait_for_line(&log, "sub-path-applied").await;
    assert_eq!(
        log_lines(&log),
        ["v2", "base", "base", "read-only", "runs-from-the-volume", "one-layer-bound-read-only", "sub-path-applied"],
        "the top layer wins, sub paths and links resolve inside the image, nothing is written"
    );

    let status = bed.status(&id).await;
    let reported: Vec<(String, String)> = status
        .mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.image.as_ref().map(|i| i.image_ref.clone()).unwrap_or_default()))
        .collect();
    assert_eq!(
        reported,
        [
            ("/data".into(), data_id.clone()),
            ("/conf".into(), data_id.clone()),
            ("/linked".into(), data_id.clone()),
            ("/tools".into(), image_id(&bed, &bed.busybox).await),
        ]
    );

    // Removing the image while it is mounted leaves the volume whole.
    let remove = RemoveImageRequest { image: Some(ImageSpec { image: data.clone(), ..Default::default() }) };
    bed.berth.images().await.remove_image(remove).await.unwrap();
    assert_eq!(image_id(&bed, &data).await, "", "the image is gone from the catalog");
    let read = bed.exec(&id, &["cat", "/data/docs/readme"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout), "v2\n", "{read:?}");

    assert!(mounts_mentioning(&format!("{id}/image-volumes")).is_empty(), "the container's mount namespace holds them alone");
    bed.stop(&id, 0).await.unwrap();
    bed.remove(&id).await.unwrap();
    assert!(mounts_mentioning(&format!("{id}/image-volumes")).is_empty(), "RemoveContainer unmounts its volumes");
}

#[tokio::test]
async fn wrong_image_volumes_are_refused_by_field_and_leave_nothing_behind() {
    let bed = Bed::new().await;
    let pod = bed.pod("image-volume-refusals").await;
    let refused = |config, field: &'static str| {
        let bed = &bed;
        let pod = &pod;
        async move {
            let error = bed.create(pod, config).await.expect_err(field);
            assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
            assert!(error.message().contains(field), "{field}: {error:?}");
        }
    };

    let mut writable = container("writable", &bed.busybox);
    writable.mounts = vec![Mount { readonly: false, ..image_mount("/data", &bed.busybox, "") }];
    refused(writable, "mounts[0].readonly").await;

    let mut missing = container("missing-sub-path", &bed.busybox);
    missing.mounts = vec![image_mount("/data", &bed.busybox, "not-existing")];
    refused(missing, "mounts[0].image_sub_path").await;

    let mut escaping = container("escaping-sub-path", &bed.busybox);
    escaping.mounts = vec![image_mount("/data", &bed.busybox, "../../etc")];
    refused(escaping, "mounts[0].image_sub_path").await;

    let mut unpulled = container("unpulled", &bed.busybox);
    unpulled.mounts = vec![image_mount("/data", &format!("{}/test/never-pushed:1", bed.registry.host()), "")];
    refused(unpulled, "mounts[0].image.image").await;

    assert!(bed.list_all().await.is_empty(), "no container was made");
    assert!(mounts_mentioning("image-volumes").iter().all(|m| !m.contains(&bed.berth.dir().display().to_string())));
    // The failed creates released their leases: the image goes at once.
    let remove = RemoveImageRequest { image: Some(ImageSpec { image: bed.busybox.clone(), ..Default::default() }) };
    bed.berth.images().await.remove_image(remove).await.unwrap();
    let snapshots = bed.berth.dir().join("state/snapshots");
    let left: Vec<_> = std::fs::read_dir(&snapshots).into_iter().flatten().flatten().map(|e| e.file_name()).collect();
    assert!(left.iter().all(|name| name.to_string_lossy().starts_with('.')), "snapshots left: {left:?}");
}
