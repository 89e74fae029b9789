#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need
# (pgvector into the local PostgreSQL 15, a private Python environment for the third-party
# client tests), then runs every crate's tests in one build, then the Python tests against the
# binary that build produced.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-pgvector.sh
bash scripts/fetch-model.sh
export ASTROCYTE_TEST_DATABASE_URL="${ASTROCYTE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo test --workspace --locked

# Third-party clients (grpcio from the repository's proto) against a real `astrocyte serve`.
bash scripts/python-env.sh
cargo build --locked --bin astrocyte
ASTROCYTE_TEST_BIN="$PWD/target/debug/astrocyte" target/python-env/bin/python -m pytest -q tests
