#!/usr/bin/env bash
# Prints berth's figures next to the floor of the same work done by reference
# tools, measured in the same run. Usage: hack/bench.sh [images|pods|containers|stats|streaming|load|all]
#   images (the default): cold pulls, berth vs containerd's ctr
#   pods: RunPodSandbox + StopPodSandbox + RemovePodSandbox on a private bridge,
#         berth vs the CNI plugins run by hand; berth's RSS
#   containers: RunPodSandbox + Create/Start/Stop/RemoveContainer + StopPodSandbox +
#         RemovePodSandbox of a busybox `sleep 3600` on a private bridge, berth vs
#         bare `runc run -d` / kill / delete; berth's and its monitors' RSS with 50 pods
#   stats: with 50 pods running a busybox `sleep 3600` each, median and p95 latency of
#         ListContainerStats, ListPodSandboxStats (no filter), ContainerStats and
#         ListPodSandboxMetrics; berth's RSS
#   streaming: exec of `true` through Exec + SPDY vs ExecSync vs bare `runc exec`;
#         256 MiB of exec output through SPDY and WebSocket, berth's RSS
#   versus: berth and Debian's containerd (its CRI plugin, own root and socket) side by
#         side through the same CRI client: pod and container lifecycles per RPC (p50,
#         p95) with the bare floor (CNI plugins and runc by hand) and berth's own
#         breakdown per step, the container lifecycle on berth's internal runtime, 50
#         concurrent RunPodSandbox, the List calls with 100 pods, a cold pull, daemon
#         RSS (and its anonymous part) idle, with 50 and 100 pods, after 200 pod cycles
#         and after the pulls, helper PSS
#   load: 20 concurrent clients calling ContainerStatus and ListPodSandbox, idle and
#         while a 256 MiB pull commits and another image is removed (latency figures)
#   all: each of them
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-images}
case "$what" in
  images | pods | containers | stats | streaming | load | versus | all) ;;
  *) echo "bench: unknown benchmark '$what' (known: images, pods, containers, stats, streaming, load, versus, all)" >&2; exit 2 ;;
esac

hack/setup.sh

if [[ $what != images ]] && [[ $EUID -ne 0 ]]; then
  echo "bench: $what makes network namespaces, veths, a bridge and containers: run it as root" >&2
  exit 1
fi
if [[ $what == images || $what == versus || $what == all ]]; then
  # Debian's containerd provides the `ctr` baseline; only the benchmark needs it.
  if ! command -v ctr >/dev/null || ! command -v containerd >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd >/dev/null
  fi
fi

cargo build --release --quiet --bin berth --bin berth-monitor --example bench
BERTH_BIN=$PWD/target/release/berth BERTH_LOG=info target/release/examples/bench "$what"
