#!/usr/bin/env bash
# Runs Outdial on 127.0.0.1:8080: database, migrations, demo account and application, server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial
cargo build --release --quiet
bin=target/release/outdial
"$bin" demo --key-file .outdial/demo-private.key
exec "$bin" serve
