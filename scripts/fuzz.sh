#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 30), starting
# from the corpus in fuzz/corpus/. Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly
# toolchain (`rustup toolchain install nightly`); with only a stable toolchain, set
# FUZZ_STABLE=1 to let cargo-fuzz use nightly features of stable rustc (RUSTC_BOOTSTRAP).
# New inputs are added to the corpus; a crash leaves its input in fuzz/artifacts/ and fails.
# On stable, `cargo test` replays the corpus anyway (src/fuzzing.rs).
#
# FUZZ_RUNS=N FUZZ_SEED=S bound each target by a number of inputs from a fixed seed instead of a
# time: the same code explores the same inputs on any machine, so a check that passed here passes
# in CI, and a crash found there is found again here. CI uses this; exploring for new crashes is
# a longer, time-bounded run here (a crash it finds goes into the corpus with its fix).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz'" >&2
  exit 1
fi
toolchain=()
if [ "${FUZZ_STABLE:-}" = 1 ]; then
  export RUSTC_BOOTSTRAP=1
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "no nightly toolchain: install one with 'rustup toolchain install nightly', or set FUZZ_STABLE=1" >&2
  exit 1
fi

if [ -n "${FUZZ_RUNS:-}" ]; then
  bound=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}")
  what="$FUZZ_RUNS inputs from seed ${FUZZ_SEED:-1}"
else
  bound=(-max_total_time="$seconds")
  what="${seconds}s"
fi

for target in $(cargo "${toolchain[@]}" fuzz list); do
  echo "fuzzing $target: $what" >&2
  cargo "${toolchain[@]}" fuzz run -O "$target" "fuzz/corpus/$target" -- \
    "${bound[@]}" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==|SUMMARY|Done)' || true
  # cargo fuzz exits non-zero on a crash; grep above hides the status, so check artifacts.
  if compgen -G "fuzz/artifacts/$target/crash-*" >/dev/null; then
    echo "fuzz target $target crashed: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
