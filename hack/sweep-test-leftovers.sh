#!/usr/bin/env bash
# Removes what killed test runs left behind: a test process killed before its
# guards ran (Ctrl-C, a CI timeout, kill -9) leaves container monitors, runc
# containers, mounts, cgroups, test networks and their iptables rules.
#
# Everything is found by the marks test state carries, and nothing else is
# touched (a real berth's /run/berth and /var/lib/berth included):
# - the tests' directories, ${TMPDIR:-/tmp}/berth-test-*, berth-monitor-* and
#   berth-oci-* (tests/support/berth.rs and the other test beds name them so):
#   the processes whose command line names one (monitors, berth pause, wrapper
#   scripts, registries, kubelets), the containers of the runtime roots in
#   them, the cgroups their bundles name, the mounts under them;
# - the test networks (tests/support/cni.rs): bridges named bt<8 hex digits>,
#   their veths, and portmap's rules for networks named net-bt<8 hex digits>.
#
# Test runs in progress own the same marks, so while any test binary runs
# (an executable of a cargo target dir's deps/ or examples/) this sweeps
# nothing. Needs root. Called by hack/test.sh before the tests start.
set -euo pipefail

log() { echo "sweep: $*" >&2; }

if [[ $EUID -ne 0 ]]; then
  log "run as root (test leftovers are root's)"
  exit 1
fi

tmp=$(realpath -e "${TMPDIR:-/tmp}")
if [[ $tmp == / || ! -d $tmp ]]; then
  log "no usable temp dir (${TMPDIR:-/tmp}); nothing swept"
  exit 0
fi

# The tests' directories, listed before looking for live test runs: a run that
# starts after that check makes directories this list does not hold.
roots=()
while IFS= read -r -d '' dir; do
  roots+=("$dir")
done < <(find "$tmp" -mindepth 1 -maxdepth 1 -type d -user 0 \
  \( -name 'berth-test-?*' -o -name 'berth-monitor-?*' -o -name 'berth-oci-?*' \) -print0)

