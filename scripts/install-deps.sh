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
  gnuplot-nox              # PNG plots of benchmarks and the quality harness
  python3-pip python3-venv # the Python gRPC client test (grpcio from PyPI)
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
# Python client test dependencies (a venv keeps the system Python untouched).
VENV=/var/cache/emserve/pyenv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import grpc, grpc_tools" 2>/dev/null; then
  $SUDO python3 -m venv "$VENV"
  $SUDO "$VENV/bin/pip" install -q grpcio grpcio-tools protobuf
  $SUDO chown -R "$OWNER" "$VENV"
fi
echo "install-deps: ok"
