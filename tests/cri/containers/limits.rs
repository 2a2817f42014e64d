//! Valid images at the kernel's limits run, as on containerd: a chain of the 500
//! layers overlayfs stacks, a path as long as PATH_MAX allows, and a layer of many
//! files. One layer more than overlayfs stacks is a clear error at create that
//! leaves no container behind.

use berth::cri::v1::PullImageRequest;
use tonic::Code;

use crate::support::containers::{Bed, image_spec, log_lines, sh};
use crate::support::image::{Compression, ImageBuilder, Layer};

/// 200-byte directory names: 19 of them make a path of about 3.8 KiB, near PATH_MAX.
fn long_path() -> String {
    let segment = "d".repeat(199);
    let mut path = String::new();
    for i in 0..19 {
        path.push_str(&format!("/{segment}{}", i % 10));
    }
    path.push_str("/end.txt");
    path
}

const MANY_FILES: usize = 20_000;

/// busybox, then `extra` layers of one file each (the last also holds the long
/// path and the many files).
fn deep_image(extra: usize) -> ImageBuilder {
    let mut image = ImageBuilder::new().layer(Layer::busybox(), Compression::Gzip).env(["PATH=/bin"]);
    for i in 0..extra {
        let mut layer = Layer::new().file(format!("/layers/{i}"), format!("{i}\n"), 0o644);
        if i + 1 == extra {
            layer = layer.file(long_path(), "at the end of a long path\n", 0o644);
            for n in 0..MANY_FILES {
                layer = layer.file(format!("/many/{n}"), "", 0o644);
            }
        }
        image = image.layer(layer, Compression::None);
    }
    image
}

async fn pull(bed: &Bed, name: &str, image: ImageBuilder) -> String {
    image.build().push(&bed.registry, &format!("test/{name}"), "latest").await;
    let reference = format!("{}/test/{name}:latest", bed.registry.host());
    let request = PullImageRequest { image: Some(image_spec(&reference)), ..Default::default() };
    bed.berth.images().await.pull_image(request).await.unwrap_or_else(|e| panic!("pull {name}: {e:?}"));
    reference
}

#[tokio::test]
async fn an_image_of_500_layers_a_long_path_and_many_files_runs() {
    let bed = Bed::bare().await;
    let reference = pull(&bed, "deep", deep_image(499)).await;
    let pod = bed.pod("deep").await;
    let script = format!(
        "cat /layers/0 /layers/498 \"{}\"; ls /many | wc -l; ls /layers | wc -l",
        long_path()
    );
    let config = sh("deep", &reference, &script);
    let log = pod.log_path(&config);
    let exited = bed.run_to_exit(&pod, config).await;
    assert_eq!(exited.exit_code, 0, "{exited:?}");
    let lines: Vec<String> = log_lines(&log).into_iter().map(|l| l.trim().to_string()).collect();
    assert_eq!(lines, ["0", "498", "at the end of a long path", MANY_FILES.to_string().as_str(), "499"]);
}

#[tokio::test]
async fn an_image_deeper_than_overlayfs_stacks_fails_its_create_clearly() {
    let bed = Bed::bare().await;
    let mut image = ImageBuilder::new().layer(Layer::busybox(), Compression::Gzip).env(["PATH=/bin"]);
    for i in 0..500 {
        image = image.layer(Layer::new().file(format!("/layers/{i}"), format!("{i}\n"), 0o644), Compression::None);
    }
    let reference = pull(&bed, "too-deep", image).await;
    let pod = bed.pod("too-deep").await;
    let error = bed.create(&pod, sh("too-deep", &reference, "true")).await.expect_err("501 layers cannot be stacked");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(error.message().contains("501 layers") && error.message().contains("at most 500"), "{error:?}");
    assert!(bed.list_all().await.is_empty(), "no half-made container");
    assert!(bed.runc_containers().is_empty());
}
