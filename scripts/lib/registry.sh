# Sourced by scripts that need a throw-away registry with the sample content: starts the real
# registry (distribution) on a free 127.0.0.1 port through the test kit, pushes the sample, and
# stops it when the script exits. Sets $registry_url and $registry_host. Expects $work (a
# temporary directory the caller removes) and the debug binaries in target/debug.

registry_pid=""
stop_registry() {
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
}

start_sample_registry() {
  if ! command -v docker-registry >/dev/null; then
    echo "needs the real registry server: apt-get install -y docker-registry" >&2
    exit 1
  fi
  target/debug/regsweep-testkit serve --root "$work/root" </dev/null >"$work/serve.out" 2>"$work/serve.err" &
  registry_pid=$!
  for _ in $(seq 100); do grep -q READY "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
  registry_url=$(awk '/READY/ {print $2}' "$work/serve.out")
  if [ -z "$registry_url" ]; then
    cat "$work/serve.err" >&2
    exit 1
  fi
  registry_host=${registry_url#http://}
  target/debug/regsweep-testkit sample "$registry_url" >/dev/null
}