# Any process whose executable is a test binary (or an example, the benchmark
# reuses the test bed) of a cargo target dir.
test_runs() {
  local exe pid
  for exe in /proc/[0-9]*/exe; do
    pid=${exe#/proc/}
    pid=${pid%/exe}
    exe=$(readlink "$exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}
    if [[ $exe =~ /target/[^/]+/(deps|examples)/[^/]+$ ]]; then
      echo "$pid $exe"
    fi
  done
}
running=$(test_runs)
if [[ -n $running ]]; then
  log "tests are running; nothing swept:"
  echo "$running" | sed 's/^/  /' >&2
  exit 0
fi

# The OCI runtime that manages a runtime root, as tests/support/berth.rs picks it.
runtime_for() {
  if [[ $(basename "$1") == crun ]]; then echo crun; else echo /usr/sbin/runc; fi
}

# `runtime --root R delete --force` of every container of the runtime roots
# under a test directory: a test berth's (run/runtimes/<handler>) or the
# monitor and OCI runtime tests' own (root).
delete_containers() {
  local root=$1 runtime_root runtime id
  for runtime_root in "$root"/run/runtimes/* "$root"/root; do
    [[ -d $runtime_root && ! -L $runtime_root ]] || continue
    runtime=$(runtime_for "$runtime_root")
    command -v "$runtime" >/dev/null || continue
    for id in $("$runtime" --root "$runtime_root" list -q 2>/dev/null); do
      "$runtime" --root "$runtime_root" delete --force "$id" >/dev/null 2>&1 || true
    done
  done
}

# SIGKILLs every process whose command line names `root` or something under it.
kill_processes_naming() {
  local root=$1 cmdline pid arg args
  for cmdline in /proc/[0-9]*/cmdline; do
    pid=${cmdline#/proc/}
    pid=${pid%/cmdline}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    mapfile -d '' -t args 2>/dev/null <"$cmdline" || continue
    for arg in "${args[@]}"; do
      if [[ $arg == *"$root/"* || $arg == *"$root" ]]; then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
    done
  done
}

# The cgroups of the containers under `root`: each bundle's linux.cgroupsPath
# when it is under a parent of the tests' own (/berth-test...) or named after its container
# (berth's /berth/<id> and <parent>/berth-<id>); the container dir names the ID.
container_cgroups() {
  local root=$1 config id path
  while IFS= read -r -d '' config; do
    id=$(basename "$(dirname "$config")")
    path=$(grep -o '"cgroupsPath" *: *"[^"]*"' "$config" 2>/dev/null | head -n1 | sed 's/.*: *"\(.*\)"/\1/') || true
    [[ $path == /* && $path != *..* ]] || continue
    if [[ $path == /berth-test* || $(basename "$path") == "$id" || $(basename "$path") == "berth-$id" ]]; then
      echo "$path"
    fi
  done < <(find "$root" -maxdepth 4 -name config.json \( -path '*/containers/*' -o -path '*/bundle/*' \) -print0 2>/dev/null)
}

# Removes a cgroup from every hierarchy, children first. rmdir only removes
# empty cgroups, so one still in use stays.
remove_cgroup() {
  local path=$1 hierarchy dir
  for hierarchy in /sys/fs/cgroup /sys/fs/cgroup/*; do
    dir=$hierarchy$path
    [[ -d $dir && ! -L $hierarchy ]] || continue
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# Lazily unmounts every mount at or below `root`, deepest first.
unmount_under() {
  local root=$1 point
  awk -v root="$root" '{ p = $5; gsub(/\\040/, " ", p); if (p == root || index(p, root "/") == 1) print length(p) " " p }' \
    /proc/self/mountinfo | sort -rn | cut -d' ' -f2- | while IFS= read -r point; do
    umount -l "$point" 2>/dev/null || true
  done
}

for root in "${roots[@]}"; do
  log "removing $root"
  cgroups=$(container_cgroups "$root")
  delete_containers "$root"
  kill_processes_naming "$root"
  # A create that was under way when its monitor was killed.
  delete_containers "$root"
  unmount_under "$root"
  while IFS= read -r cgroup; do
    [[ -n $cgroup ]] && remove_cgroup "$cgroup"
  done <<<"$cgroups"
  rm -rf --one-file-system "$root" || log "could not remove all of $root"
done
# The tests' own cgroup parents (/berth-test, /berth-test-<test>-...), once
# their containers' cgroups are gone.
for parent in $(find /sys/fs/cgroup /sys/fs/cgroup/* -maxdepth 1 -mindepth 1 -type d -name 'berth-test*' \
  -printf '%f\n' 2>/dev/null | sort -u); do
  remove_cgroup "/$parent"
done

# portmap's rules for the test networks: a jump from CNI-HOSTPORT-DNAT per
# pod, commented with the network's name, to a chain of the pod's own (as
# TestNetwork's Drop in tests/support/cni.rs removes them, for every test network).
if command -v iptables >/dev/null; then
  # No such chain where portmap never ran.
  dnat=$(iptables -w -t nat -L CNI-HOSTPORT-DNAT -n --line-numbers 2>/dev/null || true)
  echo "$dnat" | { grep -E '"net-bt[0-9a-f]{8}"' || true; } | awk '{ print $1, $2 }' | sort -rn |
    while read -r number chain; do
      # Highest first: deleting a rule renumbers those after it.
      log "removing portmap rule $number (-> $chain) of a test network"
      iptables -w -t nat -D CNI-HOSTPORT-DNAT "$number" || true
      if [[ $chain == CNI-DN-* ]]; then
        iptables -w -t nat -F "$chain" 2>/dev/null || true
        iptables -w -t nat -X "$chain" 2>/dev/null || true
      fi
    done
fi

# The test networks' bridges, and the veths still attached to them.
if command -v ip >/dev/null; then
  for bridge in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1 |
    grep -E '^bt[0-9a-f]{8}$'); do
    log "removing test bridge $bridge"
    for veth in $(ip -o link show master "$bridge" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1); do
      ip link del "$veth" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
  done
fi
