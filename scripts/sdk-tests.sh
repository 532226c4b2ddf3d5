#!/usr/bin/env bash
# Starts two Outdials on free ports, each over its own fresh database, and runs the official
# SDKs' tests against them, then schemathesis against the first one's OpenAPI document:
#   - the simulated carrier (database outdial_sdk): every test but the SIP trunk ones;
#   - the SIP carrier (database outdial_sdk_sip, SIP on a free loopback UDP port): the SIP trunk
#     tests (sip-trunk.test.mjs, test_sip_trunk.py), whose trunk is a SIPp they start.
# Separate databases: an instance's workers claim every call in theirs, whatever its carrier.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial_sdk
sim_db=$DATABASE_URL
# Same server and role, other database.
sip_db=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/outdial_sdk_sip")))' "$sim_db")
psql "$sim_db" -Atqc "select 1 from pg_database where datname = 'outdial_sdk_sip'" | grep -q 1 \
  || psql "$sim_db" -qc 'create database outdial_sdk_sip' >/dev/null
for db in "$sim_db" "$sip_db"; do
  PGOPTIONS='--client-min-messages=warning' psql "$db" -qc 'drop schema public cascade; create schema public' >/dev/null
done

cargo build --quiet --bin outdial
bin=${CARGO_TARGET_DIR:-target}/debug/outdial
work=$(mktemp -d)
servers=()
trap 'for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket, sys; s = socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"; }
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
port=$(free_port SOCK_STREAM)
sip_http_port=$(free_port SOCK_STREAM)
sip_udp_port=$(free_port SOCK_DGRAM)
export OUTDIAL__LIMITS__OTHER_REQUESTS_PER_SECOND=1000 RUST_LOG=${RUST_LOG:-warn}
# The signed-webhook and call-control tests receive call events (and serve NCCOs and audio) on
# 127.0.0.1 and wait for calls to be answered and completed: allow loopback webhooks and run
# simulated time 20x faster.
export OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true OUTDIAL__CARRIER__TIME_SCALE=20

# The outdial binary as one instance: its database, HTTP port and carrier. The SIP one runs in
# real time: its calls are real SIP dialogs (a scaled clock would only skew their durations).
# The simulated one seals trunk passwords (schemathesis creates trunks with them) and lets one
# address fail many logins (schemathesis sends wrong credentials too, between valid requests).
sim_env=(DATABASE_URL="$sim_db" OUTDIAL__HTTP__PORT="$port" OUTDIAL__AUTH__FAILED_LOGINS_BURST=1000000
  OUTDIAL__SIP__CREDENTIALS_KEY="$(python3 -c 'import secrets; print(secrets.token_hex(32))')")
sip_env=(DATABASE_URL="$sip_db" OUTDIAL__HTTP__PORT="$sip_http_port" OUTDIAL__CARRIER__KIND=sip OUTDIAL__CARRIER__TIME_SCALE=1
  OUTDIAL__SIP__LISTEN="127.0.0.1:$sip_udp_port" OUTDIAL__SIP__TCP=false OUTDIAL__SIP__ALLOW_PRIVATE_URIS=true)
outdial_sim() { env "${sim_env[@]}" "$bin" "$@"; }
outdial_sip() { env "${sip_env[@]}" "$bin" "$@"; }

