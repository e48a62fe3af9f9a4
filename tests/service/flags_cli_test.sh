#!/bin/bash
# The binaries' flags end to end (common/flags.h; its unit test is tests/common:flags_test):
# EMSERVE_WORKERS=1 starts one worker, command line > environment > config file > default for
# the coordinator, checked numbers (--max-seqs 3abc, EMSERVE_WORKERS=abc, --threads abc on the
# worker) refused with exit status 2 and a message naming the flag, --flag=value, --version.
set -u
R="${TEST_SRCDIR:-.}/emserve"
EMSERVE="$R/coordinator/emserve"
WORKER="$R/worker/emserve_worker"
MODEL="${EMSERVE_TEST_MODEL:-}"
if [ -z "$MODEL" ]; then
    WS=$(dirname "$(readlink -f "$R/WORKSPACE")")
    for m in "$WS/../shared/models/stories260K.gguf" "$WS/../../shared/models/stories260K.gguf"; do
        [ -f "$m" ] && MODEL=$m && break
    done
fi
[ -f "$MODEL" ] || { echo "SKIPPED: test model not found; set EMSERVE_TEST_MODEL"; exit 0; }
TMP="${TEST_TMPDIR:-/tmp}"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
demo() { # runs a one-generation demo; stdout+stderr in $TMP/demo.log
    timeout 120 "$EMSERVE" --model "$MODEL" --listen 127.0.0.1:0 --worker-bin "$WORKER" \
        --demo-prompt "Once upon a time" --exit-after-demo "$@" >"$TMP/demo.log" 2>&1
}
has() { grep -qF -- "$1" "$TMP/demo.log" || { fail "$2: no '$1'"; tail -5 "$TMP/demo.log"; }; }

# 1. the environment twin of --workers is honoured (it was ignored before)
EMSERVE_WORKERS=1 demo --demo-tokens 4 || fail "EMSERVE_WORKERS=1: exit status $?"
has "config: workers = 1 (env)" "EMSERVE_WORKERS=1"
has "1 worker(s) over 4 KV heads" "EMSERVE_WORKERS=1"

# 2. precedence: command line > environment > file > default, and --flag=value
printf '# test config\nworkers = 4\nmax-seqs = 9\ndemo-tokens = 3\nmax_batch_tokens = 128\n' \
    >"$TMP/emserve.ini"
EMSERVE_CONFIG="$TMP/emserve.ini" EMSERVE_WORKERS=1 EMSERVE_MAX_SEQS=7 demo --workers=2 ||
    fail "precedence run: exit status $?"
has "config: workers = 2 (command line)" "precedence"
has "config: max-seqs = 7 (env)" "precedence"
has "config: demo-tokens = 3 (file)" "precedence"
has "config: max-batch-tokens = 128 (file)" "precedence"
has "config: prefill-chunk = 256 (default)" "precedence"
has "2 worker(s) over 4 KV heads" "precedence"
grep -qE '^demo ids: [0-9]+ [0-9]+ [0-9]+$' "$TMP/demo.log" || fail "demo-tokens 3 from the file"

# 3. bad values: exit status 2 and a message naming the flag and its source
bad() { # want-substring command...
    local want=$1
    shift
    out=$("$@" 2>&1)
    rc=$?
    [ $rc -eq 2 ] || fail "'$*': exit status $rc, want 2"
    grep -qF -- "$want" <<<"$out" || fail "'$*': '$out' lacks '$want'"
}
bad "--max-seqs: '3abc' is not an integer" "$EMSERVE" --model "$MODEL" --max-seqs 3abc
bad "EMSERVE_WORKERS: 'abc' is not an integer" env EMSERVE_WORKERS=abc "$EMSERVE" --model "$MODEL"
bad "--workers: 0 is outside" "$EMSERVE" --model "$MODEL" --workers 0
bad "unknown flag --nope" "$EMSERVE" --nope 1
printf 'workers = 2\nnope = 1\n' >"$TMP/bad.ini"
bad "bad.ini:2: nope: unknown flag" "$EMSERVE" --config "$TMP/bad.ini"
bad "--threads: 'abc' is not an integer" "$WORKER" --threads abc
bad "EMSERVE_WORKER_THREADS: 'abc' is not an integer" env EMSERVE_WORKER_THREADS=abc "$WORKER"

# 4. logs: timestamp, level, role[pid] in text; one JSON object per line with --log-format json
# (the local workers follow); gRPC's own lines come through the same module
EMSERVE_WORKERS=1 demo --demo-tokens 2 || fail "text log run: exit status $?"
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z \[I\] coordinator\[[0-9]+\] main: ' \
    "$TMP/demo.log" || fail "text log line format"
timeout 120 "$EMSERVE" --model "$MODEL" --listen 127.0.0.1:0 --worker-bin "$WORKER" --workers 1 \
    --demo-prompt "Once upon a time" --demo-tokens 2 --exit-after-demo --log-format=json \
    >"$TMP/json.out" 2>"$TMP/json.err" || fail "json log run: exit status $?"
python3 - "$TMP/json.err" <<'PY' || fail "JSON log lines"
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
objs = [json.loads(l) for l in lines]  # every line is one JSON object
assert objs and all(set(o) == {"ts", "level", "role", "pid", "func", "msg"} for o in objs), objs[:2]
assert any(o["role"] == "coordinator" for o in objs) and any(o["role"].startswith("worker") for o in objs)
assert any(o["msg"] == "config: log-format = json (command line)" for o in objs)
PY
bad "--log-format: 'xml' is not text or json" "$EMSERVE" --log-format xml

# 5. --version
[ "$("$EMSERVE" --version)" = "emserve 0.1.0" ] || fail "emserve --version"
[ "$("$WORKER" --version)" = "emserve_worker 0.1.0" ] || fail "emserve_worker --version"
echo "flags_cli_test: $fails failure(s)"
[ $fails -eq 0 ]
