#!/bin/bash
# The multi-node launch across "hosts": network namespaces joined by a bridge, with addresses
# this test assigns (10.77.0.0/24, only inside namespaces it creates and removes).
#   hub  : a bridge, no address (the switch)
#   coord: 10.77.0.1  emserve --worker-addr ... --store-bind 10.77.0.1 --cluster-secret-file
#   w0   : 10.77.0.2  emserve_worker --listen 10.77.0.2:7001 --gloo-host 10.77.0.2
#   w1   : 10.77.0.3  emserve_worker --listen 10.77.0.3:7001 --gloo-host 10.77.0.3
# Checks: (1) a greedy generation through the coordinator equals the single-process generator's
# (ids and text); (2) w1's switch port goes down while requests stream: every request in flight
# or sent while it is down ends with UNAVAILABLE (status 14) within a bounded wait, never a hang
# (a client deadline would say DEADLINE_EXCEEDED); (3) the port comes back up: the coordinator
# re-forms the group with the same worker processes and serves the same answer again.
# Needs root and `ip netns` (CI runs as root); prints "SKIPPED: ..." and passes otherwise.
set -u
R="${TEST_SRCDIR:-.}/emserve"
EMSERVE="$R/coordinator/emserve"
CLIENT="$R/coordinator/emserve_client"
WORKER="$R/worker/emserve_worker"
GENERATE="$R/tools/generate"
MODEL="${EMSERVE_TEST_MODEL:-}"
if [ -z "$MODEL" ]; then # as model_find_test_small: shared/models in the workspace's ancestors
    d=$(dirname "$(readlink -f "$R/WORKSPACE")")
    MODEL="$d/../shared/models/stories260K.gguf"
    while [ "$d" != / ] && [ ! -f "$d/shared/models/stories260K.gguf" ]; do d=$(dirname "$d"); done
    [ -f "$d/shared/models/stories260K.gguf" ] && MODEL="$d/shared/models/stories260K.gguf"
fi
[ -f "$MODEL" ] || { echo "SKIPPED: test model not found ($MODEL); set EMSERVE_TEST_MODEL"; exit 0; }
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: needs root for ip netns (uid $(id -u))"; exit 0; }
command -v ip >/dev/null || { echo "SKIPPED: no ip command (iproute2)"; exit 0; }

