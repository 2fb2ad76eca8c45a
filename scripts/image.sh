#!/usr/bin/env bash
# Builds regsweep's container image without a Docker daemon and without downloading anything:
# the release binary, the shared libraries `ldd` says it needs (glibc's loader, libc, libm,
# libgcc_s), the system's CA certificates, and a passwd entry for the non-root user it runs as,
# assembled from scratch with buildah (vfs storage, so it works in containers and CI too).
#
#   scripts/image.sh [IMAGE]        default IMAGE: localhost/regsweep:<version>
#   REGSWEEP_BIN=target/debug/regsweep scripts/image.sh   (skip the release build)
#
# Push it with `buildah push` or `skopeo copy` (docs/operations.md). Prints the image's name.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v buildah >/dev/null; then
  echo "needs buildah: apt-get install -y buildah" >&2
  exit 1
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
image=${1:-localhost/regsweep:$version}
buildah=(buildah --storage-driver vfs)
uid=65532

# REGSWEEP_BIN: put this already built binary in the image instead (e.g. a debug build, to
# try the image quickly).
bin=${REGSWEEP_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin regsweep
  bin=target/release/regsweep
fi

# The dynamic loader and every library it resolves, at the paths the binary expects them.
mapfile -t libs < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
if [ "${#libs[@]}" -eq 0 ]; then
  echo "ldd found no libraries for $bin; is it a dynamic glibc binary?" >&2
  exit 1
fi

staging=$(mktemp -d)
container=""
cleanup() {
  if [ -n "$container" ]; then "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$staging"
}
trap cleanup EXIT

mkdir -p "$staging/etc" "$staging/home/regsweep" "$staging/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nregsweep:x:%s:%s:regsweep:/home/regsweep:/sbin/nologin\n' "$uid" "$uid" >"$staging/etc/passwd"
printf 'root:x:0:\nregsweep:x:%s:\n' "$uid" >"$staging/etc/group"

# The release profile keeps line tables for backtraces; the image does without (83 -> 15 MB).
command -v strip >/dev/null || { echo "needs strip: apt-get install -y binutils" >&2; exit 1; }
strip -o "$staging/regsweep" "$bin"

container=$("${buildah[@]}" from scratch)
"${buildah[@]}" copy --quiet "$container" "$staging/regsweep" /usr/local/bin/regsweep
for lib in "${libs[@]}"; do
  # Copy the file a symlink points to, under the name the loader asks for.
  "${buildah[@]}" copy --quiet "$container" "$(readlink -f "$lib")" "$lib"
done
"${buildah[@]}" copy --quiet "$container" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
"${buildah[@]}" copy --quiet "$container" "$staging/etc/passwd" /etc/passwd
"${buildah[@]}" copy --quiet "$container" "$staging/etc/group" /etc/group
"${buildah[@]}" copy --quiet --chown "$uid:$uid" "$container" "$staging/home/regsweep" /home/regsweep
"${buildah[@]}" copy --quiet --chmod 1777 "$container" "$staging/tmp" /tmp

source_url=${IMAGE_SOURCE:-}
if [ -z "$source_url" ]; then
  remote=$(git remote get-url origin 2>/dev/null || true)
  case "$remote" in https://*) source_url=$remote ;; *) source_url=unknown ;; esac
fi
"${buildah[@]}" config \
  --entrypoint '["/usr/local/bin/regsweep"]' \
  --cmd '["--help"]' \
  --user "$uid:$uid" \
  --workingdir /home/regsweep \
  --env HOME=/home/regsweep \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=regsweep \
  --label "org.opencontainers.image.description=List, inspect and clean up images in Docker/OCI registries, and garbage-collect their storage" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.licenses=MIT OR Apache-2.0" \
  --label "org.opencontainers.image.source=$source_url" \
  --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  "$container"
"${buildah[@]}" commit --quiet --rm "$container" "$image" >/dev/null
container=""
echo "$image"
