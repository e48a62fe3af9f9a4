#!/bin/bash
# Runs the service benchmark and plots it: bench/results/service.md (table), service.tsv (data),
# service_throughput.png, service_latency.png, service_context.png.
# Usage: bench/service/run.sh [--gen N] [--quick]     (from the workspace root; ~2-4 min)
#        bench/service/run.sh --plot-only              (re-plot the existing service.tsv)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=bench/results
mkdir -p "$OUT"
if [ "${1:-}" != "--plot-only" ]; then
    bazel build //bench/service:service_bench
    BIN=$(bazel info bazel-bin 2>/dev/null)/bench/service/service_bench
    "$BIN" --out "$OUT" "$@" 2> "$OUT/service_bench.log"
fi
DATA="$OUT/service.tsv"
for w in 1 2; do for e in 0 1; do
    awk -v w=$w -v e=$e -F'\t' 'NR > 1 && $1 == w && $2 == e && $4 == 128' "$DATA" | sort -n -k3 > "$OUT/.svc_c_${w}_${e}.tsv"
    awk -v w=$w -v e=$e -F'\t' 'NR > 1 && $1 == w && $2 == e && $3 == 8' "$DATA" | sort -n -k4 > "$OUT/.svc_x_${w}_${e}.tsv"
done; done
if ! command -v gnuplot >/dev/null; then echo "gnuplot not installed: tables only"; exit 0; fi
gnuplot <<GP
set terminal pngcairo size 900,560 font "sans,11"
set datafile separator "\t"
set key top left
set grid
set logscale x 2
set xlabel "concurrent streams (context 128 tokens, 32 generated each)"
set output "$OUT/service_throughput.png"
set title "emserve gRPC service: generated tokens/s vs concurrency (stories260K, 2 vCPUs)"
set ylabel "tokens/s"
plot "$OUT/.svc_c_1_0.tsv" u 3:6 w lp lw 2 t "1 worker, full KV", \
     "$OUT/.svc_c_1_1.tsv" u 3:6 w lp lw 2 t "1 worker, EMS B=64", \
     "$OUT/.svc_c_2_0.tsv" u 3:6 w lp lw 2 t "2 workers, full KV", \
     "$OUT/.svc_c_2_1.tsv" u 3:6 w lp lw 2 t "2 workers, EMS B=64"
set output "$OUT/service_latency.png"
set xlabel "concurrent streams"
set multiplot layout 1,2 title "latency percentiles vs concurrency (context 128, 32 generated tokens each)"
set logscale y
set title "time to first token"
set ylabel "ms"
plot "$OUT/.svc_c_1_0.tsv" u 3:7 w lp lw 2 t "1w full p50", "$OUT/.svc_c_1_0.tsv" u 3:9 w lp dt 2 t "1w full p99", \
     "$OUT/.svc_c_2_0.tsv" u 3:7 w lp lw 2 t "2w full p50", "$OUT/.svc_c_2_0.tsv" u 3:9 w lp dt 2 t "2w full p99", \
     "$OUT/.svc_c_2_1.tsv" u 3:7 w lp lw 2 t "2w EMS p50"
set title "inter-token latency"
plot "$OUT/.svc_c_1_0.tsv" u 3:10 w lp lw 2 t "1w full p50", "$OUT/.svc_c_1_0.tsv" u 3:12 w lp dt 2 t "1w full p99", \
     "$OUT/.svc_c_2_0.tsv" u 3:10 w lp lw 2 t "2w full p50", "$OUT/.svc_c_2_0.tsv" u 3:12 w lp dt 2 t "2w full p99", \
     "$OUT/.svc_c_2_1.tsv" u 3:10 w lp lw 2 t "2w EMS p50"
unset multiplot
unset logscale y
set output "$OUT/service_context.png"
set multiplot layout 1,2 title "8 concurrent streams vs prompt length"
set xlabel "prompt tokens"
set title "generated tokens/s"
set ylabel "tokens/s"
plot "$OUT/.svc_x_1_0.tsv" u 4:6 w lp lw 2 t "1w full", "$OUT/.svc_x_1_1.tsv" u 4:6 w lp lw 2 t "1w EMS", \
     "$OUT/.svc_x_2_0.tsv" u 4:6 w lp lw 2 t "2w full", "$OUT/.svc_x_2_1.tsv" u 4:6 w lp lw 2 t "2w EMS"
set title "TTFT p50"
set ylabel "ms"
plot "$OUT/.svc_x_1_0.tsv" u 4:7 w lp lw 2 t "1w full", "$OUT/.svc_x_1_1.tsv" u 4:7 w lp lw 2 t "1w EMS", \
     "$OUT/.svc_x_2_0.tsv" u 4:7 w lp lw 2 t "2w full", "$OUT/.svc_x_2_1.tsv" u 4:7 w lp lw 2 t "2w EMS"
unset multiplot
GP
rm -f "$OUT"/.svc_*.tsv
echo "wrote $OUT/service.md and $OUT/service_{throughput,latency,context}.png"
