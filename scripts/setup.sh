#!/usr/bin/env bash
# Install crewdesk into .venv with the embedded local model (idempotent).
# llama.cpp's own llama-server is built from source once (about 8 minutes on 2 cores) from the llama.cpp tree that
# the llama-cpp-python sdist on PyPI vendors (MIT), and cached in ~/.cache/crewdesk, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${CREWDESK_VENV:-.venv}
CACHE=${CREWDESK_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crewdesk}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || { echo "crewdesk needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel setuptools
fi

server_bin="$(PIP="$VENV/bin/pip" bash scripts/build-llama-server.sh "$CACHE")"
if ! cmp -s "$server_bin" "$VENV/bin/llama-server"; then
  install -m 755 "$server_bin" "$VENV/bin/llama-server"
fi

stamp="$VENV/.crewdesk-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install -q -e ".[local,test]"
  echo "$want" > "$stamp"
fi
