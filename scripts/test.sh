#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need
# (pgvector into the local PostgreSQL 15, private Python environments and the TypeScript
# client's npm packages), then runs every crate's tests in one build, then the third-party tool
# and client-library tests against the binary that build produced.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-pgvector.sh
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
