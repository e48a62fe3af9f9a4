#!/usr/bin/env bash
# Builds llama.cpp (the competitor and the tokenizer oracle) from the source vendored in the
# PyPI sdist of llama-cpp-python, CPU only, into $LLAMACPP_DIR (default
# /var/cache/emserve/llama.cpp). Prints the directory holding llama-bench, llama-tokenize,
# llama-completion, llama-simple, llama-quantize. Nothing of llama.cpp is committed; this script is the only trace of it.
set -euo pipefail
DIR="${LLAMACPP_DIR:-/var/cache/emserve/llama.cpp}"
VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
mkdir -p "$DIR"
if [ ! -x "$DIR/build/bin/llama-bench" ] || [ ! -x "$DIR/build/bin/llama-simple" ]; then
  if [ ! -f "$DIR/src/CMakeLists.txt" ]; then
    tmp=$(mktemp -d)
    pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$tmp" >&2
    tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    rm -rf "$DIR/src"
    mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$DIR/src"
    rm -rf "$tmp"
  fi
  cmake -S "$DIR/src" -B "$DIR/build" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$DIR/build" -j"$(nproc)" --target llama-bench llama-tokenize llama-completion \
    llama-simple llama-quantize >&2
fi
echo "$DIR/build/bin"
