#!/usr/bin/env bash
# The runtime stage of deploy/docker/Dockerfile, run without a container engine: what the
# stage says - its COPY targets under /opt/emserve, its ENV, USER, ENTRYPOINT and HEALTHCHECK,
# read from the Dockerfile itself - executed on this machine's binaries inside private mount
# and network namespaces, with every mount read-only (readOnlyRootFilesystem), as the stage's
# numeric user with no capabilities and no_new_privs. Checks: the HEALTHCHECK command reports
# healthy, GET /health and /health/ready answer 200, a generation goes through, SIGTERM ends
# the coordinator with status 0. What it cannot show: the debian:12-slim base and its library
# set (checked by hand, deploy/README.md).
#   scripts/check-image-runtime.sh [BIN_DIR]   (default bazel-bin; 0 ok, 1 failed, 2 cannot run)
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-bazel-bin}")
DF=deploy/docker/Dockerfile
MODELS=${EMSERVE_MODEL_DIR:-/var/cache/emserve/models}
[ "$(id -u)" -eq 0 ] || { echo "check-image-runtime: needs root (namespaces)"; exit 2; }
for t in unshare setpriv findmnt python3; do
  command -v $t >/dev/null || { echo "check-image-runtime: $t missing"; exit 2; }
done
for b in coordinator/emserve coordinator/emserve_client worker/emserve_worker; do
  [ -x "$BIN/$b" ] || { echo "check-image-runtime: $BIN/$b not built"; exit 2; }
done
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# the runtime stage (after the last FROM), continuation lines joined
python3 - "$DF" >"$T/stage.sh" <<'PY' || { echo "check-image-runtime: cannot read $DF"; exit 2; }
import json, re, shlex, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
stage = lines[max(i for i, l in enumerate(lines) if l.upper().startswith("FROM ")) + 1:]
out = {"env": [], "copies": []}
for l in stage:
    op, _, rest = l.partition(" ")
    op = op.upper()
    if op == "ENV":
        out["env"] += shlex.split(rest)
    elif op == "USER":
        out["user"] = rest.strip()
    elif op == "ENTRYPOINT":
        out["entrypoint"] = json.loads(rest)
    elif op == "HEALTHCHECK":
        out["health"] = json.loads(rest[rest.index("CMD") + 3:])
    elif op == "COPY" and "--from=" in rest:
        src, dst = shlex.split(rest)[-2:]
        out["copies"].append((src, dst))
print("ENVS=(%s)" % " ".join(shlex.quote(e) for e in out["env"]))
print("USR=%s" % shlex.quote(out["user"]))
print("ENTRY=(%s)" % " ".join(shlex.quote(e) for e in out["entrypoint"]))
print("HEALTH=(%s)" % " ".join(shlex.quote(e) for e in out["health"]))
print("COPIES=(%s)" % " ".join(shlex.quote(f"{s}={d}") for s, d in out["copies"]))
PY
. "$T/stage.sh"
uid=${USR%%:*} gid=${USR#*:}
[[ "$uid" =~ ^[1-9][0-9]*$ ]] || { echo "FAIL: USER '$USR' is not a numeric non-root user"; exit 1; }
model=$(printf '%s\n' "${ENVS[@]}" | sed -n 's/^EMSERVE_MODEL=//p')
[ -f "$MODELS/$(basename "$model")" ] || { echo "check-image-runtime: $MODELS/$(basename "$model") absent (scripts/install-deps.sh)"; exit 2; }

cat >"$T/inside.sh" <<EOF
set -u
ip link set lo up
exec 5>"$T/out" 6>"$T/err"
mount --make-rprivate /
# the image's /opt/emserve: the build stage's /out/bin and /out/models
mount -t tmpfs -o size=64m tmpfs /opt
for c in ${COPIES[*]}; do
  src=\${c%%=*} dst=\${c#*=}; mkdir -p "\$dst"
  case \$src in
    /out/bin/) cp "$BIN/coordinator/emserve" "$BIN/coordinator/emserve_client" "$BIN/worker/emserve_worker" "\$dst" ;;
    /out/models/) : >"\$dst/$(basename "$model")"; mount --bind "$MODELS/$(basename "$model")" "\$dst/$(basename "$model")" ;;
  esac
done
for m in \$(findmnt -rno TARGET | sort -r); do mount -o remount,bind,ro "\$m" 2>/dev/null; done
touch /opt/x /tmp/x 2>/dev/null && { echo "FAIL: a mount stayed writable"; exit 1; }
as_user() { env -i ${ENVS[*]} setpriv --reuid=$uid --regid=$gid --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all "\$@"; }
# (not through as_user: \$! must be the coordinator itself, which receives the SIGTERM)
env -i ${ENVS[*]} setpriv --reuid=$uid --regid=$gid --clear-groups --no-new-privs --bounding-set=-all --inh-caps=-all ${ENTRY[*]} >&5 2>&6 &
pid=\$!
ok=0
for i in \$(seq 1 240); do as_user ${HEALTH[*]} >/dev/null 2>&1 && { ok=1; break; }; sleep 0.5; done
fails=0
[ \$ok = 1 ] && echo "ok: HEALTHCHECK (${HEALTH[*]}) healthy" || { echo "FAIL: HEALTHCHECK never healthy"; fails=\$((fails+1)); }
for path in /health /health/ready; do
  code=\$( (exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET %s HTTP/1.0\r\n\r\n' \$path >&3 && head -1 <&3) 2>/dev/null)
  [[ "\$code" == *" 200 "* ]] && echo "ok: GET \$path: \${code%$'\r'}" || { echo "FAIL: GET \$path: '\$code'"; fails=\$((fails+1)); }
done
out=\$(as_user /opt/emserve/bin/emserve_client --addr 127.0.0.1:50051 --prompt "The capital of France is" --max-tokens 8 2>&1)
grep -q "^finish_reason: length, prompt [0-9]*, completion 8" <<<"\$out" && echo "ok: a generation as uid $uid" || { echo "FAIL: generation: \$out"; fails=\$((fails+1)); }
kill -TERM \$pid
for i in \$(seq 1 150); do kill -0 \$pid 2>/dev/null || break; sleep 0.1; done
if kill -0 \$pid 2>/dev/null; then echo "FAIL: no exit within 15 s of SIGTERM"; kill -KILL \$pid; fails=\$((fails+1)); fi
wait \$pid; rc=\$?
[ \$rc = 0 ] && echo "ok: SIGTERM -> exit 0" || { echo "FAIL: exit status \$rc after SIGTERM"; fails=\$((fails+1)); }
exit \$fails
EOF
timeout 300 unshare -n -m bash "$T/inside.sh"
rc=$?
[ $rc = 0 ] || { echo "check-image-runtime: the coordinator's log:"; tail -5 "$T/err"; }
echo "check-image-runtime: runtime stage of $DF (user $USR, read-only mounts, no capabilities): $([ $rc = 0 ] && echo ok || echo FAILED)"
[ $rc = 0 ]
