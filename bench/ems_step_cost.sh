#!/bin/sh
# Cost of one prefill-end compression on real SmolLM2 prompt caches (longctx --dump-cache),
# per method and EMS variant: thread CPU ms (median of REPS) of bench:ems_step_bench, as a
# markdown table on stdout. Usage: bench/ems_step_cost.sh CACHE.bin... (env REPS, BUDGETS)
set -e
REPS=${REPS:-5}
BUDGETS=${BUDGETS:-"128 256"}
B=bazel-bin/bench/ems_step_bench
bazel build //bench:ems_step_bench >/dev/null 2>&1
row() { # label, budget, cache, args...
    label=$1 budget=$2 cache=$3
    shift 3
    "$B" --cache "$cache" --reps "$REPS" --budget "$budget" "$@" |
        sed -n 's/.*len \([0-9]*\) .*cpu \([0-9.]*\) ms median.*wall \{0,1\}.*/\1 \2/p;s/.*len \([0-9]*\) .*, cpu \([0-9.]*\) ms median.*/\1 \2/p' |
        head -1 | awk -v l="$label" -v b="$budget" '{printf "| %s | %d | %d | %.1f |\n", l, $1, b, $2}'
}
echo "| method / variant | prompt tokens | B | CPU ms per step (median of $REPS) |"
echo "|---|---|---|---|"
for cache in "$@"; do
    for budget in $BUDGETS; do
        row "ems (default: zero class in one scatter)" "$budget" "$cache"
        row "ems, ems.zero_class=0 (evict pass, then merge pass)" "$budget" "$cache" --param ems.zero_class=0
        row "ems, ems.strategy=merge (no evict class)" "$budget" "$cache" --param ems.strategy=merge
        row "ems, ems.strategy=evict (no merging)" "$budget" "$cache" --param ems.strategy=evict
        for m in snapkv pyramidkv h2o tova roco; do
            row "$m" "$budget" "$cache" --method "$m"
        done
    done
done
