#!/bin/bash
# Runs smollm2_test.py (Python grpcio) against emserve serving SmolLM2 with 3 workers (one KV
# head each). SKIPPED when SmolLM2 is not installed (scripts/install-deps.sh installs it).
set -u
R="${TEST_SRCDIR:-.}/emserve"
MODEL="${EMSERVE_MODEL:-${EMSERVE_MODEL_DIR:-/var/cache/emserve/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
[ -f "$MODEL" ] || { echo "SKIPPED: SmolLM2 not installed ($MODEL)"; exit 0; }
VENV="${EMSERVE_PYVENV:-/var/cache/emserve/pyenv}"
if ! "$VENV/bin/python" -c "import grpc, grpc_tools" 2>/dev/null; then
    "$R/tests/service/python/setup.sh" "$VENV" || { echo "FAIL: cannot install grpcio"; exit 1; }
fi
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
"$R/coordinator/emserve" --model "$MODEL" --listen 127.0.0.1:0 --workers 3 \
    --worker-bin "$R/worker/emserve_worker" >"$TMP/server.out" 2>"$TMP/server.err" &
pid=$!
addr=""
for _ in $(seq 1 600); do
    addr=$(sed -n 's/^listening on //p' "$TMP/server.out" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "FAIL: server did not start"; tail "$TMP/server.err"; kill $pid; exit 1; }
PYTHONPATH="$R/tests/service/python" "$VENV/bin/python" "$R/tests/service/python/smollm2_test.py" \
    --addr "$addr" --proto-root "$R" --goldens "$R/tests/testutil/smollm2_goldens.txt"
rc=$?
kill -TERM $pid
wait $pid || { echo "FAIL: server exit status $?"; rc=1; }
exit $rc
