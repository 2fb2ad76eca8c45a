#!/usr/bin/env bash
# gc benchmark: generate a large distribution storage tree, then time distribution's
# `docker-registry garbage-collect --dry-run` against `regsweep gc --dry-run` on it, with and
# without --delete-untagged, in one run (wall time, peak memory, ratios).
#
#   bench/gc/run.sh                 # 240 repositories, ~33k blobs
#   bench/gc/run.sh --scale 5       # 5x the repositories (~165k blobs)
#   bench/gc/run.sh --dir /tmp/t    # reuse (or create) the tree in /tmp/t
#   bench/gc/run.sh --runs 9
#
# Needs: python3, GNU time (apt-get install -y time), docker-registry (apt-get install -y
# docker-registry). Builds regsweep in release mode (honours CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1
runs=5
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v docker-registry >/dev/null || { echo "docker-registry missing: apt-get install -y docker-registry" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time missing: apt-get install -y time" >&2; exit 1; }

cargo build --release --locked --quiet
bin="${CARGO_TARGET_DIR:-target}/release/regsweep"

cleanup=""
if [ -z "$dir" ]; then
  dir="$(mktemp -d "${TMPDIR:-/tmp}/regsweep-gc-tree-XXXXXX")"
  cleanup="$dir"
fi
trap '[ -n "$cleanup" ] && rm -rf "$cleanup"' EXIT

if [ ! -f "$dir/config.yml" ]; then
  echo "generating the storage tree in $dir (scale $scale)..." >&2
  python3 bench/gc/gen_storage.py --out "$dir" --scale "$scale" >&2
fi

python3 bench/gc/compare.py --bin "$bin" --config "$dir/config.yml" --runs "$runs"
