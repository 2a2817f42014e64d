#!/usr/bin/env bash
# Starts berth in the foreground with the built-in defaults: installs what is
# missing, builds a release binary, installs the default bridge CNI network if
# the CNI conf dir has none, then serves on /run/berth/berth.sock.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $EUID -ne 0 ]]; then
  echo "run: berth manages namespaces, mounts and cgroups: run as root" >&2
  exit 1
fi

hack/setup.sh
cargo build --release --quiet
berth=target/release/berth

# Extra arguments go to `berth serve` (e.g. --log-level debug) and count here too.
effective=$("$berth" config "$@")
value() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" <<<"$effective" | head -n 1; }
conf_dir=$(value conf_dir)
socket=$(value socket)

if ! ls "$conf_dir"/*.conflist "$conf_dir"/*.conf "$conf_dir"/*.json >/dev/null 2>&1; then
  echo "run: no CNI network in $conf_dir; installing berth's default bridge network"
  install -D -m 0644 deploy/cni/10-berth.conflist "$conf_dir/10-berth.conflist"
fi

cat <<MSG
berth: serving the CRI on unix://$socket
try:   crictl --runtime-endpoint unix://$socket --image-endpoint unix://$socket version
MSG
exec "$berth" serve "$@"
