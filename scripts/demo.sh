#!/usr/bin/env bash
# The README's first command: starts a throwaway registry on 127.0.0.1 with sample content, then
# shows regsweep listing it, planning and applying a retention policy, and garbage-collecting the
# storage. Everything it starts is stopped at the end; nothing outside a temporary directory is
# touched.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker-registry >/dev/null; then
  echo "This demo runs the real registry server: install it with 'apt-get install -y docker-registry'." >&2
  exit 1
fi

# Say what happens before the first build, which takes a few minutes on a fresh checkout; cargo's
# own progress bar shows while it runs. A prebuilt binary can be used instead with
# REGSWEEP_BIN_DIR=DIR (a folder holding `regsweep` and `regsweep-testkit`).
if [ -n "${REGSWEEP_BIN_DIR:-}" ]; then
  bin=$REGSWEEP_BIN_DIR
else
  echo "Building regsweep and its test harness (debug profile; the first build takes a few minutes)..." >&2
  cargo build --workspace --bins
  bin=target/debug
fi
for tool in regsweep regsweep-testkit; do
  [ -x "$bin/$tool" ] || { echo "no $tool in $bin: build it with 'cargo build --workspace --bins'" >&2; exit 1; }
done
echo "Starting a throwaway registry on 127.0.0.1 and pushing sample images..." >&2
work=$(mktemp -d)
registry_pid=""
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin/regsweep-testkit" serve --root "$work/root" </dev/null >"$work/serve.out" 2>"$work/serve.err" &
registry_pid=$!
for _ in $(seq 100); do grep -q READY "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/READY/ {print $2}' "$work/serve.out")
[ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }
host=${url#http://}
"$bin/regsweep-testkit" sample "$url" >/dev/null

if [ -t 1 ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; "$@"; }
step "$bin/regsweep" repos "$host"
step "$bin/regsweep" tags --long "$host/team/web/frontend"
step "$bin/regsweep" inspect "$host/team/api:latest"
step "$bin/regsweep" du "$host"
step "$bin/regsweep" plan --policy docs/examples/demo-policy.yaml "$host" -o "$work/plan.json"
step "$bin/regsweep" apply --yes "$work/plan.json"
step "$bin/regsweep" rm "$host/team/web/frontend:stable"
step "$bin/regsweep" tags "$host/team/web/frontend"

# Storage garbage collection needs the registry stopped (or read-only).
kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; registry_pid=""
step "$bin/regsweep" gc --dry-run --delete-untagged --grace 0s --show 5 "$work/root"
step "$bin/regsweep" gc --delete-untagged --grace 0s --show 5 "$work/root"
