#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what the tests need
# (pgvector into the local PostgreSQL 15), then runs every crate's tests in one build.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-pgvector.sh
bash scripts/fetch-model.sh
export ASTROCYTE_TEST_DATABASE_URL="${ASTROCYTE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo test --workspace --locked
