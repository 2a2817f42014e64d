//! `hack/installer-image.sh` runs this: builds the installer image of
//! `deploy/installer/` around a berth binary and pushes it to a registry.
//!
//! Usage: installer_image BERTH_BINARY REGISTRY_URL REPOSITORY:TAG
//!   e.g. installer_image target/release/berth http://127.0.0.1:5000 berth/installer:0.1.0

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::ExitCode;

use support::image::RegistryClient;
use support::installer::installer_image;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [berth, registry, reference] = args.as_slice() else {
        eprintln!("usage: installer_image BERTH_BINARY REGISTRY_URL REPOSITORY:TAG");
        return ExitCode::from(2);
    };
    let Some((repository, tag)) = reference.rsplit_once(':') else {
        eprintln!("installer_image: {reference:?} names no tag (REPOSITORY:TAG)");
        return ExitCode::from(2);
    };
    let image = installer_image(&PathBuf::from(berth));
    let digest = RegistryClient::from_url(registry).push_image(repository, tag, &image).await;
    println!("pushed {repository}:{tag} to {registry}: {digest} (image ID {})", image.image_id());
    ExitCode::SUCCESS
}
