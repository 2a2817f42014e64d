#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit tests beside the
# code and the integration tests in tests/, against a real registry, runc and
# CNI plugins. Needs root (namespaces, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."

# Namespaces, mounts, veths and iptables: without root the tests cannot run,
# and a test that cannot run must not pass as skipped.
if [[ $EUID -ne 0 ]]; then
  echo "test: run as root (the tests create namespaces, mounts and veths)" >&2
  exit 1
fi

hack/setup.sh
# What killed runs left (monitors, containers, mounts, test networks) would
# stand in this run's way: swept first, found by the marks test state carries.
hack/sweep-test-leftovers.sh
# The real clients the conformance tests drive, built once into a cache.
tools=$(hack/tools.sh)
set -a; eval "$tools"; set +a

export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
cargo build --all-targets --locked
cargo clippy --all-targets --locked --quiet -- -D warnings
# Integration tests mostly wait on processes (berth, the registry, runc), so
# more threads than cores keeps both cores busy.
cargo test --all-targets --locked --no-fail-fast -- --test-threads "${BERTH_TEST_THREADS:-4}"

# The monitor's memory budget is an optimised build's: one container's monitor
# is held under 2 MiB resident.
cargo build --release --locked --bin berth-monitor
BERTH_MONITOR_BIN=$PWD/target/release/berth-monitor \
  cargo test --locked --test cri -- --exact monitor::the_monitor_outlives_its_spawner_and_stays_small

# The integration tests and the real clients (crictl, critest, kubelet) again,
# against berth's internal runtime (issue 14).
BERTH_TEST_RUNTIME=internal cargo test --locked --test cri -- --test-threads "${BERTH_TEST_THREADS:-4}"
BERTH_TEST_RUNTIME=internal cargo test --locked --test conformance -- --test-threads "${BERTH_TEST_THREADS:-4}"
