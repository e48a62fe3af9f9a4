#!/usr/bin/env bash
# Do the systemd units' sandbox rules admit what the binaries really do? No systemd runs on the
# project machines, so the units cannot be started here; instead this traces (strace -f) a real
# run of the built binaries - coordinator, 2 local workers with 2 kernel threads each, gloo
# all-reduce, the gRPC and HTTP servers, a generation through the C client, an HTTP GET, and the
# SIGTERM drain - and checks every system call made against the units' SystemCallFilter
# (@system-service less @privileged, expanded by systemd-analyze), every socket family against
# RestrictAddressFamilies, and every mapping against MemoryDenyWriteExecute (no writable and
# executable memory).
#   scripts/check-sandbox.sh [BIN_DIR]   (default bazel-bin; exit 0 ok, 1 violation, 2 cannot run)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bazel-bin}
EMSERVE="$BIN/coordinator/emserve" CLIENT="$BIN/coordinator/emserve_client"
UNIT=${CHECK_SANDBOX_UNIT:-deploy/systemd/emserve.service}
for t in strace systemd-analyze; do
  command -v $t >/dev/null || { echo "check-sandbox: $t not installed" >&2; exit 2; }
done
[ -x "$EMSERVE" ] && [ -x "$CLIENT" ] || { echo "check-sandbox: build //coordinator:emserve //coordinator:emserve_client //worker:emserve_worker first" >&2; exit 2; }
MODEL=${EMSERVE_TEST_MODEL:-}
if [ -z "$MODEL" ]; then
  d=$PWD
  while [ "$d" != / ] && [ ! -f "$d/shared/models/stories260K.gguf" ]; do d=$(dirname "$d"); done
  MODEL="$d/shared/models/stories260K.gguf"
fi
[ -f "$MODEL" ] || { echo "check-sandbox: test model not found; set EMSERVE_TEST_MODEL" >&2; exit 2; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

strace -f -qq -o "$T/trace" "$EMSERVE" --model "$MODEL" --workers 2 --threads 2 \
  --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 >"$T/out" 2>"$T/err" &
spid=$!
for _ in $(seq 1 600); do grep -q "^listening on" "$T/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$T/out")
hport=$(sed -n 's/^http listening on .*:\([0-9]*\)$/\1/p' "$T/out")
ok=1
if [ -z "$addr" ] || [ -z "$hport" ]; then
  echo "check-sandbox: the traced coordinator did not start"; tail -5 "$T/err"; ok=0
else
  timeout 60 "$CLIENT" --addr "$addr" --prompt "Once upon a time" --max-tokens 20 >"$T/client" 2>&1 ||
    { echo "check-sandbox: generation failed"; cat "$T/client"; ok=0; }
  if exec 3<>"/dev/tcp/127.0.0.1/$hport"; then
    printf 'GET /health HTTP/1.0\r\n\r\n' >&3; head -1 <&3 >"$T/http"; exec 3<&-
  fi
  grep -q " 200 " "$T/http" 2>/dev/null || { echo "check-sandbox: GET /health failed"; ok=0; }
fi
# strace has the coordinator's pid: SIGTERM goes to it (the drain), not to strace
cpid=$(pgrep -P "$spid" -x emserve | head -1)
[ -n "$cpid" ] && kill -TERM "$cpid"
timeout 30 tail --pid="$spid" -f /dev/null || kill "$spid"
wait "$spid" 2>/dev/null

# the filter of the unit, expanded into syscall names
groups() { # $1 = group
  local x
  for x in $(systemd-analyze syscall-filter "$1" 2>/dev/null | sed -nE 's/^ +(@?[a-z0-9_-]+)$/\1/p'); do
    case $x in @*) groups "$x" ;; *) echo "$x" ;; esac
  done
}
mapfile -t filters < <(sed -n 's/^SystemCallFilter=//p' "$UNIT")
: >"$T/allow"; : >"$T/deny"
for f in "${filters[@]}"; do
  for g in $f; do
    case $g in
      "~"*) groups "${g#\~}" >>"$T/deny" ;;
      @*) groups "$g" >>"$T/allow" ;;
      *) echo "$g" >>"$T/allow" ;;
    esac
  done
done
sort -u -o "$T/allow" "$T/allow"; sort -u -o "$T/deny" "$T/deny"
sed -nE 's/^[0-9]+ +([a-z0-9_]+)\(.*/\1/p' "$T/trace" | sort -u >"$T/used"
n_used=$(wc -l <"$T/used")
[ "$n_used" -gt 20 ] || { echo "check-sandbox: the trace holds only $n_used system calls"; ok=0; }
out=$(comm -23 "$T/used" "$T/allow" | tr '\n' ' '); [ -z "$out" ] || { echo "system calls outside SystemCallFilter: $out"; ok=0; }
out=$(comm -12 "$T/used" "$T/deny" | tr '\n' ' '); [ -z "$out" ] || { echo "system calls the filter denies: $out"; ok=0; }
families=$(sed -n 's/^RestrictAddressFamilies=//p' "$UNIT")
used_fam=$(grep -oE 'socket\(AF_[A-Z0-9]+' "$T/trace" | sed 's/socket(//' | sort -u | tr '\n' ' ')
for f in $used_fam; do
  [[ " $families " == *" $f "* ]] || { echo "socket family $f outside RestrictAddressFamilies"; ok=0; }
done
if grep -q '^MemoryDenyWriteExecute=yes' "$UNIT" &&
   grep -E '(mmap|mprotect|pkey_mprotect)\(' "$T/trace" | grep 'PROT_WRITE' | grep -q 'PROT_EXEC'; then
  echo "writable+executable memory under MemoryDenyWriteExecute:"
  grep -E '(mmap|mprotect)\(' "$T/trace" | grep PROT_WRITE | grep PROT_EXEC | head -3; ok=0
fi
grep -q "draining\|drain" "$T/err" || echo "check-sandbox: note: no drain line in the coordinator's log"
echo "check-sandbox: $n_used distinct system calls in a traced run (gRPC + HTTP + generation + SIGTERM), socket families: ${used_fam:-none}; filter $(wc -l <"$T/allow") allowed, $(wc -l <"$T/deny") denied: $([ $ok = 1 ] && echo ok || echo VIOLATION)"
[ $ok = 1 ]
