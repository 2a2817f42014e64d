#!/usr/bin/env bash
# Builds berth's installer image (deploy/installer/) and pushes it, with no
# container engine: the image is assembled the way the test suite builds its
# images (tests/support/installer.rs). Usage:
#   hack/installer-image.sh REGISTRY_URL [REPOSITORY:TAG]
#   hack/installer-image.sh https://registry.internal:5000
# REPOSITORY:TAG defaults to berth/installer:<berth's version>. Then point the
# DaemonSets of deploy/kubernetes/ at it (README, "Installing on a cluster").
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${1:?usage: hack/installer-image.sh REGISTRY_URL [REPOSITORY:TAG]}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
reference=${2:-berth/installer:$version}

cargo build --release --locked --bin berth --bin berth-monitor
cargo run --release --locked --example installer_image -- target/release/berth "$registry" "$reference"
