#!/usr/bin/env bash
# Registry-side benchmarks, on one registry filled once (200 repositories x 50 tags, every 10th
# tag a 2-platform index), each compared with a real peer in the same run:
#   1. `regsweep du` full scan vs `wrk` GETting the same manifests at the same concurrency;
#   2. `regsweep plan` (keep the newest 10 per repository) vs that `du` scan;
#   3. `regsweep apply` of that plan vs `wrk` DELETEing the same manifests on a copy of the
#      storage (the registry's DELETE capacity).
# Prints rates, ratios and regsweep's peak memory.
#
#   bench/registry/run.sh
#   REPOS=400 TAGS=50 CONCURRENCY=16 bench/registry/run.sh
#
# Needs: docker-registry, wrk, GNU time (apt-get install -y docker-registry wrk time), python3.
# Storage goes under $TMPDIR; a tmpfs such as /dev/shm keeps the filesystem out of the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPOS=${REPOS:-200}
TAGS=${TAGS:-50}
MULTIARCH_EVERY=${MULTIARCH_EVERY:-10}
CONCURRENCY=${CONCURRENCY:-8}
RUNS=${RUNS:-3}

for tool in docker-registry wrk /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y docker-registry wrk time python3" >&2; exit 1; }
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
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f\n", a - b }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

serve "$work/root"
host=${url#http://}
echo "filling $url with $REPOS repositories x $TAGS tags (every ${MULTIARCH_EVERY}th multi-arch)..."
"$bin/regsweep-testkit" fill "$url" --repos "$REPOS" --tags "$TAGS" --multiarch-every "$MULTIARCH_EVERY" --concurrency 16
python3 bench/registry/paths.py "$url" >"$work/paths.txt"
manifests=$(wc -l <"$work/paths.txt")

# 1. du vs wrk, interleaved so that both see the same machine; medians count.
"$bin/regsweep" --quiet du -j "$CONCURRENCY" "$host" >/dev/null # warm-up
: >"$work/du.rates"; : >"$work/wrk.rates"; : >"$work/du.secs"; : >"$work/rss"
for _ in $(seq "$RUNS"); do
  /usr/bin/time -f "%M" -a -o "$work/rss" "$bin/regsweep" -v du -j "$CONCURRENCY" "$host" >/dev/null 2>"$work/du.err"
  grep -oE '\(([0-9]+) requests/s\)' "$work/du.err" | tr -dc '0-9\n' >>"$work/du.rates"
  grep -oE 'in [0-9.]+s' "$work/du.err" | tr -dc '0-9.\n' >>"$work/du.secs"
  PATHS_FILE="$work/paths.txt" wrk -t1 -c"$CONCURRENCY" -d5s -s bench/registry/manifests.lua "$url" |
    awk '/Requests\/sec/ {print int($2)}' >>"$work/wrk.rates"
done
du_rate=$(median <"$work/du.rates"); wrk_rate=$(median <"$work/wrk.rates"); du_secs=$(median <"$work/du.secs")
du_rss=$(median <"$work/rss")

# 2. plan (keep the newest 10 by version) vs du.
: >"$work/plan.secs"; : >"$work/plan.rss"
for _ in $(seq "$RUNS"); do
  start=$(now)
  /usr/bin/time -f "%M" -a -o "$work/plan.rss" "$bin/regsweep" --quiet plan --keep-newest 10 --order semver -j "$CONCURRENCY" "$host" -o "$work/plan.json" >/dev/null
  since "$start" >>"$work/plan.secs"
done
plan_secs=$(median <"$work/plan.secs"); plan_rss=$(median <"$work/plan.rss")
python3 bench/registry/plan_paths.py <"$work/plan.json" >"$work/deletes.txt"
deletes=$(wc -l <"$work/deletes.txt")

# 3. apply vs the registry's DELETE capacity on an identical copy of the storage.
for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
pids=()
cp -a "$work/root" "$work/copy"
serve "$work/copy"
wrk_out=$(PATHS_FILE="$work/deletes.txt" wrk -t1 -c"$CONCURRENCY" -d"${WRK_DELETE_SECONDS:-4}s" -s bench/registry/deletes.lua "$url")
echo "$wrk_out" | grep WARNING >&2 || true
wrk_delete_rate=$(echo "$wrk_out" | awk '/Requests\/sec/ {print int($2)}')
for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
pids=()
serve "$work/root"
# The plan names the registry by host:port; the restarted registry has another port.
sed -i "s/\"registry\": \"$host\"/\"registry\": \"${url#http://}\"/" "$work/plan.json"
start=$(now)
"$bin/regsweep" --quiet --json apply --yes -j "$CONCURRENCY" "$work/plan.json" >"$work/apply.json"
apply_secs=$(since "$start")
applied=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(len(r["deleted"]), len(r["failed"]), len(r["skipped"]))' "$work/apply.json")

echo
echo "registry: $REPOS repositories x $TAGS tags, $manifests manifests; concurrency $CONCURRENCY; medians of $RUNS runs"
echo "du:    regsweep $du_rate requests/s ($du_secs s), wrk $wrk_rate requests/s on the same GETs: ratio $(ratio "$du_rate" "$wrk_rate") (target >= 0.80); peak RSS $((du_rss / 1024)) MiB (target < 100)"
echo "plan:  keep-newest-10 over the whole registry in $plan_secs s vs du $du_secs s: ratio $(ratio "$plan_secs" "$du_secs") (target <= 1.50); peak RSS $((plan_rss / 1024)) MiB"
apply_rate=$(ratio "$deletes" "$apply_secs")
echo "apply: $deletes manifest deletions in $apply_secs s = $apply_rate/s (deleted, failed, skipped: $applied);"
echo "       wrk DELETE of the same manifests on a copy: $wrk_delete_rate/s; ratio $(ratio "$apply_rate" "$wrk_delete_rate") (target >= 0.70)"
