#!/usr/bin/env bash
# Prints berth's figures next to the floor of the same work done by reference
# tools, measured in the same run. Usage: hack/bench.sh [images]
set -euo pipefail
cd "$(dirname "$0")/.."

hack/setup.sh
what=${1:-images}

case "$what" in
  images)
    # Debian's containerd provides the `ctr` baseline; only the benchmark needs it.
    if ! command -v ctr >/dev/null || ! command -v containerd >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd >/dev/null
    fi
    ;;
  *) echo "bench: unknown benchmark '$what' (known: images)" >&2; exit 2 ;;
esac

cargo build --release --quiet --bin berth --example bench
BERTH_BIN=$PWD/target/release/berth BERTH_LOG=info target/release/examples/bench "$what"
