#!/bin/sh
# berth's node installer, run by the DaemonSets in deploy/kubernetes/ with the
# host's root mounted at $BERTH_HOST_ROOT. `install` puts berth on the node and
# starts it through the host's systemd; `uninstall` reverses exactly what an
# install wrote. Either way the pod then sleeps: a DaemonSet pod that exits is
# restarted, and would run it all again.
#
# Idempotent: a second run with the same image changes nothing and restarts
# nothing. What it wrote is recorded, with checksums, in
# /etc/berth/installed.manifest, so that a file the operator changed since
# (config.toml, typically) is never overwritten or removed.
set -eu

action=${1:-install}
host=${BERTH_HOST_ROOT:-/host}
# The host's systemctl, in the host's namespaces (the pod has hostPID).
systemctl=${BERTH_SYSTEMCTL:-nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl}
socket=${BERTH_SOCKET:-$host/run/berth/berth.sock}
wait_seconds=${BERTH_WAIT_SECONDS:-120}
switch_kubelet=${BERTH_SWITCH_KUBELET:-false}
src=/opt/berth

bin=/usr/local/bin/berth
# berth runs it as each container's monitor when it sits beside berth.
monitor_bin=/usr/local/bin/berth-monitor
config=/etc/berth/config.toml
unit=/etc/systemd/system/berth.service
cni_dir=/etc/cni/net.d
cni_conf=$cni_dir/10-berth.conflist
manifest=/etc/berth/installed.manifest
kubelet_config=/var/lib/kubelet/config.yaml
kubelet_backup=/etc/berth/kubelet-config.yaml.before-berth
endpoint=unix:///run/berth/berth.sock

log() { echo "berth-install: $*"; }
die() { log "error: $*"; exit 1; }

sum() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }

# The checksum the manifest recorded for a host path, if any.
recorded() { [ -f "$host$manifest" ] && awk -v p="$1" '$2 == p { print $1 }' "$host$manifest" || true; }

# Notes a host file's checksum; the manifest is rewritten only when it changes.
record() {
  line="$(sum "$host$1") $1"
  [ "$(recorded "$1") $1" = "$line" ] && return 0
  tmp="$host$manifest.tmp"
  { [ -f "$host$manifest" ] && awk -v p="$1" '$2 != p' "$host$manifest"; echo "$line"; } >"$tmp" || true
  mv -f "$tmp" "$host$manifest"
}

forget() {
  [ -f "$host$manifest" ] || return 0
  tmp="$host$manifest.tmp"
  awk -v p="$1" '$2 != p' "$host$manifest" >"$tmp" || true
  mv -f "$tmp" "$host$manifest"
}

# Steps run in $(...) print their outcome; a step's failure still stops the
# script, because each outcome is assigned before it is used (set -e).

# Writes $2 (a file in the image) to host path $1 atomically, unless it is
# there already with the same content. Prints what it did.
place() {
  path=$1 from=$2 mode=$3
  if [ -f "$host$path" ] && [ "$(sum "$host$path")" = "$(sum "$from")" ]; then
    echo unchanged
    return
  fi
  mkdir -p "$(dirname "$host$path")"
  cp "$from" "$host$path.berth-new"
  chmod "$mode" "$host$path.berth-new"
  mv -f "$host$path.berth-new" "$host$path"
  echo written
}

# Places binary $2 of the image at host path $1 and checks it there.
install_binary() {
  path=$1 name=$2
  result=$(place "$path" "$src/$name" 755)
  # What landed on the host is what the image holds, and runs as that version.
  [ "$(sum "$host$path")" = "$(sum "$src/$name")" ] || die "$path on the host differs from the image's after copying"
  got=$("$host$path" --version) || die "$path does not run"
  [ "$got" = "$name ${version#berth }" ] || die "$path says \"$got\", the image holds \"$name ${version#berth }\""
  record "$path"
  echo "$result"
}

# The operator's file is theirs: written when absent, updated only while it
# is still exactly what an earlier install wrote.
install_config() {
  "$src/berth" config --default >/tmp/config.toml
  if [ ! -f "$host$config" ]; then
    place "$config" /tmp/config.toml 644 >/dev/null
    record "$config"
    echo written
  elif [ "$(sum "$host$config")" = "$(recorded "$config")" ]; then
    result=$(place "$config" /tmp/config.toml 644)
    record "$config"
    [ "$result" = written ] && echo updated || echo unchanged
  else
    echo "kept (changed by the operator)"
  fi
}

install_unit() {
  result=$(place "$unit" "$src/berth.service" 644)
  record "$unit"
  echo "$result"
}

