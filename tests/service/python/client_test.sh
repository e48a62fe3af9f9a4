#!/bin/bash
# Runs client_test.py (Python grpcio, stubs generated from the .proto at test time) against a
# freshly started emserve with 2 local workers. The Python dependencies come from PyPI through
# setup.sh (a venv in /var/cache/emserve/pyenv, or $EMSERVE_PYVENV); this test runs unsandboxed
# ("local") so that it can create that venv itself on a machine where CI did not.
set -u
R="${TEST_SRCDIR:-.}/emserve"
WS=$(dirname "$(readlink -f "$R/WORKSPACE")")
MODEL="${EMSERVE_TEST_MODEL:-$WS/../shared/models/stories260K.gguf}"
[ -f "$MODEL" ] || { echo "SKIPPED: test model not found ($MODEL); set EMSERVE_TEST_MODEL"; exit 0; }
VENV="${EMSERVE_PYVENV:-/var/cache/emserve/pyenv}"
if ! "$VENV/bin/python" -c "import grpc, grpc_tools" 2>/dev/null; then
    echo "installing grpcio + grpcio-tools into $VENV"
    "$R/tests/service/python/setup.sh" "$VENV" || { echo "FAIL: cannot install grpcio"; exit 1; }
fi
TMP="${TEST_TMPDIR:-$(mktemp -d)}"
"$R/coordinator/emserve" --model "$MODEL" --listen 127.0.0.1:0 --workers 2 \
    --worker-bin "$R/worker/emserve_worker" >"$TMP/server.out" 2>"$TMP/server.err" &
pid=$!
addr=""
for _ in $(seq 1 600); do
    addr=$(sed -n 's/^listening on //p' "$TMP/server.out" | head -1)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "FAIL: server did not start"; tail "$TMP/server.err"; kill $pid; exit 1; }
"$VENV/bin/python" "$R/tests/service/python/client_test.py" --addr "$addr" --proto-root "$R"
rc=$?
kill -TERM $pid
wait $pid || { echo "FAIL: server exit status $?"; rc=1; }
exit $rc
