#!/usr/bin/env bash
# The long-context throughput suite: how much more work this machine does at long context with
# KV compression, at what quality, under a fixed KV memory budget.
#
# For each worker count, KV method and context length it starts emserve (SmolLM2, local workers,
# --kv-memory = the fixed budget split between the workers, --metrics-listen), sends R
# passkey-retrieval prompts of exactly that many tokens at once (real prose as filler: GPL-3 and
# GFDL-1.3 from /usr/share/common-licenses), and lets the scheduler's KV memory budget decide how
# many run together. Writes bench/results/longctx.csv (one row per point, columns below),
# longctx.md (table) and, with gnuplot, longctx_context.png (output tokens/s vs context per
# method, and below it the passkey accuracy of the same requests) and longctx_workers.png (output
# tokens/s vs workers). Progress goes to stderr.
#
#   bench/longctx/run.sh [--quick] [--addr HOST:PORT] [--metrics HOST:PORT]
#     --quick       contexts 1K/2K, full / EMS B=256 / int4, 1 worker, 4 requests of 32 tokens
#     --addr        drive a running deployment instead (its own --kv-memory and workers; pass
#                   --metrics HOST:PORT for running_max, -1 otherwise)
#     --plot-only   tables and plots from the existing CSV (same grid variables)
#   env: EMSERVE_LONGCTX_MEMORY (total KV bytes, default 1073741824), EMSERVE_MODEL,
#        LONGCTX_CONTEXTS, LONGCTX_WORKERS, LONGCTX_REQUESTS, LONGCTX_MAX_TOKENS,
#        LONGCTX_METHODS ("method:budget:quant[:k=v,k=v] ...", quant "-" = none; the optional
#        fourth field adds KV parameters, e.g. "ems:256:-:prefill_keep=512" for bounded prefill,
#        labelled "ems+keep512" in the CSV) override the grid; LONGCTX_FORMAT chat (default,
#        the ChatML question as eval/longctx asks) or raw; LONGCTX_NAME (default longctx) names
#        the output files; LONGCTX_SERVER_ARGS adds emserve flags (e.g. "--prefill-chunk 64":
#        with the default chunk = --max-batch-tokens one step carries one prompt's chunk, so at
#        most one request is in prefill at a time whatever the memory); LONGCTX_IGNORE_EOS 1
#        (default: every request generates exactly its max tokens, so tokens/s counts the same
#        work for every method; the passkey is judged on the text up to the first end of turn)
#        or 0 (requests stop at their end of turn).
#
# CSV columns: method,budget,context,workers,kv_memory_bytes,out_tok_s,ttft_p50_ms,ttft_p99_ms,
# itl_p50_ms,itl_p99_ms,kv_bytes_per_req,running_max,passkey_ok,passkey_n,requests,max_tokens,
# failed,wall_s,ignore_eos (method "full" = uncompressed cache; kv_bytes_per_req = entries held at the end
# x bytes per entry, summed over workers; running_max from emserve_num_requests_running_max).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=0 ADDR="" METRICS="" PLOT_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --plot-only) PLOT_ONLY=1; shift ;;
    --addr) ADDR=$2; shift 2 ;;
    --metrics) METRICS=$2; shift 2 ;;
    *) echo "usage: $0 [--quick] [--addr HOST:PORT] [--metrics HOST:PORT] [--plot-only]" >&2
       exit 2 ;;
  esac
done
OUT=bench/results
NAME=${LONGCTX_NAME:-longctx}
CSV=$OUT/$NAME.csv
MEM=${EMSERVE_LONGCTX_MEMORY:-1073741824}
MODEL=${EMSERVE_MODEL:-/var/cache/emserve/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ $QUICK = 1 ]; then
  CONTEXTS=${LONGCTX_CONTEXTS:-"1024 2048"} WORKERS=${LONGCTX_WORKERS:-"1"}
  REQ=${LONGCTX_REQUESTS:-4} GEN=${LONGCTX_MAX_TOKENS:-32}
  METHODS=("full 0 -" "ems 256 -" "full 0 int4")
else
  CONTEXTS=${LONGCTX_CONTEXTS:-"1024 2048 4096 8000"} WORKERS=${LONGCTX_WORKERS:-"1 2 3"}
  REQ=${LONGCTX_REQUESTS:-16} GEN=${LONGCTX_MAX_TOKENS:-64}
  METHODS=("full 0 -" "ems 128 -" "ems 256 -" "ems 512 -" "snapkv 256 -" "full 0 int4"
           "ems 256 int4")