# A node with a network config keeps it: berth uses the first in the directory.
install_cni() {
  if [ -n "$(recorded "$cni_conf")" ]; then
    result=$(place "$cni_conf" "$src/10-berth.conflist" 644)
    record "$cni_conf"
    echo "$result"
  elif ls "$host$cni_dir"/*.conf "$host$cni_dir"/*.conflist "$host$cni_dir"/*.json >/dev/null 2>&1; then
    echo "kept (the node has a network config)"
  else
    place "$cni_conf" "$src/10-berth.conflist" 644 >/dev/null
    record "$cni_conf"
    echo written
  fi
}

wait_for_berth() {
  waited=0
  until "$src/berth" version --runtime-endpoint "unix://$socket" >/dev/null 2>&1; do
    waited=$((waited + 1))
    [ "$waited" -lt "$wait_seconds" ] || die "berth did not answer Version on $socket within ${wait_seconds}s"
    sleep 1
  done
}

# kubeadm's kubelet reads containerRuntimeEndpoint from its config file; the
# original is kept for uninstall.
switch_kubelet() {
  [ -f "$host$kubelet_config" ] || die "BERTH_SWITCH_KUBELET=true, but $kubelet_config is not there"
  if grep -q "^containerRuntimeEndpoint: $endpoint\$" "$host$kubelet_config"; then
    echo unchanged
    return
  fi
  [ -f "$host$kubelet_backup" ] || cp -p "$host$kubelet_config" "$host$kubelet_backup"
  { grep -v '^containerRuntimeEndpoint:' "$host$kubelet_config"; echo "containerRuntimeEndpoint: $endpoint"; } \
    >"$host$kubelet_config.berth-new"
  mv -f "$host$kubelet_config.berth-new" "$host$kubelet_config"
  $systemctl restart kubelet.service
  echo "switched (kubelet restarted)"
}

# The Node's annotations say what is installed, when the pod can reach the
# API server (its service account may patch nodes: rbac.yaml). The install
# stands without them: a failure is a warning.
report() {
  if [ -z "${KUBERNETES_SERVICE_HOST:-}" ] || [ -z "${NODE_NAME:-}" ]; then
    log "node annotations: not set (no API server, or no NODE_NAME, in the pod)"
  elif "$src/berth" node-report --node "$NODE_NAME" "$@"; then
    log "node annotations: $*"
  else
    log "warning: node $NODE_NAME's annotations could not be set"
  fi
}

install() {
  version=$("$src/berth" --version)
  log "installing $version into $host"
  mkdir -p "$host/etc/berth"
  # The monitor first: berth finds it at start.
  monitor_binary=$(install_binary "$monitor_bin" berth-monitor)
  log "binary $monitor_bin: $monitor_binary"
  binary=$(install_binary "$bin" berth)
  log "binary $bin: $binary"
  config_result=$(install_config)
  log "config $config: $config_result"
  unit_result=$(install_unit)
  log "unit $unit: $unit_result"
  cni_result=$(install_cni)
  log "CNI $cni_conf: $cni_result"
  if [ "$unit_result" = written ]; then
    $systemctl daemon-reload
  fi
  if ! $systemctl is-enabled --quiet berth.service; then
    $systemctl enable berth.service
  fi
  if ! $systemctl is-active --quiet berth.service; then
    $systemctl start berth.service
    service=started
  elif [ "$binary" = written ] || [ "$monitor_binary" = written ] || [ "$unit_result" = written ] \
    || [ "$config_result" = updated ]; then
    # KillMode=process: the containers keep running through the restart.
    $systemctl restart berth.service
    service=restarted
  else
    service=running
  fi
  log "service: $service; waiting for berth to answer on $socket"
  wait_for_berth
  log "service: answering"
  if [ "$switch_kubelet" = true ]; then
    kubelet_result=$(switch_kubelet)
    log "kubelet: $kubelet_result"
  else
    log "kubelet: untouched (opt in with the label berth.dev/switch-kubelet=true)"
  fi
  report "berth.dev/installed-version=${version#berth }" "berth.dev/kubelet-switched=$switch_kubelet"
  log "done: $version"
}

# Removes a recorded file unless it changed since it was written.
remove_recorded() {
  path=$1
  want=$(recorded "$path")
  [ -n "$want" ] || return 0
  if [ ! -e "$host$path" ]; then
    log "$path: already gone"
  elif [ "$(sum "$host$path")" = "$want" ]; then
    rm -f "$host$path"
    log "$path: removed"
  else
    log "$path: kept (changed since berth wrote it)"
  fi
  forget "$path"
}

uninstall() {
  log "uninstalling berth from $host"
  if [ -f "$host$kubelet_backup" ]; then
    mv -f "$host$kubelet_backup" "$host$kubelet_config"
    $systemctl restart kubelet.service
    log "kubelet: its configuration restored, restarted"
  fi
  if [ -f "$host$manifest" ]; then
    # Only the daemon stops (KillMode=process): running containers are left alone.
    if $systemctl is-active --quiet berth.service; then
      $systemctl stop berth.service
    fi
    if $systemctl is-enabled --quiet berth.service; then
      $systemctl disable berth.service
    fi
    for path in "$unit" "$cni_conf" "$config" "$bin" "$monitor_bin"; do
      remove_recorded "$path"
    done
    $systemctl daemon-reload
    rm -f "$host$manifest"
  fi
  rmdir "$host/etc/berth" 2>/dev/null || true
  report "berth.dev/installed-version-" "berth.dev/kubelet-switched-"
  log "done: uninstalled"
}

case $action in
  install) install ;;
  uninstall) uninstall ;;
  *) die "unknown action \"$action\" (install | uninstall)" ;;
esac

# Exits at once when the pod is deleted.
trap 'exit 0' TERM INT
while :; do
  sleep 3600 &
  wait $! || true
done
