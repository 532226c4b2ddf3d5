#!/usr/bin/env bash
# Runs Outdial on 127.0.0.1:8080: database, migrations, demo account and application, server.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial
# Local testing: webhooks to a receiver on this machine are allowed.
export OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=${OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES:-true}
cargo build --release --quiet
bin=target/release/outdial
"$bin" demo --key-file .outdial/demo-private.key
exec "$bin" serve
