//! The installer image of `deploy/installer/`: busybox for the script, berth
//! with the shared libraries it links (so `berth config --default` and `berth
//! version` run in the pod), the script, and the files it installs. Built the
//! way the suite builds every image: no container engine needed. Both the
//! installer test and `hack/installer-image.sh` (examples/installer_image.rs)
//! build it here, so the suite tests the image operators get.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::image::{BuiltImage, Compression, ImageBuilder, Layer};

/// The repository's root, where `deploy/` is.
fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn installer_image(berth: &Path) -> BuiltImage {
    let read = |path: &Path| std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let deploy = repository().join("deploy");
    let mut berth_layer = Layer::new().dir("/opt", 0o755).dir("/opt/berth", 0o755);
    // The monitor is built beside berth (Cargo.toml's second binary).
    let monitor = berth.with_file_name("berth-monitor");
    berth_layer = berth_layer.file("/opt/berth/berth", read(berth), 0o755);
    berth_layer = berth_layer.file("/opt/berth/berth-monitor", read(&monitor), 0o755);
    let mut libraries = shared_libraries(berth);
    libraries.extend(shared_libraries(&monitor));
    libraries.sort();
    libraries.dedup();
    let dirs: std::collections::BTreeSet<&Path> =
        libraries.iter().flat_map(|library| library.ancestors().skip(1)).filter(|dir| *dir != Path::new("/")).collect();
    for dir in dirs {
        berth_layer = berth_layer.dir(dir.display().to_string(), 0o755);
    }
    for library in &libraries {
        // The path as the binary asks for it, with the content of what it resolves to.
        berth_layer = berth_layer.file(library.display().to_string(), read(library), 0o755);
    }
    let files = Layer::new()
        .dir("/opt", 0o755)
        .dir("/opt/berth", 0o755)
        .file("/opt/berth/install.sh", read(&deploy.join("installer/install.sh")), 0o755)
        .file("/opt/berth/berth.service", read(&deploy.join("systemd/berth.service")), 0o644)
        .file("/opt/berth/10-berth.conflist", read(&deploy.join("cni/10-berth.conflist")), 0o644);
    ImageBuilder::busybox()
        .layer(berth_layer, Compression::Gzip)
        .layer(files, Compression::Gzip)
        .entrypoint(["/opt/berth/install.sh"])
        .cmd(["install"])
        .label("org.opencontainers.image.title", "berth-installer")
        .label("org.opencontainers.image.version", env!("CARGO_PKG_VERSION"))
        .build()
}

/// What `ldd` says the binary loads, the dynamic loader included.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("running ldd");
    assert!(output.status.success(), "ldd {}: {output:?}", binary.display());
    let text = String::from_utf8_lossy(&output.stdout);
    let mut libraries: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, resolved)) => resolved.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}
