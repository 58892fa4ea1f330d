#!/usr/bin/env bash
# Install crewdesk into .venv with the embedded local model (idempotent).
# llama.cpp's own llama-server is built from source once (about 8 minutes on 2 cores) from the llama.cpp tree that
# the llama-cpp-python sdist on PyPI vendors (MIT), and cached in ~/.cache/crewdesk, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CREWDESK_VENV:-.venv}
CACHE=${CREWDESK_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crewdesk}
LLAMA_SDIST_VERSION=0.3.36  # llama-cpp-python release whose vendored llama.cpp we build

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "crewdesk needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
fi

# A portable build (AVX2, no -march=native): the binary is cached and may be reused on another CPU, and llama.cpp's
# native build segfaulted here on a CPU with AMX (first chat completion, exit 139). No web UI, no HTTPS, no downloads.
LLAMA_CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF}"
build_id="$(printf '%s %s' "$LLAMA_SDIST_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
server_bin="$CACHE/llama-server-$build_id"
if [ ! -x "$server_bin" ]; then
  echo "building llama.cpp's llama-server (llama-cpp-python $LLAMA_SDIST_VERSION's vendored tree; once, about 8 minutes on 2 cores)..."
  command -v cmake >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q cmake >/dev/null; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$VENV/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_SDIST_VERSION" -d "$work"
  tar -xzf "$work"/llama_cpp_python-"$LLAMA_SDIST_VERSION".tar.gz -C "$work"
  src="$work/llama_cpp_python-$LLAMA_SDIST_VERSION/vendor/llama.cpp"
  # shellcheck disable=SC2086
  cmake -S "$src" -B "$work/build" $LLAMA_CMAKE_ARGS >"$work/cmake.log" 2>&1 || { tail -20 "$work/cmake.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
  mkdir -p "$CACHE"
  install -m 755 "$work/build/bin/llama-server" "$server_bin.partial"
  mv "$server_bin.partial" "$server_bin"
  cp "$src/LICENSE" "$CACHE/llama.cpp-LICENSE"
fi
if ! cmp -s "$server_bin" "$VENV/bin/llama-server"; then
  install -m 755 "$server_bin" "$VENV/bin/llama-server"
fi

stamp="$VENV/.crewdesk-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install -q -e ".[local,test]"
  echo "$want" > "$stamp"
fi
