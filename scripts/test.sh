#!/usr/bin/env bash
# The whole test suite: Rust integration tests on a real PostgreSQL, then the official Vonage
# SDKs (Node and Python) against a running Outdial.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial_test

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --no-fail-fast
fi

bash scripts/sdk-tests.sh
