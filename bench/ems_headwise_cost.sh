#!/bin/sh
# EMS head-wise parallel compression ablation, cost side: thread CPU ms (median of REPS) of
# one prefill-end step of bench:ems_step_bench on real SmolLM2 prompt caches (longctx
# --dump-cache), for head-wise adaptive budgets (the default; all heads of a layer at once:
# the budgets need every head), uniform budgets with all heads at once, and uniform budgets
# per head sequentially (--per-head: one step per (layer, head), checked bit-identical to the
# all-at-once step). Markdown table on stdout. Usage: bench/ems_headwise_cost.sh CACHE.bin...
# (env REPS, BUDGETS)
set -e
REPS=${REPS:-5}
BUDGETS=${BUDGETS:-"128 256"}
B=bazel-bin/bench/ems_step_bench
bazel build //bench:ems_step_bench >/dev/null 2>&1
cell() { # cache budget args... -> "cpu_ms" (+ " (differs!)" when --per-head found a difference)
    out=$("$B" --cache "$1" --reps "$REPS" --budget "$2" $3) || true
    ms=$(echo "$out" | sed -n 's/.*cpu \([0-9.]*\) ms median.*/\1/p' | head -1)
    if echo "$out" | grep -q "heads differing (any bit) [1-9]"; then ms="$ms (differs!)"; fi
    echo "$ms"
}
printf "| variant | B |"
for c in "$@"; do printf " %s |" "$(basename "$c" .bin)"; done
printf "\n|---|---|"
for c in "$@"; do printf -- "---|"; done
printf "\n"
for budget in $BUDGETS; do
    for v in "head-wise budgets, all heads at once (default)|" \
             "uniform budgets, all heads at once|--param ems.headwise=0" \
             "uniform budgets, per head sequentially|--param ems.headwise=0 --per-head" \
             "uniform, per head, separate evict/merge passes|--param ems.headwise=0 --param ems.zero_class=0 --per-head"; do
        label=${v%%|*} args=${v#*|}
        printf "| %s | %d |" "$label" "$budget"
        for c in "$@"; do printf " %s |" "$(cell "$c" "$budget" "$args")"; done
        printf "\n"
    done
done
