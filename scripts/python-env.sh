#!/usr/bin/env bash
# A private Python environment for the client tests in tests/ (grpcio, its tools, health and
# reflection clients, pytest), created once in target/python-env.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/python-env
requirements=tests/requirements.txt
stamp="$venv/.installed"
if [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
