#!/bin/bash
# TLS and mutual TLS end to end (issue 12), with certificates made for the test by openssl
# (make_certs.sh): stories260K with 2 local workers,
#   1. the public port with --tls-cert/--tls-key/--tls-client-ca (mutual TLS) and internal
#      mutual TLS (--internal-tls-*, passed on to the spawned workers; the rendezvous store runs
#      it too), a known cluster secret and --http-max-conn-per-ip 3: tls_test.py's
#      MutualTlsTest;
#   2. the public port with a server certificate only, HTTPS on the HTTP port: ServerTlsOnlyTest
#      (internal mutual TLS checked against --internal-tls-name instead of the address);
#   2b. --internal-tls-name that the workers' certificate does not carry: they never join;
#   3. start-up refusals: a key without its certificate, --internal-tls-cert without
#      --internal-tls-ca, a file that is not PEM.
set -u
source "${TEST_SRCDIR:-.}/emserve/tests/service/python/svc_lib.sh"
MODEL=$(find_test_model)
[ -n "$MODEL" ] || { echo "SKIPPED: test model stories260K.gguf not found; set EMSERVE_TEST_MODEL"; exit 0; }
command -v openssl >/dev/null || { echo "FAIL: openssl not found"; exit 1; }
ensure_venv "grpc, grpc_tools"
C="$TMP/certs"
"$R/tests/service/python/make_certs.sh" "$C" || { echo "FAIL: cannot make certificates"; exit 1; }
SECRET=emserve-test-cluster-secret-0123456789
( umask 077; printf '%s' "$SECRET" >"$TMP/cluster.secret" )
PY="$VENV/bin/python $R/tests/service/python/tls_test.py --certs $C --proto-root $R"
rc=0

start_server mtls "$MODEL" --workers 2 --cluster-secret-file "$TMP/cluster.secret" \
    --tls-cert "$C/server.pem" --tls-key "$C/server.key" --tls-client-ca "$C/ca.pem" \
    --internal-tls-cert "$C/internal.pem" --internal-tls-key "$C/internal.key" \
    --internal-tls-ca "$C/ica.pem" --http-max-conn-per-ip 3 || exit 1
STORE=$(sed -n 's/.*rendezvous store on \([^ ]*\) .*/\1/p' "$TMP/mtls.err" | head -1)
$PY --addr "$GRPC_ADDR" --http "$HTTP_ADDR" --secret "$SECRET" --store "$STORE" --per-ip 3 || rc=1
# the C client over mutual TLS (and refused without its certificate)
CLIENT="$R/coordinator/emserve_client"
out=$("$CLIENT" --addr "$GRPC_ADDR" --tls-ca "$C/ca.pem" --tls-cert "$C/client.pem" \
    --tls-key "$C/client.key" --prompt "Once upon a time" --max-tokens 8 --timeout-ms 20000)
grep -q "^ids: 432 383 286 261 376 298 315 421\$" <<<"$out" ||
    { echo "FAIL: emserve_client over mutual TLS: $out"; rc=1; }
"$CLIENT" --addr "$GRPC_ADDR" --tls-ca "$C/ca.pem" --prompt "x" --max-tokens 2 --timeout-ms 3000 \
    >/dev/null 2>&1 && { echo "FAIL: emserve_client without its certificate served"; rc=1; }
grep -q "public port: mutual TLS; HTTP ports: plain HTTP; internal traffic: mutual TLS (the store too; gloo: plaintext)" "$TMP/mtls.err" ||
    { echo "FAIL: no TLS summary line"; rc=1; }
stop_server mtls || rc=1

# (the HTTPS files through their environment twins)
EMSERVE_HTTP_TLS_CERT="$C/server.pem" EMSERVE_HTTP_TLS_KEY="$C/server.key" \
    start_server tls "$MODEL" --workers 2 --tls-cert "$C/server.pem" --tls-key "$C/server.key" \
    --internal-tls-cert "$C/internal.pem" --internal-tls-key "$C/internal.key" \
    --internal-tls-ca "$C/ica.pem" --internal-tls-name emserve-internal || exit 1
grep -q "config: http-tls-cert = .* (env)" "$TMP/tls.err" ||
    { echo "FAIL: EMSERVE_HTTP_TLS_CERT not taken"; rc=1; }
$PY --addr "$GRPC_ADDR" --http "$HTTP_ADDR" --server-tls-only || rc=1
stop_server tls || rc=1

# the coordinator checks the workers' certificates: against another name they never join
start_server wrongname "$MODEL" --workers 2 --ready-timeout-ms 1500 \
    --internal-tls-cert "$C/internal.pem" --internal-tls-key "$C/internal.key" \
    --internal-tls-ca "$C/ica.pem" --internal-tls-name not-the-workers-name || exit 1
grep -q "workers not ready" "$TMP/wrongname.err" ||
    { echo "FAIL: workers with a certificate for another name joined"; rc=1; }
grep -q "formed" "$TMP/wrongname.err" && { echo "FAIL: a group formed"; rc=1; }
stop_server wrongname || rc=1

# refused at start with a message naming the problem (exit status 2)
bad() { # bad WHAT EXPECTED-MESSAGE ARGS...
    local what=$1 want=$2
    shift 2
    "$R/coordinator/emserve" --model "$MODEL" --listen 127.0.0.1:0 \
        --worker-bin "$R/worker/emserve_worker" "$@" >"$TMP/bad.out" 2>"$TMP/bad.err"
    local st=$?
    if [ $st -ne 2 ] || ! grep -q -- "$want" "$TMP/bad.err"; then
        echo "FAIL: $what: status $st, want 2 and '$want'"
        tail -3 "$TMP/bad.err"
        rc=1
    fi
}
bad "key without certificate" "needs its key and a key its certificate" --tls-key "$C/server.key"
bad "internal TLS without its CA" "needs --internal-tls-ca" \
    --internal-tls-cert "$C/internal.pem" --internal-tls-key "$C/internal.key"
bad "not PEM" "is not a PEM file" --tls-cert "$TMP/cluster.secret" --tls-key "$C/server.key"
bad "missing file" "cannot read the TLS certificate" --tls-cert "$C/nope.pem" \
    --tls-key "$C/server.key"
"$R/worker/emserve_worker" --cluster-secret-file "$TMP/cluster.secret" \
    --internal-tls-cert "$C/internal.pem" --internal-tls-key "$C/internal.key" 2>"$TMP/w.err"
st=$?
[ $st -eq 2 ] && grep -q "needs --internal-tls-ca" "$TMP/w.err" ||
    { echo "FAIL: worker with internal TLS but no CA: status $st"; cat "$TMP/w.err"; rc=1; }
[ $rc -eq 0 ] && echo "tls_test: all passed"
exit $rc
