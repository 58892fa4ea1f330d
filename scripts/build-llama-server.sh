#!/usr/bin/env bash
# Build llama.cpp's llama-server once into DIR (default ~/.cache/crewdesk) and print its path. The source is the
# llama.cpp tree that the llama-cpp-python sdist on PyPI vendors (MIT); only the server target is built.
# Used by scripts/setup.sh and the Dockerfile.
set -euo pipefail
CACHE=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/crewdesk}
LLAMA_SDIST_VERSION=0.3.36  # llama-cpp-python release whose vendored llama.cpp we build
PIP=${PIP:-pip}
# A portable build (AVX2, no -march=native): the binary is cached and may be reused on another CPU, and llama.cpp's
# native build segfaulted here on a CPU with AMX (first chat completion, exit 139). No web UI, no HTTPS, no downloads.
LLAMA_CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF}"
build_id="$(printf '%s %s' "$LLAMA_SDIST_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-12)"
server_bin="$CACHE/llama-server-$build_id"
if [ ! -x "$server_bin" ]; then
  echo "building llama.cpp's llama-server (llama-cpp-python $LLAMA_SDIST_VERSION's vendored tree; once, about 8 minutes on 2 cores)..." >&2
  command -v cmake >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q cmake >/dev/null; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$PIP" download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_SDIST_VERSION" -d "$work" >&2
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
echo "$server_bin"
