#!/usr/bin/env bash
# Builds (fuzz/build.sh) and runs every libFuzzer target for a bounded time, starting from its
# committed corpus (fuzz/corpus/<t>/; new inputs go to a scratch folder, not into the tree).
# Fails when any target finds a crash, a sanitizer report, a leak, a failed property or an
# input slower than 10 s; the input is saved as $FUZZ_BUILD_DIR/artifacts/<t>-crash-... (add it
# to fuzz/corpus/<t>/ as found-<what> once fixed: //fuzz:<t>_replay then replays it forever).
#   fuzz/run.sh [--seconds N] [--seed S] [TARGET...]  (default 20 s per target, all targets)
# The seed is fixed (1) by default so that a CI run explores the same inputs each time (a
# gate must not turn red by chance); --seed 0 lets libFuzzer pick one (for hunting).
# A target whose model is absent prints SKIPPED and counts as skipped. Last line:
# "fuzz: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=20
SEED=1
TARGETS=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf tok_spm tok_bpe request step_worker step_reply)
OUT=${FUZZ_BUILD_DIR:-$PWD/.fuzz-build}
export FUZZ_BUILD_DIR=$OUT
bash fuzz/build.sh "${TARGETS[@]}" || { echo "fuzz: 0 passed, 1 failed, 0 skipped (build)"; exit 1; }

max_len() {
  case $1 in
    gguf) echo 16384 ;;
    step_reply) echo 2048 ;;
    *) echo 4096 ;;
  esac
}

pass=0 fail=0 skip=0
mkdir -p "$OUT/artifacts"
for t in "${TARGETS[@]}"; do
  work=$(mktemp -d)
  log="$OUT/$t.log"
  start=$(date +%s)
  "$OUT/bin/$t" -max_total_time="$SECONDS_PER" -max_len="$(max_len "$t")" -timeout=10 -seed="$SEED" \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
    "$work" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')
  rm -rf "$work"
  if grep -q '^SKIPPED' "$log"; then
    skip=$((skip + 1)); echo "   $t: $(grep -m1 '^SKIPPED' "$log")"
  elif [ "$rc" -eq 0 ]; then
    pass=$((pass + 1)); echo "   $t: ok, ${runs:-?} inputs in $(($(date +%s) - start)) s"
  else
    fail=$((fail + 1)); echo "   $t: FAILED (rc $rc), log $log:"
    grep -E 'ERROR|SUMMARY|fuzz property|Test unit written' "$log" | head -10 | sed 's/^/      /'
  fi
done
echo "fuzz: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
