#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need
# (pgvector into the local PostgreSQL 15, PgBouncer, private Python environments, the
# TypeScript client's and the browser tests' npm packages, Chromium), then runs every crate's
# tests in one build,
# then the third-party tool, client-library and browser tests against the binary it produced.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-pgvector.sh
# PgBouncer (Debian's package) for the PostgreSQL store's tests behind a transaction pooler;
# the tests start instances of their own, so the package's service is not needed.
if [ ! -x /usr/sbin/pgbouncer ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q pgbouncer
fi
bash scripts/fetch-model.sh
export ASTROCYTE_TEST_DATABASE_URL="${ASTROCYTE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo test --workspace --locked

# Third-party tools against a real `astrocyte serve`: grpcio from the repository's proto, and
# schemathesis against /openapi.json on both stores; then our own client libraries.
bash scripts/python-env.sh
cargo build --locked --bin astrocyte
export ASTROCYTE_TEST_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/astrocyte"
target/python-env/bin/python -m pytest -q tests
bash scripts/test-clients.sh
# The memory inspector in a real browser (Debian's Chromium, installed when missing).
bash scripts/test-ui.sh
