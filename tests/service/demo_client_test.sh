#!/bin/bash
# The README's two commands: `emserve --demo-prompt ... --exit-after-demo` prints a generation
# made through gRPC, and `emserve_client` (the C client) streams one from a running server.
# Both must print the golden ids of shared/models/README.md. The chat forms (--demo-chat,
# emserve_client --chat) get the clear "no supported chat template" error on this model, and
# emserve_client --tokenize prints the prompt ids.
set -u
R="${TEST_SRCDIR:-.}/emserve"
EMSERVE="$R/coordinator/emserve"
CLIENT="$R/coordinator/emserve_client"
WORKER="$R/worker/emserve_worker"
MODEL="${EMSERVE_TEST_MODEL:-}"
if [ -z "$MODEL" ]; then
    WS=$(dirname "$(readlink -f "$R/WORKSPACE")")
    MODEL="$WS/../shared/models/stories260K.gguf"
fi
[ -f "$MODEL" ] || { echo "SKIPPED: test model not found ($MODEL); set EMSERVE_TEST_MODEL"; exit 0; }
GOLDEN="432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310"
TMP="${TEST_TMPDIR:-/tmp}"
fails=0

# 1. one command: start, generate through gRPC, print, exit
out=$(timeout 120 "$EMSERVE" --model "$MODEL" --listen 127.0.0.1:0 --worker-bin "$WORKER" \
      --demo-prompt "Once upon a time" --demo-tokens 60 --demo-chat "Hello" --exit-after-demo \
      2>"$TMP/demo.err")
rc=$?
echo "$out"
if [ $rc -ne 0 ] || ! grep -q "^demo ids: $GOLDEN\$" <<<"$out" || \
   ! grep -q "Once upon a time, there was a little girl named Lily" <<<"$out"; then
    echo "FAIL: demo (rc $rc)"; tail -20 "$TMP/demo.err"; fails=$((fails+1))
fi
if ! grep -q "^demo user> Hello" <<<"$out" || \
   ! grep -q "^demo failed: status 3: messages: model has no supported chat template" <<<"$out"; then
    echo "FAIL: --demo-chat on a model without a chat template"; fails=$((fails+1))
fi

# 1b. more workers than KV heads is a clear start-up error
out=$(timeout 60 "$EMSERVE" --model "$MODEL" --workers 5 --listen 127.0.0.1:0 --worker-bin "$WORKER" 2>&1)
rc=$?
echo "$out" | tail -1
if [ $rc -ne 2 ] || ! grep -q "at least one of its 4" <<<"$out"; then
    echo "FAIL: --workers 5 (rc $rc)"; fails=$((fails+1))
fi

# 2. a running server and the C client
"$EMSERVE" --model "$MODEL" --listen 127.0.0.1:0 --workers 2 --worker-bin "$WORKER" \
    --metrics-listen 127.0.0.1:0 >"$TMP/server.out" 2>"$TMP/server.err" &
