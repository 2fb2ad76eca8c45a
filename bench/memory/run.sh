#!/usr/bin/env bash
# Peak memory of the registry-wide commands on the two shapes that stress it: one repository
# with 20,000 tags, and 1,000 repositories with 20 tags each (every 10th tag a 2-platform index).
# Each command runs once with GNU time; prints peak RSS against the 100 MB target, and the wall
# time. Over the API and, for planning, on the storage.
#
#   bench/memory/run.sh
#   BIG_TAGS=50000 MANY_REPOS=2000 bench/memory/run.sh
#
# Needs: docker-registry, GNU time (apt-get install -y docker-registry time).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIG_TAGS=${BIG_TAGS:-20000}
MANY_REPOS=${MANY_REPOS:-1000}
MANY_TAGS=${MANY_TAGS:-20}
CONCURRENCY=${CONCURRENCY:-8}

for tool in docker-registry /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y docker-registry time" >&2; exit 1; }
done

cargo build --release --quiet -p regsweep -p regsweep-testkit
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Starts a registry on storage $1; sets $url.
serve() {
  local out="$work/serve-$RANDOM.out"
  "$bin/regsweep-testkit" serve --root "$1" --log-level error </dev/null >"$out" 2>"$out.err" &
  pids+=("$!")
  for _ in $(seq 100); do grep -q READY "$out" 2>/dev/null && break; sleep 0.1; done
  url=$(awk '/READY/ {print $2}' "$out")
  [ -n "$url" ] || { cat "$out.err" >&2; exit 1; }
}

# measure NAME COMMAND...: one run, peak RSS in MiB and wall seconds.
measure() {
  local name=$1; shift
  local start end rss
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  end=$(date +%s.%N)
  rss=$(tail -1 "$work/rss")
  printf '  %-44s peak RSS %4d MiB (target < 100)  %7.1f s\n' "$name" $((rss / 1024)) "$(awk -v a="$end" -v b="$start" 'BEGIN {print a - b}')"
}

serve "$work/big"
big=${url#http://}
echo "filling $url with 1 repository x $BIG_TAGS tags..."
"$bin/regsweep-testkit" fill "$url" --repos 1 --tags "$BIG_TAGS" --multiarch-every 10 --concurrency 16 >/dev/null
serve "$work/many"
many=${url#http://}
echo "filling $url with $MANY_REPOS repositories x $MANY_TAGS tags..."
"$bin/regsweep-testkit" fill "$url" --repos "$MANY_REPOS" --tags "$MANY_TAGS" --multiarch-every 10 --concurrency 16 >/dev/null
repo=$("$bin/regsweep" repos "$big" | head -1)

echo
echo "1 repository x $BIG_TAGS tags:"
measure "tags --long" "$bin/regsweep" --quiet tags --long -j "$CONCURRENCY" "$big/$repo"
measure "du" "$bin/regsweep" --quiet du -j "$CONCURRENCY" "$big"
measure "plan --keep-newest 10 (API)" "$bin/regsweep" --quiet plan --keep-newest 10 --order semver -j "$CONCURRENCY" "$big" --json
measure "plan --keep-newest 10 --storage" "$bin/regsweep" --quiet plan --keep-newest 10 --order semver --storage "$work/big" --json
echo "$MANY_REPOS repositories x $MANY_TAGS tags:"
measure "du" "$bin/regsweep" --quiet du -j "$CONCURRENCY" "$many"
measure "plan --keep-newest 10 (API)" "$bin/regsweep" --quiet plan --keep-newest 10 --order semver -j "$CONCURRENCY" "$many" --json
measure "plan --keep-newest 10 --storage" "$bin/regsweep" --quiet plan --keep-newest 10 --order semver --storage "$work/many" --json
