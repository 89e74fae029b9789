#!/usr/bin/env bash
# The memory inspector's browser tests (tests/ui): Debian's Chromium driven by playwright-core,
# with axe-core accessibility checks, against real `astrocyte serve` processes. Installs
# Chromium with apt when /usr/bin/chromium is missing and the test dependencies with `npm ci`
# from tests/ui/package-lock.json. The server binary must already be built
# (`cargo build --bin astrocyte`); ASTROCYTE_TEST_BIN overrides its path. Screenshots of every
# page go to ${ASTROCYTE_UI_SCREENSHOTS:-target/ui-screenshots}. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

export ASTROCYTE_TEST_BIN="${ASTROCYTE_TEST_BIN:-${CARGO_TARGET_DIR:-target}/debug/astrocyte}"
case "$ASTROCYTE_TEST_BIN" in
  /*) ;;
  *) ASTROCYTE_TEST_BIN="$root/$ASTROCYTE_TEST_BIN" ;;
esac
if [ ! -x "$ASTROCYTE_TEST_BIN" ]; then
  echo "test-ui: $ASTROCYTE_TEST_BIN is missing; run 'cargo build --bin astrocyte' first" >&2
  exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
  echo "== Installing Chromium (apt)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

echo "== Test dependencies (tests/ui)"
(cd "$root/tests/ui" && npm ci --no-audit --no-fund --loglevel=error)

echo "== Inspector browser tests (tests/ui)"
node --test "$root/tests/ui/"
