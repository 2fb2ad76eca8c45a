#!/usr/bin/env bash
# Builds the container image (scripts/image.sh) and runs it: `regsweep --version`, then a real
# command against a throw-away registry on 127.0.0.1, and checks the image's configuration
# (non-root user, OCI labels). Run by .ci/run. Prints the image size and build time, then removes
# the image. REGSWEEP_BIN=target/debug/regsweep skips the release build (see scripts/image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in buildah podman runc skopeo; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install -y buildah podman runc skopeo" >&2; exit 1; }
done
image=localhost/regsweep:ci-check
started=$(date +%s)
scripts/image.sh "$image" >/dev/null
built=$(( $(date +%s) - started ))

# podman as it runs on machines without CAP_SYS_RESOURCE and with hybrid cgroups (see
# docs/operations.md): runc, cgroupfs, lowered ulimits.
podman_run() {
  podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs run --rm --network host \
    --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "$image" "$@"
}
fail() { echo "image check failed: $*" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
out=$(podman_run --version)
[ "$out" = "regsweep $version" ] || fail "--version printed '$out'"

config=$(skopeo inspect --config "containers-storage:[vfs@/var/lib/containers/storage]$image")
python3 - "$config" "$version" <<'PY' || fail "image configuration"
import json, sys
config, version = json.loads(sys.argv[1]), sys.argv[2]
c = config["config"]
assert c["User"] == "65532:65532", c["User"]
assert c["Entrypoint"] == ["/usr/local/bin/regsweep"], c["Entrypoint"]
labels = c["Labels"]
for key in ("source", "version", "licenses", "revision"):
    assert labels.get("org.opencontainers.image." + key), key
assert labels["org.opencontainers.image.version"] == version
assert labels["org.opencontainers.image.licenses"] == "MIT OR Apache-2.0"
PY

cargo build --quiet --locked --workspace --bins
work=$(mktemp -d)
# shellcheck source=scripts/lib/registry.sh
. scripts/lib/registry.sh
cleanup() {
  stop_registry
  rm -rf "$work"
  podman --storage-driver vfs rmi --force "$image" >/dev/null 2>&1 || true
}
trap cleanup EXIT
start_sample_registry
repos=$(podman_run --json repos "$registry_host")
expected=$(target/debug/regsweep --json repos "$registry_host")
[ "$repos" = "$expected" ] || fail "repos inside the image: $repos, outside: $expected"
podman_run probe "$registry_host" >/dev/null || fail "probe inside the image"

size=$(podman --storage-driver vfs image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1024 / 1024)) MiB ($size bytes), built in ${built}s; --version, repos and probe ran inside it"
