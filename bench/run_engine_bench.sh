#!/usr/bin/env bash
# Engine throughput benchmark: prompt processing (pp512) and decode (tg32) tokens/s for
# stories260K and random-weight models of the stories15M, stories110M and long-context (32K)
# shapes, at context depths 0/512/2048 (+8192 for the long-context shape), with 1 and 2
# threads. Writes bench/results/engine.{csv,md} and bench/results/engine_decode.png.
# Usage: bench/run_engine_bench.sh [--quick]   (--quick: stories260K and 15M only)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${1:-}
OUT=bench/results
MODELS=${EMSERVE_BENCH_MODELS:-/tmp/emserve-bench-models}
mkdir -p "$OUT" "$MODELS"
bazel build -c opt //bench:bench_engine //tools:make_model >/dev/null
BIN=$(bazel info -c opt bazel-bin 2>/dev/null)
STORIES=${EMSERVE_TEST_MODEL:-../shared/models/stories260K.gguf}

for preset in stories15M stories110M long32k; do
  [ -f "$MODELS/$preset.gguf" ] || "$BIN/tools/make_model" --preset "$preset" --out "$MODELS/$preset.gguf" >&2
done

CSV=$OUT/engine.csv
echo "model,kv,threads,test,depth,tok_s" > "$CSV"
run() { # label path threads depths...
  local label=$1 path=$2 th=$3; shift 3
  local args=()
  for d in "$@"; do args+=(--depth "$d"); done
  echo ">> $label, $th thread(s), depths $*" >&2
  "$BIN/bench/bench_engine" --model "$path" --label "$label" --threads "$th" "${args[@]}" \
    --csv "$CSV" --reps 2 >&2
}
for th in 1 2; do
  run stories260K "$STORIES" "$th" 0 512 2048
  run stories15M "$MODELS/stories15M.gguf" "$th" 0 512 2048
  if [ "$QUICK" != "--quick" ]; then
    run stories110M "$MODELS/stories110M.gguf" "$th" 0 512 2048
    run long32k "$MODELS/long32k.gguf" "$th" 0 512 2048 8192
  fi
done

# Markdown table: one row per model/threads/test, one column per depth.
python3 - "$CSV" > "$OUT/engine.md" <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1])))
depths = sorted({int(r["depth"]) for r in rows})
table = collections.OrderedDict()
for r in rows:
    table.setdefault((r["model"], r["threads"], r["test"]), {})[int(r["depth"])] = float(r["tok_s"])
print("| model | threads | test | " + " | ".join(f"depth {d}" for d in depths) + " |")
print("|---|---|---|" + "---|" * len(depths))
for (m, t, test), v in table.items():
    print(f"| {m} | {t} | {test} | " + " | ".join(f"{v[d]:.1f}" if d in v else "-" for d in depths) + " |")
PY
cat "$OUT/engine.md"

# Plot: decode tokens/s against depth, one line per model and thread count (log y).
GP=$(mktemp)
{
  echo "set terminal pngcairo size 900,560 noenhanced"
  echo "set output '$OUT/engine_decode.png'"
  echo "set title 'emserve decode tokens/s vs context depth (CPU, $(nproc) cores)'"
  echo "set xlabel 'context depth (tokens)'; set ylabel 'decode tokens/s'; set logscale y; set grid"
  echo "set key outside right"
  echo "set datafile separator ','"
  printf "plot "
  first=1
  for m in $(awk -F, 'NR>1{print $1}' "$CSV" | sort -u); do
    for th in 1 2; do
      [ $first -eq 1 ] || printf ", "
      first=0
      printf "'< grep -E \"^%s,[^,]*,%s,tg\" %s' using 5:6 with linespoints title '%s %st'" "$m" "$th" "$CSV" "$m" "$th"
    done
  done
  echo
} > "$GP"
gnuplot "$GP" && echo "wrote $OUT/engine_decode.png"
rm -f "$GP"