# Sets <prefix>_api_key, _api_secret, _signature_secret, _app_id; the key in $work/<prefix>.key.
provision() {
  local run=$1 prefix=$2 account app
  "$run" migrate >/dev/null
  account=$("$run" account create --name "sdk-tests-$prefix" --calls-per-second 1000)
  printf -v "${prefix}_api_key" %s "$(json_field api_key <<<"$account")"
  printf -v "${prefix}_api_secret" %s "$(json_field api_secret <<<"$account")"
  printf -v "${prefix}_signature_secret" %s "$(json_field signature_secret <<<"$account")"
  local key_var="${prefix}_api_key"
  app=$("$run" app create --api-key "${!key_var}" --name "sdk-tests-$prefix" --event-url "http://127.0.0.1:9/events" --private-key-out "$work/$prefix.key")
  printf -v "${prefix}_app_id" %s "$(json_field id <<<"$app")"
}
provision outdial_sim sim
provision outdial_sip sip
# The Numbers API tests' numbers (numbers.test.mjs), held on a platform trunk of the simulated
# instance: one the test account owns, one for sale. GB, from the default rate deck.
sim_number=447700900321
sim_available_number=447700900322
outdial_sim trunk create --name sdk-numbers --host 127.0.0.1 >/dev/null
outdial_sim number add --msisdn "$sim_number" --trunk sdk-numbers --api-key "$sim_api_key" >/dev/null
outdial_sim number add --msisdn "$sim_available_number" --trunk sdk-numbers >/dev/null

# The inbound test's number (inbound.test.mjs), on a platform trunk of the SIP instance at
# 127.0.0.1, where SIPp calls it from.
sip_number=442079460001
outdial_sip trunk create --name sdk-inbound --host 127.0.0.1 >/dev/null
outdial_sip number add --msisdn "$sip_number" --trunk sdk-inbound --api-key "$sip_api_key" --country GB >/dev/null

# Started through env, which execs the binary: $! is the server itself, for the trap's kill.
env "${sim_env[@]}" "$bin" serve >"$work/server.log" 2>&1 &
servers+=($!)
env "${sip_env[@]}" "$bin" serve >"$work/sip-server.log" 2>&1 &
servers+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && curl -sf "http://127.0.0.1:$sip_http_port/health" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { cat "$work/server.log"; echo "sdk-tests: server did not start" >&2; exit 1; }
curl -sf "http://127.0.0.1:$sip_http_port/health" >/dev/null || { cat "$work/sip-server.log"; echo "sdk-tests: SIP server did not start" >&2; exit 1; }

OUTDIAL_URL="http://127.0.0.1:$port" OUTDIAL_APPLICATION_ID="$sim_app_id" OUTDIAL_PRIVATE_KEY="$work/sim.key" \
OUTDIAL_API_KEY="$sim_api_key" OUTDIAL_API_SECRET="$sim_api_secret" OUTDIAL_SIGNATURE_SECRET="$sim_signature_secret" \
OUTDIAL_NUMBER="$sim_number" OUTDIAL_AVAILABLE_NUMBER="$sim_available_number" \
OUTDIAL_SIP_URL="http://127.0.0.1:$sip_http_port" OUTDIAL_SIP_APPLICATION_ID="$sip_app_id" OUTDIAL_SIP_PRIVATE_KEY="$work/sip.key" \
OUTDIAL_SIP_API_KEY="$sip_api_key" OUTDIAL_SIP_API_SECRET="$sip_api_secret" \
OUTDIAL_SIP_NUMBER="$sip_number" OUTDIAL_SIP_PORT="$sip_udp_port" \
  bash tests/sdk/run.sh || {
    echo "--- server log ---"; tail -n 50 "$work/server.log"
    echo "--- SIP server log ---"; tail -n 50 "$work/sip-server.log"
    exit 1
  }

# Schemathesis against the simulated instance's served document (tests/schemathesis/run.sh), after
# the SDK tests: the requests it makes up change the account's data.
OUTDIAL_URL="http://127.0.0.1:$port" OUTDIAL_APPLICATION_ID="$sim_app_id" OUTDIAL_PRIVATE_KEY="$work/sim.key" \
OUTDIAL_API_KEY="$sim_api_key" OUTDIAL_API_SECRET="$sim_api_secret" OUTDIAL_BIN="$bin" \
  bash tests/schemathesis/run.sh || {
    echo "--- server log ---"; tail -n 50 "$work/server.log"
    exit 1
  }
