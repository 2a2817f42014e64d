#!/usr/bin/env bash
# Builds the real clients the conformance tests drive (crictl and critest from
# cri-tools, kubelet from kubernetes) from their Go modules, through the Go
# module proxy, into a cache outside the checkout keyed by version: a second
# run finds them and builds nothing. Prints `NAME=PATH` lines for the tests.
set -euo pipefail

CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
# The oldest kubelet a 1.37 control plane supports (three minors back).
KUBERNETES_OLDEST_VERSION=${KUBERNETES_OLDEST_VERSION:-v1.34.4}
cache=${BERTH_TOOLS_CACHE:-/var/cache/berth-tools}
export GOFLAGS=${GOFLAGS:--mod=mod}

log() { echo "tools: $*" >&2; }

# Debian's golang-go (1.19, for the SPDY interop test) may stand before the
# machine's newer Go on PATH; these modules want a recent one.
pick_go() {
  local best="" best_version="" candidate version
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [[ -x $candidate ]] || continue
    version=$("$candidate" env GOVERSION 2>/dev/null) || continue
    if [[ -z $best_version || $(printf '%s\n%s\n' "$best_version" "$version" | sort -V | tail -n1) == "$version" ]]; then
      best=$candidate best_version=$version
    fi
  done
  [[ -n $best ]] || { log "no Go toolchain found: install Go (https://go.dev/dl) or Debian's golang-go"; exit 1; }
  echo "$best"
}
go=$(pick_go)
go() { "$go" "$@"; }

# A build goes to a temp dir and is renamed into place last: a build cut short
# leaves no half-made binary behind for the next run to trust.
build_cri_tools() {
  local dir="$cache/cri-tools-$CRI_TOOLS_VERSION"
  [[ -x $dir/crictl && -x $dir/critest ]] && return
  log "building crictl and critest $CRI_TOOLS_VERSION (once; cached in $dir)"
  local work
  work=$(mktemp -d "$cache/.cri-tools.XXXXXX")
  (
    cd "$work"
    src=$(go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    cp -r "$src" module && chmod -R u+w module && cd module
    go build -trimpath -o "$work/out/crictl" ./cmd/crictl
    go test -c -trimpath -o "$work/out/critest" ./cmd/critest
  ) >&2
  rm -rf "$dir" && mv "$work/out" "$dir" && rm -rf "$work"
}

# kubernetes is not meant to be required as a module: its go.mod replaces every
# k8s.io staging module with a directory of its own tree. A wrapper module
# replaces each with the published version of the same release instead.
build_kubelet() {
  local version=$1
  local dir="$cache/kubernetes-$version"
  # A binary built before it was stamped says v0.0.0-master: built again.
  [[ -x $dir/kubelet && $("$dir/kubelet" --version 2>/dev/null) == "Kubernetes $version" ]] && return
  log "building kubelet $version (once; cached in $dir; takes minutes)"
  local work staging="v0.${version#v1.}"
  work=$(mktemp -d "$cache/.kubernetes.XXXXXX")
  (
    cd "$work"
    gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
    go_version=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
    {
      echo "module berth.test/kubelet"
      echo "go $go_version"
      echo "require k8s.io/kubernetes $version"
      sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*$#replace \1 => \1 '"$staging"'#p' "$gomod"
    } >go.mod
    # The version kubernetes' own build stamps (hack/lib/version.sh): without
    # it kubelet reports v0.0.0-master, in --version and in its logs.
    local minor=${version#v1.} flags=""
    minor=${minor%%.*}
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    go build -trimpath -ldflags="$flags" -o "$work/out/kubelet" k8s.io/kubernetes/cmd/kubelet
  ) >&2
  rm -rf "$dir" && mv "$work/out" "$dir" && rm -rf "$work"
}

# The pre-installed NRI plugin of the NRI tests (tests/support/nri-plugin),
# built on NRI's Go stub; cached by the hash of its source.
build_nri_plugin() {
  local src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/support/nri-plugin" && pwd)
  local sum
  sum=$(cat "$src/main.go" "$src/go.mod" | sha256sum | cut -c1-16)
  nri_plugin="$cache/nri-plugin-$sum/plugin"
  [[ -x $nri_plugin ]] && return
  log "building the test NRI plugin (once; cached in ${nri_plugin%/plugin})"
  local work
  work=$(mktemp -d "$cache/.nri-plugin.XXXXXX")
  (
    cp "$src/main.go" "$src/go.mod" "$work/" && cd "$work"
    go build -trimpath -o "$work/out/plugin" .
  ) >&2
  rm -rf "${nri_plugin%/plugin}" && mv "$work/out" "${nri_plugin%/plugin}" && rm -rf "$work"
}

# The manifest checker (tests/support/manifest-check): the API server's own
# decoding and create validation, linked from kubernetes' module through the
# same staging replaces as kubelet; cached by the hash of its source.
build_manifest_check() {
  local src
  src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/support/manifest-check" && pwd)
  local sum
  sum=$(cat "$src/main.go" "$src/go.mod" | sha256sum | cut -c1-16)
  manifest_check="$cache/manifest-check-$sum/manifest-check"
  [[ -x $manifest_check ]] && return
  log "building the manifest checker (once; cached in ${manifest_check%/manifest-check}; takes minutes)"
  local work
  work=$(mktemp -d "$cache/.manifest-check.XXXXXX")
  (
    cp "$src/main.go" "$src/go.mod" "$work/" && cd "$work"
    go build -trimpath -o "$work/out/manifest-check" .
  ) >&2
  rm -rf "${manifest_check%/manifest-check}" && mv "$work/out" "${manifest_check%/manifest-check}" && rm -rf "$work"
}

mkdir -p "$cache"
build_cri_tools
build_nri_plugin
build_manifest_check
build_kubelet "$KUBERNETES_VERSION"
build_kubelet "$KUBERNETES_OLDEST_VERSION"
echo "BERTH_TOOLS_CACHE=$cache"
echo "BERTH_CRICTL=$cache/cri-tools-$CRI_TOOLS_VERSION/crictl"
echo "BERTH_CRITEST=$cache/cri-tools-$CRI_TOOLS_VERSION/critest"
echo "BERTH_KUBELET=$cache/kubernetes-$KUBERNETES_VERSION/kubelet"
echo "BERTH_KUBELET_OLDEST=$cache/kubernetes-$KUBERNETES_OLDEST_VERSION/kubelet"
echo "BERTH_NRI_PLUGIN=$nri_plugin"
echo "BERTH_MANIFEST_CHECK=$manifest_check"