pid=$!
addr=""
for _ in $(seq 1 600); do
    addr=$(sed -n 's/^listening on //p' "$TMP/server.out" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "FAIL: server did not start"; tail -20 "$TMP/server.err"; kill $pid; exit 1
fi
health=$("$CLIENT" --addr "$addr" --health)
[ "$health" = "SERVING" ] || { echo "FAIL: health '$health'"; fails=$((fails+1)); }
out=$("$CLIENT" --addr "$addr" --prompt "Once upon a time" --max-tokens 60)
echo "$out"
grep -q "^ids: $GOLDEN\$" <<<"$out" || { echo "FAIL: client ids"; fails=$((fails+1)); }
grep -q "finish_reason: length, prompt 5, completion 60" <<<"$out" || { echo "FAIL: client usage"; fails=$((fails+1)); }
out=$("$CLIENT" --addr "$addr" --ids "1 403 407 261 378" --max-tokens 60 --kv-method ems --kv-budget 16)
echo "$out"
grep -q "kv entries 320 of 1280" <<<"$out" || { echo "FAIL: client with ems"; fails=$((fails+1)); }
"$CLIENT" --addr "$addr" --prompt "x" --max-tokens 0 >/dev/null 2>"$TMP/bad.err" && { echo "FAIL: --max-tokens 0 accepted"; fails=$((fails+1)); }
grep -q "max_tokens" "$TMP/bad.err" || { echo "FAIL: --max-tokens 0 message"; cat "$TMP/bad.err"; fails=$((fails+1)); }
# The client's flags go through common/flags: --flag=value, an environment twin, checked numbers.
out=$(EMSERVE_CLIENT_ADDR="$addr" "$CLIENT" --tokenize --prompt="Once upon a time")
[ "$out" = "ids: 1 403 407 261 378" ] || { echo "FAIL: --flag=value / EMSERVE_CLIENT_ADDR"; fails=$((fails+1)); }
for bad in "--temperature 0.5x" "--max-tokens 3abc" "--ids 1,x" "--seed -1" "--kv nokey"; do
    # shellcheck disable=SC2086
    "$CLIENT" --addr "$addr" --prompt "x" $bad >/dev/null 2>"$TMP/flag.err"
    rc=$?
    [ $rc -eq 2 ] && [ -s "$TMP/flag.err" ] || { echo "FAIL: client flag '$bad' gave rc $rc"; fails=$((fails+1)); }
done
out=$("$CLIENT" --addr "$addr" --tokenize --prompt "Once upon a time")
echo "$out"
[ "$out" = "ids: 1 403 407 261 378" ] || { echo "FAIL: --tokenize"; fails=$((fails+1)); }
"$CLIENT" --addr "$addr" --chat "Hello" --system "Be brief." >/dev/null 2>"$TMP/chat.err" && { echo "FAIL: --chat accepted"; fails=$((fails+1)); }
grep -q "model has no supported chat template" "$TMP/chat.err" || { echo "FAIL: --chat message"; cat "$TMP/chat.err"; fails=$((fails+1)); }
# Prometheus text endpoint (2 accepted requests: --max-tokens 0 was rejected before scheduling; port from the log line "metrics on http://... (port N)/metrics")
mport=$(sed -n 's/.*metrics on .*(port \([0-9]*\)).*/\1/p' "$TMP/server.err" | head -1)
if [ -n "$mport" ] && exec 3<>"/dev/tcp/127.0.0.1/$mport"; then
    printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
    metrics=$(cat <&3)
    exec 3<&-
    echo "$metrics" | grep '^emserve_'
    grep -q '^emserve_num_requests_running 0$' <<<"$metrics" || { echo "FAIL: running gauge"; fails=$((fails+1)); }
    grep -q '^emserve_num_requests_waiting 0$' <<<"$metrics" || { echo "FAIL: waiting gauge"; fails=$((fails+1)); }
    grep -q '^emserve_serving 1$' <<<"$metrics" || { echo "FAIL: serving gauge"; fails=$((fails+1)); }
    grep -q '^emserve_requests_total 2$' <<<"$metrics" || { echo "FAIL: requests_total"; fails=$((fails+1)); }
    grep -q '^emserve_generation_tokens_total 120$' <<<"$metrics" || { echo "FAIL: token counter"; fails=$((fails+1)); }
    grep -q '^emserve_time_to_first_token_seconds_count 2$' <<<"$metrics" || { echo "FAIL: TTFT histogram"; fails=$((fails+1)); }
    grep -q '^emserve_time_per_output_token_seconds_count 118$' <<<"$metrics" || { echo "FAIL: ITL histogram"; fails=$((fails+1)); }
    grep -q '^emserve_time_per_output_token_seconds_bucket{le="+Inf"} 118$' <<<"$metrics" || { echo "FAIL: ITL +Inf bucket"; fails=$((fails+1)); }
else
    echo "FAIL: no metrics endpoint"; fails=$((fails+1))
fi
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: server exit status $rc"; fails=$((fails+1)); }
echo "demo_client_test: $fails failure(s)"
[ $fails -eq 0 ]
