#!/usr/bin/env bash
# Starts Outdial on a free port over a fresh database and runs the official SDKs' tests against it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial_sdk
psql "$DATABASE_URL" -qc 'drop schema public cascade; create schema public' >/dev/null

cargo build --quiet --bin outdial
bin=${CARGO_TARGET_DIR:-target}/debug/outdial
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export OUTDIAL__HTTP__PORT=$port OUTDIAL__LIMITS__OTHER_REQUESTS_PER_SECOND=1000 RUST_LOG=${RUST_LOG:-warn}
# The signed-webhook and call-control tests receive call events (and serve NCCOs and audio) on
# 127.0.0.1 and wait for calls to be answered and completed: allow loopback webhooks and run
# simulated time 20x faster.
export OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true OUTDIAL__CARRIER__TIME_SCALE=20

"$bin" migrate >/dev/null
account=$("$bin" account create --name sdk-tests --calls-per-second 1000)
api_key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$account")
api_secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_secret"])' <<<"$account")
signature_secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["signature_secret"])' <<<"$account")
app=$("$bin" app create --api-key "$api_key" --name sdk-tests --event-url "http://127.0.0.1:9/events" --private-key-out "$work/private.key")
app_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$app")

"$bin" serve >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$work/server.log"; echo "sdk-tests: server did not start" >&2; exit 1; }

OUTDIAL_URL="http://127.0.0.1:$port" OUTDIAL_APPLICATION_ID="$app_id" OUTDIAL_PRIVATE_KEY="$work/private.key" \
OUTDIAL_API_KEY="$api_key" OUTDIAL_API_SECRET="$api_secret" OUTDIAL_SIGNATURE_SECRET="$signature_secret" \
  bash tests/sdk/run.sh || { echo "--- server log ---"; tail -n 50 "$work/server.log"; exit 1; }
