#!/usr/bin/env bash
# bench/longctx's client (longctx_bench, what bench/longctx/run.sh runs for every point) against
# a real emserve on SmolLM2 (CI size: 2 passkey prompts of 256 tokens): the CSV row carries the
# documented columns; with --ignore-eos 1 (the default) every request generates exactly
# --max-tokens, so output tokens = requests x max tokens; each answer (--show 1) holds its key;
# --ignore-eos 0 is written to the CSV;
# the passkey count is over the requests; bad flags exit 2 with the usage.
# Prints SKIPPED when SmolLM2 is not installed.
set -uo pipefail
source "${TEST_SRCDIR:-.}/emserve/tests/service/python/svc_lib.sh" # R, TMP, start/stop_server
BENCH=$R/bench/longctx/longctx_bench
MODEL=${EMSERVE_MODEL:-${EMSERVE_MODEL_DIR:-/var/cache/emserve/models}/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$MODEL" ]; then echo "SKIPPED: SmolLM2 not installed"; exit 0; fi
fail() { echo "FAIL: $*"; tail -5 "$TMP/bench.err"; kill "$SRV_PID" 2>/dev/null; exit 1; }
cat > "$TMP/text.txt" <<'TXT'
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single
step. All that glitters is not gold. The early bird catches the worm, but the second mouse gets
the cheese. Rome was not built in a day, and neither was any good piece of software.
TXT
start_server bench "$MODEL" --kv-memory 256M || exit 1
addr=$GRPC_ADDR

CSV=$TMP/out.csv
"$BENCH" --addr "$addr" --text "$TMP/text.txt" --context 256 --requests 2 --max-tokens 24 \
    --show 1 --csv "$CSV" --label probe 2>"$TMP/b1.err" || { cat "$TMP/b1.err"; fail "bench exit"; }
"$BENCH" --addr "$addr" --text "$TMP/text.txt" --context 256 --requests 2 --max-tokens 24 \
    --ignore-eos 0 --kv-method ems --kv-budget 64 --csv "$CSV" 2>"$TMP/b2.err" ||
    { cat "$TMP/b2.err"; fail "bench exit (ignore-eos 0)"; }
cat "$TMP/b1.err"; echo; cat "$CSV"
head -1 "$CSV" | grep -q '^method,budget,context,workers,kv_memory_bytes,out_tok_s,ttft_p50_ms,ttft_p99_ms,itl_p50_ms,itl_p99_ms,kv_bytes_per_req,running_max,passkey_ok,passkey_n,requests,max_tokens,failed,wall_s,ignore_eos$' ||
    fail "CSV header"
[ "$(wc -l < "$CSV")" -eq 3 ] || fail "want 2 rows"
# row 1: label, 256-token context, 2 of 2 requests judged, none failed, ignore_eos 1, and
# exactly 2 x 24 tokens: out_tok_s x wall_s (rounded to 0.1 s) within 5 % of 48
awk -F, 'NR == 2 { ok = $1 == "probe" && $3 == 256 && $14 == 2 && $15 == 2 && $16 == 24 &&
                         $17 == 0 && $19 == 1 && $13 >= 0 && $13 <= 2 && $6 > 0 && $11 > 0;
                    t = $6 * $18; ok = ok && t > 48 * 0.95 - $6 * 0.05 && t < 48 * 1.05 + $6 * 0.05;
                    exit !ok }' "$CSV" || fail "row 1: $(sed -n 2p "$CSV")"
awk -F, 'NR == 3 { exit !($1 == "ems" && $2 == 64 && $19 == 0 && $14 == 2) }' "$CSV" ||
    fail "row 2: $(sed -n 3p "$CSV")"
# the answers: one per request, each holding its key (greedy, full cache, 256 tokens: the model
# answers "The pass key is NNNNN." and ends its turn; what it generates after that renders as
# no text here, so where the answer is cut is tested by //tests/bench:answer_test)
n=$(grep -c '^request [01], key [0-9]\{5\}: ' "$TMP/b1.err")
[ "$n" -eq 2 ] || fail "want 2 answers shown, got $n"
awk -F, 'NR == 2 { exit !($13 == 2) }' "$CSV" || fail "full cache: want both keys found"
grep '^request [01], key ' "$TMP/b1.err" | while read -r _ _ _ key answer; do
    key=${key%:}
    case $answer in *"$key"*) ;; *) echo "FAIL: answer '$answer' lacks $key"; exit 1 ;; esac
    [ ${#answer} -lt 48 ] || { echo "FAIL: answer too long: '$answer'"; exit 1; }
done || fail "answers"
# bad flags: exit 2 with the usage
"$BENCH" --addr "$addr" --text "$TMP/text.txt" --context 256 --ignore-eos 2 2>"$TMP/b3.err"
[ $? -eq 2 ] && grep -q "usage: longctx_bench" "$TMP/b3.err" || fail "--ignore-eos 2 accepted"
stop_server bench || exit 1
echo PASS
