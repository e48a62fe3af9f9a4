#!/bin/bash
# grpc.health.v1.Health/Watch and liveness vs readiness (health_watch_test.py), on stories260K
# with 2 local workers: once with no worker restarts (a killed worker leaves the server
# NOT_SERVING), once with the spawner restarting it (SERVING again).
set -u
source "${TEST_SRCDIR:-.}/emserve/tests/service/python/svc_lib.sh"
MODEL=$(find_test_model)
[ -n "$MODEL" ] || { echo "SKIPPED: test model stories260K.gguf not found; set EMSERVE_TEST_MODEL"; exit 0; }
ensure_venv "grpc, grpc_tools"
SECRET=emserve-test-cluster-secret-0123456789 # GetServerInfo shows worker pids with it
( umask 077; printf '%s' "$SECRET" >"$TMP/cluster.secret" )
rc=0
for phase in lost recover; do
    delay=-1
    [ $phase = recover ] && delay=200
    start_server $phase "$MODEL" --workers 2 --respawn-delay-ms $delay \
        --cluster-secret-file "$TMP/cluster.secret" || exit 1
    "$VENV/bin/python" "$R/tests/service/python/health_watch_test.py" --grpc "$GRPC_ADDR" \
        --http "$HTTP_ADDR" --proto-root "$R" --phase $phase --secret "$SECRET" || rc=1
    stop_server $phase || rc=1
done
exit $rc
