#!/usr/bin/env bash
# Deployment check (scripts/test.sh runs it; no container engine, cluster or systemd is needed):
#   1. every YAML file under deploy/ parses; every Kubernetes object of deploy/k8s validates
#      strictly against the published schemas (kubernetes-validate, offline), the
#      LeaderWorkerSet by structure with its pod templates as PodTemplateSpecs, plus the house
#      rules and a self-test of planted faults (scripts/check_manifests.py);
#   2. the probes' endpoints exist: the HTTP routes and gRPC health names in the coordinator;
#   3. hadolint on deploy/docker/Dockerfile; its build stage installs install-deps.sh's build
#      dependencies; .dockerignore keeps Bazel's outputs and .git out;
#   4. each systemd unit of deploy/systemd: no unknown directive (systemd-analyze verify), an
#      exposure under 5 (systemd-analyze security --offline=yes), TimeoutStopSec above the
#      coordinator's --drain-grace-ms;
#   5. the sandbox admits the real binaries (scripts/check-sandbox.sh: strace of a run against
#      the units' syscall filter, address families and MemoryDenyWriteExecute);
#   6. the Dockerfile's runtime stage as written (ENV, USER, ENTRYPOINT, HEALTHCHECK) runs the
#      built binaries read-only, unprivileged, in namespaces (scripts/check-image-runtime.sh;
#      needs root, else skipped).
# The validators live in the venv of scripts/install-deps.sh (/var/cache/emserve/pyenv, or
# $EMSERVE_PYENV). Exits 1 if any check fails, 2 if a validator is missing.
set -uo pipefail
cd "$(dirname "$0")/.."
PYENV=${EMSERVE_PYENV:-/var/cache/emserve/pyenv}
PY="$PYENV/bin/python"
HADOLINT="$PYENV/bin/hadolint"
MAX_EXPOSURE=5.0
if ! "$PY" -c "import kubernetes_validate, yaml" 2>/dev/null || [ ! -x "$HADOLINT" ] ||
   ! command -v systemd-analyze >/dev/null; then
  echo "check-manifests: kubernetes-validate, hadolint (in $PYENV) or systemd-analyze missing: run scripts/install-deps.sh" >&2
  exit 2
fi
bad=0
step() { echo "-- $*"; }
failed() { echo "FAIL: $*"; bad=$((bad + 1)); }

step "Kubernetes manifests (YAML, schemas, LeaderWorkerSet, house rules, self-test)"
"$PY" scripts/check_manifests.py --self-test deploy || failed "deploy/k8s manifests"

step "probe endpoints served by the coordinator"
for route in '"/health", "GET"' '"/health/ready", "GET"' '"/metrics", "GET"'; do
  grep -qF "{$route" coordinator/http_server.c || failed "coordinator/http_server.c has no route {$route"
done
for svc in liveness readiness; do
  grep -qF "\"$svc\"" coordinator/rpc_server.c || failed "coordinator/rpc_server.c has no health service name '$svc'"
done

step "Dockerfile (hadolint $("$HADOLINT" --version | awk '{print $NF}'))"
"$HADOLINT" deploy/docker/Dockerfile && echo "hadolint: deploy/docker/Dockerfile clean" ||
  failed "hadolint deploy/docker/Dockerfile"
# the build stage installs the build dependencies of install-deps.sh (all but the test tools)
TEST_ONLY=" gnuplot-nox clang-format clang libclang-rt-14-dev python3-venv systemd strace "
for p in $(sed -n '/^PKGS=(/,/^)/p' scripts/install-deps.sh | sed 's/#.*//' | tr -s ' ()' '\n' |
           grep -E '^[a-z0-9][a-z0-9.+-]+$' | grep -vx PKGS); do
  [[ "$TEST_ONLY" == *" $p "* ]] && continue
  grep -qE "(^|[ \\t])$p([ \\t]|\$)" deploy/docker/Dockerfile ||
    failed "deploy/docker/Dockerfile does not install $p (a build dependency in scripts/install-deps.sh)"
done
for pat in .git 'bazel-*'; do
  grep -qxF "$pat" .dockerignore || failed ".dockerignore does not exclude $pat"
done

step "systemd units (systemd-analyze $(systemd-analyze --version | awk 'NR==1 {print $2}'))"
for u in deploy/systemd/*.service; do
  # the binaries live in /opt/emserve on an installed machine, not here
  out=$(systemd-analyze verify "$u" 2>&1 | grep -v "is not executable: No such file or directory")
  [ -z "$out" ] || failed "$u: systemd-analyze verify: $out"
  score=$(systemd-analyze security --offline=yes "$u" 2>&1 |
          sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  if [ -z "$score" ]; then
    failed "$u: no exposure score"
  elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s >= m) }'; then
    failed "$u: exposure $score (must stay under $MAX_EXPOSURE)"
  else
    echo "$u: exposure $score (under $MAX_EXPOSURE)"
  fi
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$u")
  grace=$(tr -d '\\\n' <"$u" | grep -o -- '--drain-grace-ms[ =][0-9]*' | grep -o '[0-9]*$')
  if grep -q '^ExecStart=.*/emserve ' "$u"; then
    grace=${grace:-5000}
    [ -n "$stop" ] && [ $((stop * 1000)) -gt "$grace" ] ||
      failed "$u: TimeoutStopSec=${stop:-unset} does not cover --drain-grace-ms $grace"
  fi
done

step "the binaries (the default build of scripts/test.sh) for the runtime checks"
BIN=""
if command -v bazel >/dev/null &&
   bazel build --config=ci //coordinator:emserve //coordinator:emserve_client //worker:emserve_worker \
     >/dev/null 2>&1; then
  BIN=$(bazel info --config=ci bazel-bin 2>/dev/null)
  echo "built in $BIN"
else
  failed "could not build //coordinator:emserve //coordinator:emserve_client //worker:emserve_worker"
fi

step "sandbox vs the real binaries (strace)"
if ! command -v strace >/dev/null; then
  echo "check-manifests: strace not installed: sandbox trace skipped"
elif [ -n "$BIN" ]; then
  bash scripts/check-sandbox.sh "$BIN" || failed "the units' sandbox does not admit the binaries"
fi

step "the image's runtime stage without an engine (namespaces, read-only, uid 10001)"
if [ -n "$BIN" ]; then
  bash scripts/check-image-runtime.sh "$BIN"
  case $? in
    0) ;;
    2) echo "check-manifests: image runtime check skipped (needs root and the installed model)" ;;
    *) failed "the image's runtime stage" ;;
  esac
fi

echo "check-manifests: $bad failure(s)"
[ "$bad" -eq 0 ]
