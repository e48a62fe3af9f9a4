#!/bin/bash
# Installs the Python service tests' dependencies into a venv: grpcio and grpcio-tools (the gRPC
# client test), openai (the official client, for the OpenAI-compatible HTTP API) and
# prometheus-client (its text-format parser checks /metrics), all from PyPI.
# Usage: tests/service/python/setup.sh [VENV_DIR]   (default /var/cache/emserve/pyenv)
# CI runs this once before `bazel test`; the tests also run it themselves when the venv is missing.
set -eu
VENV="${1:-${EMSERVE_PYVENV:-/var/cache/emserve/pyenv}}"
PY="${EMSERVE_SYSTEM_PYTHON:-/usr/bin/python3}"
MODULES="grpc, grpc_tools, grpc_reflection, openai, prometheus_client"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import $MODULES" 2>/dev/null; then
    exit 0
fi
mkdir -p "$(dirname "$VENV")"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio>=1.51" \
    "grpcio-tools>=1.51" "grpcio-reflection>=1.51" "openai>=1.0" "prometheus-client>=0.16"
"$VENV/bin/python" -c "import $MODULES, grpc, openai; print('grpcio', grpc.__version__, 'openai', openai.__version__)"