TMP=$(mktemp -d "${TEST_TMPDIR:-/tmp}/netns.XXXXXX")
SFX="em$$"                         # unique per run: parallel runs never share a namespace
HUB="${SFX}hub" NSC="${SFX}c" NS0="${SFX}w0" NS1="${SFX}w1"
C_IP=10.77.0.1 W0_IP=10.77.0.2 W1_IP=10.77.0.3
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    for n in "$NSC" "$NS0" "$NS1" "$HUB"; do ip netns del "$n" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
# namespaces left by a run that was killed outright (SIGKILL skips the trap): its pid is gone
for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^em[0-9]+(hub|c|w0|w1)$'); do
    p=${n#em}; p=${p%%[a-z]*}
    kill -0 "$p" 2>/dev/null || ip netns del "$n" 2>/dev/null
done

if ! ip netns add "$HUB" 2>"$TMP/probe.err" || ! ip -n "$HUB" link add br0 type bridge 2>>"$TMP/probe.err"; then
    echo "SKIPPED: cannot create a network namespace with a bridge: $(head -1 "$TMP/probe.err")"
    exit 0
fi
ip -n "$HUB" link set br0 up
# one namespace per host: veth "eth0" inside, its peer "p-<host>" on the hub's bridge
add_host() { # $1 = namespace, $2 = address, $3 = port name on the hub
    ip netns add "$1" &&
    ip -n "$HUB" link add "$3" type veth peer name eth0 netns "$1" &&
    ip -n "$HUB" link set "$3" master br0 && ip -n "$HUB" link set "$3" up &&
    ip -n "$1" addr add "$2/24" dev eth0 && ip -n "$1" link set eth0 up && ip -n "$1" link set lo up
}
add_host "$NSC" "$C_IP" p-c && add_host "$NS0" "$W0_IP" p-w0 && add_host "$NS1" "$W1_IP" p-w1 ||
    { echo "FAIL: could not build the namespaces"; exit 1; }

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
SECRET="$TMP/cluster.secret"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRET"
chmod 600 "$SECRET"

for i in 0 1; do
    ns_var="NS$i" ip_var="W${i}_IP"
    ip netns exec "${!ns_var}" "$WORKER" --listen "${!ip_var}:7001" --model "$MODEL" \
        --gloo-host "${!ip_var}" --cluster-secret-file "$SECRET" 2>"$TMP/w$i.err" &
    pids+=($!)
done
# the coordinator: short collective timeout so that the surviving worker gives up its
# all-reduce soon after the cut; the default step deadline (3 s floor) detects the cut worker
ip netns exec "$NSC" "$EMSERVE" --model "$MODEL" --listen "$C_IP:50051" \
    --worker-addr "$W0_IP:7001" --worker-addr "$W1_IP:7001" \
    --store-bind "$C_IP" --store-port 50052 --advertise-host "$C_IP" \
    --cluster-secret-file "$SECRET" --coll-timeout-ms 3000 --kv-memory 64M \
    >"$TMP/coord.out" 2>"$TMP/coord.err" &
pids+=($!)
for _ in $(seq 1 600); do
    grep -q "^listening on " "$TMP/coord.out" && break
    sleep 0.1
done
if ! grep -q "^listening on $C_IP:50051" "$TMP/coord.out"; then
    echo "FAIL: the coordinator did not come up"; tail -20 "$TMP/coord.err" "$TMP/w0.err" "$TMP/w1.err"
    exit 1
fi
client() { # client in the coordinator's namespace; the deadline bounds every wait
    timeout 60 ip netns exec "$NSC" "$CLIENT" --addr "$C_IP:50051" --timeout-ms 30000 "$@"
}
health() { client --health 2>/dev/null; }

# 1. across hosts = one process
want=$("$GENERATE" --model "$MODEL" --prompt "Once upon a time" --temp 0 -n 60 2>/dev/null)
want_ids=$(sed -n 's/^ids: //p' <<<"$want")
want_text=$(sed -n '2,$p' <<<"$want")
[ -n "$want_ids" ] || fail "the single-process generator printed no ids"
check_answer() { # $1 = what
    local out
    out=$(client --prompt "Once upon a time" --max-tokens 60 2>"$TMP/client.err")
    local ids text
    ids=$(sed -n 's/^ids: //p' <<<"$out")
    text=$(sed '/^ids: /,$d' <<<"$out")
    if [ "$ids" != "$want_ids" ]; then
        fail "$1: ids differ from the single-process generator"; echo "got:  $ids"; echo "want: $want_ids"
        cat "$TMP/client.err"
    elif [ "$text" != "$want_text" ]; then
        fail "$1: text differs"; echo "got:  $text"; echo "want: $want_text"
    else
        echo "ok: $1: 60 tokens across 3 namespaces = single process"
    fi
}
check_answer "before the cut"
info_before=$(grep -c "formed" "$TMP/coord.err")

# 2. cut w1's switch port while a stream of requests runs (sequential clients, 400 tokens each)
(
    for i in $(seq 1 40); do
        client --prompt "Once upon a time" --max-tokens 400 --ignore-eos >/dev/null 2>"$TMP/loop.$i.err"
        rc=$?
        echo "$i $rc" >>"$TMP/loop.rc"
        [ $rc -eq 0 ] || break # the first failure ends the loop: it must be UNAVAILABLE
    done
) &
loop=$!
pids+=($loop)
sleep 0.5
ip -n "$HUB" link set p-w1 down
t0=$(date +%s)
# a request sent while the port is down
out=$(client --prompt "Once upon a time" --max-tokens 60 2>&1)
rc=$?
if [ $rc -ne 1 ] || ! grep -q "status 14" <<<"$out"; then
    fail "a request while w1 is cut off: rc $rc, want UNAVAILABLE (status 14)"; tail -3 <<<"$out"
else
    echo "ok: a request while w1 is cut off: $(grep 'status 14' <<<"$out")"
fi
wait "$loop"
ran=$(wc -l <"$TMP/loop.rc")
last=$(tail -1 "$TMP/loop.rc")
echo "streaming loop: $ran request(s), last: $last ($(tail -1 "$TMP/loop.${last%% *}.err"))"
if ! grep -q "status 14" "$TMP/loop.${last%% *}.err"; then
    fail "the request streaming at the cut did not end with UNAVAILABLE"
fi
if grep -lq "status 4:" "$TMP"/loop.*.err; then fail "a request hung until its deadline"; fi
h=$(health)
[ "$h" = "NOT_SERVING" ] || fail "health while w1 is cut off: '$h', want NOT_SERVING"
echo "cut off: UNAVAILABLE within $(($(date +%s) - t0)) s, health $h"

# 3. the port comes back: the same processes re-join (new group generation), same answer
ip -n "$HUB" link set p-w1 up
for _ in $(seq 1 120); do
    [ "$(health)" = "SERVING" ] && break
    sleep 0.5
done
h=$(health)
if [ "$h" != "SERVING" ]; then
    fail "not serving again within 60 s of the link coming back ('$h')"; tail -20 "$TMP/coord.err"
else
    echo "ok: serving again after the link came back"
    check_answer "after the link came back"
fi
info_after=$(grep -c "formed" "$TMP/coord.err")
[ "$info_after" -gt "$info_before" ] || fail "no new group generation was formed"
for i in 0 1; do
    kill -0 "${pids[$i]}" 2>/dev/null || fail "worker $i exited (it should have re-joined)"
done
grep -E "formed|lost|hung|UNAVAIL" "$TMP/coord.err" | tail -8

[ $fails -eq 0 ] && echo "netns_test: all passed" || echo "netns_test: $fails failure(s)"
[ $fails -eq 0 ]
