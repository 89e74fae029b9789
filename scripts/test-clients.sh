#!/usr/bin/env bash
# The client libraries' tests (clients/python, clients/typescript) against a real server, from a
# fresh machine: a private Python environment in target/client-python-env with the pinned test
# requirements and the client package installed from clients/python, `npm ci` in
# clients/typescript from its committed package-lock.json, then both suites. The server binary
# must already be built (`cargo build --bin astrocyte`); ASTROCYTE_TEST_BIN overrides its path.
# Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

export ASTROCYTE_TEST_BIN="${ASTROCYTE_TEST_BIN:-$root/target/debug/astrocyte}"
if [ ! -x "$ASTROCYTE_TEST_BIN" ]; then
  echo "test-clients: $ASTROCYTE_TEST_BIN is missing; run 'cargo build --bin astrocyte' first" >&2
  exit 1
fi

status=0

echo "== Python client (clients/python)"
venv="$root/target/client-python-env"
requirements="$root/clients/python/requirements-test.txt"
stamp="$venv/.installed"
if ! { [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; }; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
# The package as a user installs it (not the source tree), afresh every run.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$root/clients/python"
(cd "$root/clients/python" && "$venv/bin/python" -m pytest -q -p no:cacheprovider tests) || status=1

echo "== TypeScript client (clients/typescript)"
if [ -d "$root/clients/typescript" ]; then
  (cd "$root/clients/typescript" && npm ci --no-audit --no-fund --loglevel=error && npm test) || status=1
fi

exit "$status"
