#!/usr/bin/env bash
# Schemathesis (PyPI) against a running Outdial's served OpenAPI document (/v1/openapi.json):
# requests generated from the document, valid and invalid, to every operation; fails on any 5xx,
# a status the operation does not document, or a body or content type that does not fit it.
# scripts/sdk-tests.sh runs it after the SDK tests, on the simulated-carrier instance.
#
# Required environment (as for tests/sdk/run.sh):
#   OUTDIAL_URL, OUTDIAL_APPLICATION_ID, OUTDIAL_PRIVATE_KEY, OUTDIAL_API_KEY, OUTDIAL_API_SECRET
#   OUTDIAL_BIN             the outdial binary (mints the application JWT with `outdial jwt`)
# Optional:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 25; the run stays
#                           around a minute or two)
#   SCHEMATHESIS_SEED       the seed (default 1: the same cases every run, so a failure is the
#                           code's, not the draw's; set another to explore, e.g. $RANDOM)
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

missing=()
for var in OUTDIAL_URL OUTDIAL_APPLICATION_ID OUTDIAL_PRIVATE_KEY OUTDIAL_API_KEY OUTDIAL_API_SECRET OUTDIAL_BIN; do
  [[ -n "${!var:-}" ]] || missing+=("$var")
done
if ((${#missing[@]})); then
  echo "schemathesis: missing environment: ${missing[*]}" >&2
  exit 2
fi

# Installed into its own venv, again when the pinned requirements change.
venv=$dir/.venv
stamp=$venv/.outdial-requirements.sha256
want=$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "schemathesis: installing its Python packages into $venv" >&2
  { [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
  echo "$want" >"$stamp"
fi

# One JWT for the whole run (the server accepts a token many times until it expires).
OUTDIAL_JWT=$("$OUTDIAL_BIN" jwt --application-id "$OUTDIAL_APPLICATION_ID" --private-key "$OUTDIAL_PRIVATE_KEY" --ttl 3600)
export OUTDIAL_JWT OUTDIAL_API_KEY OUTDIAL_API_SECRET

seed=${SCHEMATHESIS_SEED:-1}
echo "schemathesis: $OUTDIAL_URL/v1/openapi.json, seed $seed"
# Checks: no 5xx; every status, content type, header and body as the operation documents them;
# a valid request is accepted (refusals the data explains aside: schemathesis.toml); a method a
# path does not take gets 405 with an Allow header naming the ones it does. No generated string
# holds U+0000: the document says every request holding one is refused (PostgreSQL cannot store it).
# One worker: with two, hypothesis parses source with Python 3.11's ast module from both threads,
# which now and then fails ("AST constructor recursion depth mismatch", a CPython bug).
# Phases: the document's examples, its boundaries (coverage) and random data (fuzzing); not the
# stateful phase (it would chain creates and deletes through links the document does not have).
"$venv/bin/st" --config-file "$dir/schemathesis.toml" run "$OUTDIAL_URL/v1/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,positive_data_acceptance,unsupported_method,allow_header_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" --seed "$seed" \
  --workers 1 --request-timeout 10 --no-color --generation-database none \
  --generation-allow-x00 false \
  "$@"
