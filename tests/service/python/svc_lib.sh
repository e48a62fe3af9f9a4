# Shell helpers of the service's shell tests (sourced; the Python ones and tests/bench): locate the runfiles, the models and the
# venv, start emserve with local workers and wait for its "listening" lines, stop it.
R="${TEST_SRCDIR:-.}/emserve"
WS=$(dirname "$(readlink -f "$R/WORKSPACE")")
VENV="${EMSERVE_PYVENV:-/var/cache/emserve/pyenv}"
TMP="${TEST_TMPDIR:-$(mktemp -d)}"

# The stories260K test model ($EMSERVE_TEST_MODEL, or shared/models next to the checkout or its
# parent, as model_find_test_small looks); empty when absent.
find_test_model() {
    for m in "${EMSERVE_TEST_MODEL:-}" "$WS/../shared/models/stories260K.gguf" \
             "$WS/../../shared/models/stories260K.gguf"; do
        [ -n "$m" ] && [ -f "$m" ] && { echo "$m"; return; }
    done
}

# The venv with the modules named in $1 (comma separated), installed by setup.sh when missing.
ensure_venv() {
    if ! "$VENV/bin/python" -c "import $1" 2>/dev/null; then
        echo "installing the Python test dependencies into $VENV"
        "$R/tests/service/python/setup.sh" "$VENV" || { echo "FAIL: cannot install $1"; exit 1; }
    fi
}

# start_server NAME MODEL ARGS...: runs emserve in the background with an HTTP and a gRPC port;
# sets SRV_PID, HTTP_ADDR and GRPC_ADDR once both listen lines are out.
start_server() {
    local name=$1 model=$2
    shift 2
    "$R/coordinator/emserve" --model "$model" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
        --worker-bin "$R/worker/emserve_worker" "$@" \
        >"$TMP/$name.out" 2>"$TMP/$name.err" &
    SRV_PID=$!
    GRPC_ADDR=""
    HTTP_ADDR=""
    for _ in $(seq 1 1200); do
        HTTP_ADDR=$(sed -n 's/^http listening on //p' "$TMP/$name.out" | head -1)
        GRPC_ADDR=$(sed -n 's/^listening on //p' "$TMP/$name.out" | head -1)
        [ -n "$GRPC_ADDR" ] && [ -n "$HTTP_ADDR" ] && return 0
        kill -0 $SRV_PID 2>/dev/null || break
        sleep 0.1
    done
    echo "FAIL: $name server did not start"
    tail -20 "$TMP/$name.err"
    kill $SRV_PID 2>/dev/null
    return 1
}

# stop_server NAME: SIGTERM, and the exit status must be 0.
stop_server() {
    kill -TERM $SRV_PID
    wait $SRV_PID
    local st=$?
    if [ $st -ne 0 ]; then
        echo "FAIL: $1 server exit status $st"
        tail -20 "$TMP/$1.err"
        return 1
    fi
}
