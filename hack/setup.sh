#!/usr/bin/env bash
# Installs, idempotently, what berth and its test suite need on Debian 12, and
# nothing else. Safe to run again: it only calls apt when something is missing.
set -euo pipefail

packages=(
  runc crun                    # OCI runtimes: the default handler and a second one
  containernetworking-plugins  # CNI plugins in /usr/lib/cni
  iproute2 iptables            # network namespaces, veths, portmap rules
  libseccomp-dev               # seccomp profiles for containers
  docker-registry              # the tests' local registry
  apache2-utils                # htpasswd, for the registry's basic-auth tests
  busybox-static               # the content of the tests' images
  gcc libc6-dev                # static helpers in critest's look-alike images (nginx, httpd, pause, nnp)
  apparmor                     # apparmor_parser: the test that berth's default profile compiles
  python3-prometheus-client    # the official OpenMetrics parser, for the metrics endpoint test
  golang-go golang-github-docker-spdystream-dev  # a Go spdystream peer: the SPDY interop test
  tmux                         # a real terminal for the client's exec -it and attach tests
  ca-certificates
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "setup: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian starts the registry package's own service on :5000; the tests run
# their own registries and need nothing from it.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# critest's images (tests/support/critest_images.rs) are built from Debian's
# *dynamic* busybox: busybox-static runs applets in-process (`sh -c ls` never
# execs /bin/ls), which critest's MaskedPaths spec sees through. The package
# conflicts with busybox-static, so it is downloaded and unpacked, never installed.
tools_cache=${BERTH_TOOLS_CACHE:-/var/cache/berth-tools}
busybox_dir=$tools_cache/busybox
if [[ ! -x $busybox_dir/root/bin/busybox ]]; then
  if [[ $EUID -ne 0 ]]; then
    echo "setup: $busybox_dir is missing; run as root to fetch Debian's busybox" >&2
    exit 1
  fi
  echo "setup: fetching Debian's dynamic busybox into $busybox_dir"
  mkdir -p "$tools_cache"
  tmp=$(mktemp -d "$tools_cache/.busybox.XXXXXX")
  chmod 755 "$tmp"
  if ! (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root busybox >/dev/null)
  fi
  dpkg-deb -x "$tmp"/busybox_*.deb "$tmp/root"
  rm -rf "$busybox_dir"
  mv "$tmp" "$busybox_dir"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
