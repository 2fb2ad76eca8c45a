#!/usr/bin/env bash
# Planning on storage against planning over the API, on the same registry in one run: the
# registry of bench/registry (200 repositories x 50 tags, every 10th tag a 2-platform index),
# `regsweep plan --storage ROOT` vs `regsweep plan HOST` with the same policy (keep the newest
# 10 by version). Prints both times, the ratio, peak memory, and checks that both plans decide
# the same tags and delete the same manifests.
#
#   bench/storage-plan/run.sh
#   REPOS=400 TAGS=50 bench/storage-plan/run.sh
#
# Needs: docker-registry, GNU time (apt-get install -y docker-registry time), python3.
# Storage goes under $TMPDIR; a tmpfs such as /dev/shm keeps the disk out of the figures (and
# favours neither side: the registry reads the same files).
set -euo pipefail
cd "$(dirname "$0")/../.."

REPOS=${REPOS:-200}
TAGS=${TAGS:-50}
MULTIARCH_EVERY=${MULTIARCH_EVERY:-10}
CONCURRENCY=${CONCURRENCY:-8}
RUNS=${RUNS:-3}

for tool in docker-registry /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y docker-registry time python3" >&2; exit 1; }
done

cargo build --release --quiet -p regsweep -p regsweep-testkit
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

out="$work/serve.out"
"$bin/regsweep-testkit" serve --root "$work/root" --log-level error </dev/null >"$out" 2>"$out.err" &
pid=$!
for _ in $(seq 100); do grep -q READY "$out" 2>/dev/null && break; sleep 0.1; done
url=$(awk '/READY/ {print $2}' "$out")
[ -n "$url" ] || { cat "$out.err" >&2; exit 1; }
host=${url#http://}

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f\n", a - b }'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

echo "filling $url with $REPOS repositories x $TAGS tags (every ${MULTIARCH_EVERY}th multi-arch)..."
"$bin/regsweep-testkit" fill "$url" --repos "$REPOS" --tags "$TAGS" --multiarch-every "$MULTIARCH_EVERY" --concurrency 16

policy=(--keep-newest 10 --order semver)
: >"$work/api.secs"; : >"$work/api.rss"; : >"$work/storage.secs"; : >"$work/storage.rss"
for _ in $(seq "$RUNS"); do
  start=$(now)
  /usr/bin/time -f "%M" -a -o "$work/api.rss" \
    "$bin/regsweep" --quiet plan "${policy[@]}" -j "$CONCURRENCY" "$host" -o "$work/api.json" >/dev/null
  since "$start" >>"$work/api.secs"
  start=$(now)
  /usr/bin/time -f "%M" -a -o "$work/storage.rss" \
    "$bin/regsweep" --quiet plan "${policy[@]}" --storage "$work/root" -o "$work/storage.json" >/dev/null
  since "$start" >>"$work/storage.secs"
done
api_secs=$(median <"$work/api.secs"); storage_secs=$(median <"$work/storage.secs")
api_rss=$(median <"$work/api.rss"); storage_rss=$(median <"$work/storage.rss")

same=$(python3 - "$work/api.json" "$work/storage.json" <<'PY'
import json, sys
def decisions(path):
    plan = json.load(open(path))
    tags = {(r["repository"], t["tag"], t["action"]) for r in plan["repositories"] for t in r["tags"]}
    manifests = {(r["repository"], a["digest"]) for r in plan["repositories"] for a in r["actions"] if a["type"] == "delete-manifest"}
    return tags, manifests, plan["totals"]
a_tags, a_manifests, a_totals = decisions(sys.argv[1])
s_tags, s_manifests, s_totals = decisions(sys.argv[2])
if a_tags != s_tags or a_manifests != s_manifests:
    print(f"DIFFERENT: {len(a_tags ^ s_tags)} tag decisions and {len(a_manifests ^ s_manifests)} manifest deletions differ")
    sys.exit(1)
print(f"same decisions: {a_totals['tags_deleted']} of {a_totals['tags_deleted'] + a_totals['tags_kept']} tags deleted, {a_totals['manifests_deleted']} manifests, {a_totals['bytes_freed']} bytes freed")
PY
)

echo
echo "registry: $REPOS repositories x $TAGS tags; policy: ${policy[*]}; medians of $RUNS runs"
echo "plan over the API (-j $CONCURRENCY): $api_secs s, peak RSS $((api_rss / 1024)) MiB"
echo "plan --storage:            $storage_secs s, peak RSS $((storage_rss / 1024)) MiB (target < 100)"
echo "ratio: storage planning is $(ratio "$api_secs" "$storage_secs")x faster (target >= 10x)"
echo "$same"
