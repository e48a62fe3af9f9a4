#!/bin/bash
# Installs the Python client test's dependencies (grpcio, grpcio-tools from PyPI) into a venv.
# Usage: tests/service/python/setup.sh [VENV_DIR]   (default /var/cache/emserve/pyenv)
# CI runs this once before `bazel test`; the test also runs it itself when the venv is missing.
set -eu
VENV="${1:-${EMSERVE_PYVENV:-/var/cache/emserve/pyenv}}"
PY="${EMSERVE_SYSTEM_PYTHON:-/usr/bin/python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import grpc, grpc_tools" 2>/dev/null; then
    exit 0
fi
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio>=1.51" "grpcio-tools>=1.51"
"$VENV/bin/python" -c "import grpc, grpc_tools; print('grpcio', grpc.__version__)"
