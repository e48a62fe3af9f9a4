#!/bin/bash
# Server reflection (reflection_test.py, the official grpcio-reflection client) against emserve
# on stories260K with 1 local worker.
set -u
source "${TEST_SRCDIR:-.}/emserve/tests/service/python/svc_lib.sh"
MODEL=$(find_test_model)
[ -n "$MODEL" ] || { echo "SKIPPED: test model stories260K.gguf not found; set EMSERVE_TEST_MODEL"; exit 0; }
ensure_venv "grpc, grpc_reflection"
start_server refl "$MODEL" --workers 1 || exit 1
"$VENV/bin/python" "$R/tests/service/python/reflection_test.py" --addr "$GRPC_ADDR"
rc=$?
stop_server refl || rc=1
exit $rc