fi
if [ -n "${LONGCTX_METHODS:-}" ]; then # e.g. "full:0:- ems:256:- full:0:int4"
  METHODS=()
  for m in $LONGCTX_METHODS; do METHODS+=("${m//:/ }"); done
fi
FORMAT=${LONGCTX_FORMAT:-chat}
IGNORE_EOS=${LONGCTX_IGNORE_EOS:-1}
SERVER_ARGS=${LONGCTX_SERVER_ARGS:-} # extra emserve flags, e.g. "--prefill-chunk 64"
# The CSV label of a grid entry: method (or the quant alone for full), +quant, +keepN / +k=v.
label_of() { # method budget quant [extras]
  local l=$1
  [ "$3" != - ] && { [ "$1" = full ] && l=$3 || l=$1+$3; }
  local e
  for e in ${4//,/ }; do
    case $e in prefill_keep=*) l+="+keep${e#prefill_keep=}" ;; *) l+="+$e" ;; esac
  done
  echo "$l"
}
mkdir -p "$OUT"
# Runs every point of the grid into $CSV.
measure() {
  TEXT=$(mktemp)
  # real prose: GPL-3 then GFDL-1.3 (Debian's base-files, the eval's needle haystack); the
  # project's READMEs (markdown, code and numbers everywhere) made the uncompressed model itself
  # miss the key (0/4 at 2K with the chat question), so they are only the fallback
  local lic=/usr/share/common-licenses
  if [ -r $lic/GPL-3 ] && [ -r $lic/GFDL-1.3 ]; then
    cat $lic/GPL-3 $lic/GFDL-1.3 > "$TEXT"
  else
    cat README.md deploy/README.md eval/README.md ems/README.md > "$TEXT"
  fi
  bazel build -c opt //bench/longctx:longctx_bench //coordinator:emserve //worker:emserve_worker >&2
  BIN=$(bazel info -c opt bazel-bin 2>/dev/null)
  rm -f "$CSV"
  SERVER_PID=""
  stop_server() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; SERVER_PID=""; }
  trap 'stop_server; rm -f "$TEXT"' EXIT

  start_server() { # workers -> sets SERVE_ADDR, SERVE_METRICS
    local w=$1 log
    log=$(mktemp)
    local port=$((20000 + RANDOM % 20000))
    "$BIN/coordinator/emserve" --model "$MODEL" --workers "$w" --listen 127.0.0.1:0 \
        --kv-memory $((MEM / w)) --metrics-listen "127.0.0.1:$port" \
        --worker-bin "$BIN/worker/emserve_worker" ${SERVER_ARGS} > "$log" 2>"$log.err" &
    SERVER_PID=$!
    for _ in $(seq 600); do
      grep -q "^listening on" "$log" && break
      kill -0 "$SERVER_PID" 2>/dev/null || { cat "$log.err" >&2; exit 1; }
      sleep 0.5
    done
    SERVE_ADDR=$(sed -n 's/^listening on //p' "$log" | head -1)
    SERVE_METRICS=127.0.0.1:$port
    rm -f "$log" "$log.err"
  }

  total=0
  for w in $WORKERS; do for m in "${METHODS[@]}"; do for c in $CONTEXTS; do total=$((total + 1)); done; done; done
  n=0
  for w in $WORKERS; do
    for m in "${METHODS[@]}"; do
      read -r method budget quant extras <<< "$m"
      for c in $CONTEXTS; do
        n=$((n + 1))
        echo "[$n/$total] workers $w, $method B=$budget quant=$quant ${extras:-}, context $c" >&2
        if [ -n "$ADDR" ]; then
          A=$ADDR; MX=$METRICS
        else
          start_server "$w"; A=$SERVE_ADDR; MX=$SERVE_METRICS
        fi
        args=(--addr "$A" --text "$TEXT" --context "$c" --requests "$REQ" --max-tokens "$GEN"
              --kv-method "$method" --workers "$w" --kv-memory "$MEM" --csv "$CSV"
              --format "$FORMAT" --ignore-eos "$IGNORE_EOS" --label "$(label_of "$method" "$budget" "$quant" "${extras:-}")")
        for e in ${extras//,/ }; do args+=(--kv "$e"); done
        [ "$budget" != 0 ] && args+=(--kv-budget "$budget")
        [ "$quant" != - ] && args+=(--kv-quant "$quant")
        [ -n "$MX" ] && args+=(--metrics "$MX")
        "$BIN/bench/longctx/longctx_bench" "${args[@]}" || echo "  (some requests failed)" >&2
        [ -z "$ADDR" ] && stop_server
      done
    done
  done
}
[ $PLOT_ONLY = 1 ] || measure

