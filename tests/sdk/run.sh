#!/usr/bin/env bash
# Official-SDK compatibility tests: runs the Vonage Node SDK (tests/sdk/node) and the
# Vonage Python SDK (tests/sdk/python) against an already running Outdial server.
#
# Usage: tests/sdk/run.sh [node|python]...   (default: both)
#
# Required environment:
#   OUTDIAL_URL             e.g. http://127.0.0.1:18080 (plain http; no trailing path)
#   OUTDIAL_APPLICATION_ID  application id for JWT auth on /v1/calls
#   OUTDIAL_PRIVATE_KEY     path to that application's PKCS#8 PEM private key
#   OUTDIAL_API_KEY         account api key    (HTTP Basic on /v2/applications)
#   OUTDIAL_API_SECRET      account api secret
# Optional:
#   OUTDIAL_SIGNATURE_SECRET  the account's signature secret (`signature_secret` in `outdial account
#                           create` output). The signed-webhook tests (test_signed_webhooks.py,
#                           signed-webhooks.test.mjs) need it and are skipped, with a reason, without
#                           it. They also need a server that may call back to loopback
#                           (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true) and finishes calls in
#                           seconds (e.g. OUTDIAL__CARRIER__TIME_SCALE=20); scripts/sdk-tests.sh
#                           sets all three.
#   OUTDIAL_SIP_URL, OUTDIAL_SIP_APPLICATION_ID, OUTDIAL_SIP_PRIVATE_KEY, OUTDIAL_SIP_API_KEY,
#   OUTDIAL_SIP_API_SECRET  a second Outdial with the SIP carrier (carrier.kind = "sip", on its own
#                           database, sip.allow_private_uris = true, SIP on 127.0.0.1), its
#                           application and account, as above. The SIP trunk tests
#                           (sip-trunk.test.mjs, test_sip_trunk.py) start SIPp as the trunk
#                           (tests/sip/uas_answer_wait_bye.xml), add it with POST /v1/trunks,
#                           place a call through it and read its `sip` object back. Without these
#                           variables or sipp they are skipped, saying why; with env CI set they
#                           fail instead. scripts/sdk-tests.sh starts that instance.
#   OUTDIAL_SIP_NUMBER, OUTDIAL_SIP_PORT  a number the SIP instance's account holds on a platform
#                           trunk at 127.0.0.1, and that instance's SIP UDP port: inbound.test.mjs
#                           links the number with the Numbers client and calls it with SIPp.
#   OUTDIAL_NUMBER, OUTDIAL_AVAILABLE_NUMBER
#                           two GB numbers the operator added (`outdial number add`): one owned by
#                           the account above, one without an owner (for sale). The Numbers API
#                           tests (numbers.test.mjs) list, link, buy and cancel them; without these
#                           variables they are skipped (failed with env CI set). scripts/sdk-tests.sh
#                           adds them.
#   PYTHON                  interpreter used to create the venv (default python3, needs >= 3.10)
#
# The console test (console.test.mjs) drives /console in headless Chromium (playwright-core with
# Debian's chromium at /usr/bin/chromium, or CHROMIUM=/path): skipped without it, failed with env
# CI set. scripts/test.sh installs chromium when it runs as root.
#
# The live call-control tests (test_call_control.py, call-control.test.mjs) always run: they start
# a local receiver on 127.0.0.1 (event_url, answer_url, the NCCO for transfers, a WAV to stream)
# and so also need OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true and a fast simulated clock.
#
# Dependencies are installed on first use (npm ci; pip into tests/sdk/python/.venv) and
# re-installed when package-lock.json / requirements.txt change. Exits non-zero if any test fails.
set -euo pipefail

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NODE_DIR="$SDK_DIR/node"
PY_DIR="$SDK_DIR/python"
VENV="$PY_DIR/.venv"

missing=()
for var in OUTDIAL_URL OUTDIAL_APPLICATION_ID OUTDIAL_PRIVATE_KEY OUTDIAL_API_KEY OUTDIAL_API_SECRET; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if ((${#missing[@]})); then
  echo "run.sh: missing environment: ${missing[*]}" >&2
  exit 2
fi
if [[ ! -r "$OUTDIAL_PRIVATE_KEY" ]]; then
  echo "run.sh: OUTDIAL_PRIVATE_KEY=$OUTDIAL_PRIVATE_KEY is not a readable file" >&2
  exit 2
fi
# Absolute, so that the runners may change directory.
OUTDIAL_PRIVATE_KEY="$(cd "$(dirname "$OUTDIAL_PRIVATE_KEY")" && pwd)/$(basename "$OUTDIAL_PRIVATE_KEY")"
export OUTDIAL_URL OUTDIAL_APPLICATION_ID OUTDIAL_PRIVATE_KEY OUTDIAL_API_KEY OUTDIAL_API_SECRET
if [[ -n "${OUTDIAL_SIGNATURE_SECRET:-}" ]]; then
  export OUTDIAL_SIGNATURE_SECRET
else
  echo "run.sh: OUTDIAL_SIGNATURE_SECRET is not set: the signed-webhook tests will be skipped" >&2
fi

suites=("$@")
((${#suites[@]})) || suites=(node python)
for s in "${suites[@]}"; do
  [[ "$s" == node || "$s" == python ]] || { echo "run.sh: unknown suite '$s' (node|python)" >&2; exit 2; }
done

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

install_node() {
  local stamp="$NODE_DIR/node_modules/.outdial-lock.sha256"
  local want
  want="$(hash_of "$NODE_DIR/package-lock.json")"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> npm ci ($NODE_DIR)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund)
    echo "$want" >"$stamp"
  fi
}

install_python() {
  local stamp="$VENV/.outdial-requirements.sha256"
  local want
  want="$(hash_of "$PY_DIR/requirements.txt")"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating venv $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "==> pip install -r requirements.txt into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PY_DIR/requirements.txt"
    echo "$want" >"$stamp"
  fi
}

declare -A result=()
failed=0

run_node() {
  echo
  echo "==================== Node SDK (@vonage/server-sdk) against $OUTDIAL_URL"
  set +e
  (cd "$NODE_DIR" && node --test --test-concurrency=1 --test-reporter=spec \
    test/voice.test.mjs test/applications.test.mjs test/signed-webhooks.test.mjs test/call-control.test.mjs test/accounts.test.mjs test/reports.test.mjs test/readme.test.mjs test/sip-trunk.test.mjs test/websocket.test.mjs test/numbers.test.mjs test/inbound.test.mjs test/console.test.mjs)
  local rc=$?
  set -e
  result[node]=$rc
}

run_python() {
  echo
  echo "==================== Python SDK (vonage) against $OUTDIAL_URL"
  set +e
  (cd "$PY_DIR" && "$VENV/bin/python" -m pytest -p no:cacheprovider)
  local rc=$?
  set -e
  result[python]=$rc
}

for s in "${suites[@]}"; do
  "install_$s"
done
for s in "${suites[@]}"; do
  "run_$s"
done

echo
echo "==================== SDK compatibility summary"
for s in "${suites[@]}"; do
  rc="${result[$s]}"
  if [[ "$rc" == 0 ]]; then
    echo "$s: PASS"
  else
    echo "$s: FAIL (exit $rc)"
    failed=1
  fi
done
exit "$failed"
