#!/usr/bin/env bash
# Opens `regsweep du --html` of a sample registry in a real headless browser (Debian chromium),
# takes a screenshot and checks that the page rendered: right size, mostly drawn, many colours
# (the treemap). Run by .ci/run; a script rather than a cargo test because chromium is a large
# install that only this check needs. Leaves the page and the PNG in $1 (default: a temporary
# folder that is removed).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
  echo "needs a headless browser: apt-get install -y chromium" >&2
  exit 1
fi
cargo build --quiet --locked --workspace --bins
work=$(mktemp -d)
keep=${1:-}
# shellcheck source=scripts/lib/registry.sh
. scripts/lib/registry.sh
cleanup() { stop_registry; rm -rf "$work"; }
trap cleanup EXIT

start_sample_registry
target/debug/regsweep --quiet du "$registry_host" --html "$work/du.html" >/dev/null
target/debug/regsweep --quiet plan "$registry_host" --keep-tags latest --keep-newest 2 --html "$work/plan.html" >/dev/null
stop_registry

for page in du plan; do
  # No network: the page is a local file and must need nothing else; a fresh profile each run.
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile-$page" --window-size=1200,900 \
    --screenshot="$work/$page.png" "file://$work/$page.html" 2>"$work/chromium-$page.log" || {
    cat "$work/chromium-$page.log" >&2
    exit 1
  }
  python3 scripts/png_stats.py "$work/$page.png" 1200 900 8 20
done
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  cp "$work"/du.html "$work"/du.png "$work"/plan.html "$work"/plan.png "$keep"/
fi
