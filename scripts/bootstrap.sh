#!/usr/bin/env bash
# Sourced by ./nanoclaw and ./run-tests: make sure .venv exists and holds this checkout's dependencies.
# Re-installs only when pyproject.toml changed (a stamp file records its hash), so later runs start at once.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "nanoclaw: Python 3.11 or newer is needed (found: $("$python" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
stamp="$venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "nanoclaw: installing dependencies into $venv (first run, or pyproject.toml changed)…" >&2
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e "$repo[test,whatsapp,agent]" >&2
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi
# The sandbox image starts from a local Debian base made with debootstrap when no registry can be reached
# (deploy/images/base.py); install it where we can (root with apt), else that step says what is missing.
if ! command -v debootstrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "nanoclaw: installing debootstrap (for the local sandbox base image)…" >&2
  apt-get install -y -q debootstrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q debootstrap >/dev/null; } || \
    echo "nanoclaw: could not install debootstrap; \`nanoclaw sandbox build\` will need it or a pullable base image" >&2
fi
# The compose deployment's tests drive docker-compose (v1 CLI; deploy/compose.yaml): install it the same way.
if ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "nanoclaw: installing docker-compose (for the compose deployment tests)…" >&2
  apt-get install -y -q docker-compose >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q docker-compose >/dev/null; } || \
    echo "nanoclaw: could not install docker-compose; tests/deploy/test_compose_* will fail without it" >&2
fi
