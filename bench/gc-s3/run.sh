#!/usr/bin/env bash
# gc on S3 benchmark (not a test): generate a distribution storage tree with bench/gc's generator,
# load it into moto (an S3 server on loopback), then run distribution's `garbage-collect --dry-run`
# and `regsweep gc --dry-run` (both modes) on the same bucket, directly against moto and through a
# loopback proxy adding a fixed latency per request, plus `regsweep gc` for real at the end. Prints
# wall time, S3 requests (counted at the proxy), peak memory and what each would delete, and the
# ratios. With --scaling, measures instead how regsweep's time and memory grow with the data.
#
#   bench/gc-s3/run.sh                         # 200 repositories, ~5,300 manifests, ~23k blobs
#   bench/gc-s3/run.sh --repos 40 --images 6   # a quick run
#   bench/gc-s3/run.sh --distribution-latency estimate   # skip distribution's proxied runs (hours)
#   bench/gc-s3/run.sh --distribution-limit 30  # stop each distribution run after 30 minutes:
#                                              # its figures (and the ratios) become lower bounds
#   bench/gc-s3/run.sh --scaling "1 2 3" --repos 40      # regsweep on 1x, 2x, 3x the data
#   bench/gc-s3/run.sh --bin PATH              # this regsweep binary instead of a release build
#
# Loading moto takes minutes (it stores ~100-150 objects/s), and distribution's collector sends
# one request at a time, each ~20 ms on moto here (more as the bucket grows): the full-size run
# takes hours (loading 5-20 minutes; distribution's default mode needs about 40 minutes for its
# mark phase alone, --delete-untagged over 40 minutes for 178 of 200 repositories). The README's
# figures: --repos 24 --distribution-latency estimate (~15 minutes); the full size with
# --distribution-latency estimate --distribution-limit 40 (~1 h 45 min); --scaling "1 3 5"
# --repos 12 (~15 minutes).
# Needs: python3, GNU time (apt-get install -y time), docker-registry (apt-get install -y
# docker-registry), moto_server (pip install 'moto[server]').
set -euo pipefail
cd "$(dirname "$0")/../.."

repos=200
images=10
latency=20
dist_latency=run
dist_limit=()
scales=""
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --repos) repos="$2"; shift 2 ;;
    --images) images="$2"; shift 2 ;;
    --latency-ms) latency="$2"; shift 2 ;;
    --distribution-latency) dist_latency="$2"; shift 2 ;;
    --distribution-limit) dist_limit=(--distribution-limit-min "$2"); shift 2 ;;
    --scaling) scales="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v docker-registry >/dev/null || { echo "docker-registry missing: apt-get install -y docker-registry" >&2; exit 1; }
command -v moto_server >/dev/null || { echo "moto_server missing: pip install 'moto[server]'" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time missing: apt-get install -y time" >&2; exit 1; }

if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/regsweep"
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/regsweep-gc-s3-XXXXXX")"
trap 'rm -rf "$dir"' EXIT
if [ -n "$scales" ]; then
  trees=()
  for scale in $scales; do
    python3 bench/gc/gen_storage.py --out "$dir/x$scale" --repos "$repos" --images "$images" --scale "$scale" >&2
    trees+=(--tree "$dir/x$scale")
  done
  python3 bench/gc-s3/s3bench.py --bin "$bin" --scaling "${trees[@]}"
else
  python3 bench/gc/gen_storage.py --out "$dir" --repos "$repos" --images "$images" >&2
  python3 bench/gc-s3/s3bench.py --bin "$bin" --tree "$dir" --latency-ms "$latency" \
    --distribution-latency "$dist_latency" "${dist_limit[@]}"
fi