python3 - "$CSV" > "$OUT/$NAME.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
# "x full": out tok/s over the full cache's at the same context and workers in this run
full = {(r['context'], r['workers']): float(r['out_tok_s']) for r in rows if r['method'] == 'full'}
print("| method | B | context | workers | out tok/s | x full | requests/s | TTFT p50 / p99 ms "
      "| ITL p50 / p99 ms | KV MiB/req | running max | passkey |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    done = int(r['requests']) - int(r['failed'])
    f = full.get((r['context'], r['workers']))
    x = f"{float(r['out_tok_s']) / f:.2f}" if f else "-"
    print(f"| {r['method']} | {r['budget']} | {r['context']} | {r['workers']} | {float(r['out_tok_s']):.2f} "
          f"| {x} "
          f"| {done / float(r['wall_s']):.4f} "
          f"| {float(r['ttft_p50_ms']):.0f} / {float(r['ttft_p99_ms']):.0f} "
          f"| {float(r['itl_p50_ms']):.0f} / {float(r['itl_p99_ms']):.0f} "
          f"| {float(r['kv_bytes_per_req'])/2**20:.1f} | {r['running_max']} "
          f"| {r['passkey_ok']}/{r['passkey_n']} |")
PY
cat "$OUT/$NAME.md"

command -v gnuplot >/dev/null || { echo "gnuplot not installed: tables only" >&2; exit 0; }
PLOT=$(mktemp -d)
w1=$(echo $WORKERS | cut -d' ' -f1)
cmax=$(echo $CONTEXTS | tr ' ' '\n' | sort -n | tail -1)
keys=()
for m in "${METHODS[@]}"; do
  read -r method budget quant extras <<< "$m"
  label=$(label_of "$method" "$budget" "$quant" "${extras:-}")
  k="${label}_$budget"; keys+=("$k")
  awk -F, -v l="$label" -v b="$budget" -v w="$w1" 'NR>1 && $1==l && $2==b && $4==w {print $3, $6, ($14 > 0 ? $13 / $14 : 0)}' "$CSV" | sort -n > "$PLOT/ctx_$k"
  awk -F, -v l="$label" -v b="$budget" -v c="$cmax" 'NR>1 && $1==l && $2==b && $3==c {print $4, $6}' "$CSV" | sort -n > "$PLOT/wk_$k"
done
title() { local k=$1; local b=${k##*_}; local l=${k%_*}; [ "$b" = 0 ] && echo "$l" || echo "$l B=$b"; }
ctx_plot="" pk_plot="" wk_plot=""
for k in "${keys[@]}"; do
  ctx_plot+="'$PLOT/ctx_$k' u 1:2 w lp lw 2 t '$(title "$k")', "
  pk_plot+="'$PLOT/ctx_$k' u 1:3 w lp lw 2 t '$(title "$k")', "
  wk_plot+="'$PLOT/wk_$k' u 1:2 w lp lw 2 t '$(title "$k")', "
done
# throughput (log scale) and, below it, the passkey accuracy of the same requests
gnuplot <<GP
set terminal pngcairo size 900,900 noenhanced
set output "$OUT/${NAME}_context.png"
set multiplot layout 2,1
set key top right
set grid
set logscale y
set ylabel "output tokens/s (all requests)"
set title "emserve, SmolLM2-135M: output tokens/s vs prompt length, $w1 worker(s), KV memory $((MEM / 1048576)) MiB ($(nproc) cores)"
set xlabel "prompt tokens"
plot ${ctx_plot%, }
unset logscale y
set yrange [-0.05:1.05]
set key bottom left
set ylabel "passkey found (fraction of the same requests)"
set title "passkey accuracy of those requests"
plot ${pk_plot%, }
unset multiplot
GP
if [ "$(echo $WORKERS | wc -w)" -gt 1 ]; then
  gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set key top right
set grid
set ylabel "output tokens/s (all requests)"
set output "$OUT/${NAME}_workers.png"
set title "output tokens/s vs workers, prompts of $cmax tokens, KV memory $((MEM / 1048576)) MiB"
set xlabel "workers"
set xtics 1
plot ${wk_plot%, }
GP
fi
rm -rf "$PLOT"
echo "wrote $CSV, $OUT/$NAME.md and the plots" >&2
