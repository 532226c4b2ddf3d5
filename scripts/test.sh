#!/usr/bin/env bash
# The whole test suite: Rust integration tests on a real PostgreSQL, then the official Vonage
# SDKs (Node and Python) against a running Outdial.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/db-env.sh outdial_test

# Programs the tests drive: faketime runs an instance whose clock lags (history sealing test).
if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing faketime with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime >/dev/null
  else
    echo "test.sh: faketime is missing; install it (sudo apt-get install faketime) or the history clock test fails" >&2
  fi
fi
# SIPp (Debian package sip-tester) plays the SIP trunk (tests/sip/*.xml).
if ! command -v sipp >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing sip-tester (sipp) with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sip-tester >/dev/null
  else
    echo "test.sh: sipp is missing; install it (sudo apt-get install sip-tester) or the SIP trunk tests fail" >&2
  fi
fi
# espeak-ng speaks `talk` text (media.tts_engine = "espeak-ng"; tests/media_audio.rs).
if ! command -v espeak-ng >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing espeak-ng with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "test.sh: espeak-ng is missing; install it (sudo apt-get install espeak-ng) or the TTS tests fail" >&2
  fi
fi

# baresip (Debian baresip-core: the phone that answers, plays and records, tests/common/baresip.rs)
# and sox (the audio kit's reference files, tests/audio_kit.rs) let tests assert on real audio;
# lame encodes MP3 recordings (media.lame_path; tests/sip_media.rs, src/media/recorder.rs).
# chromium: the live-calls console's browser test (tests/sdk/node/test/console.test.mjs) drives it
# headless through playwright-core, which downloads no browser of its own.
for tool in baresip:baresip-core sox:sox lame:lame chromium:chromium; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "test.sh: installing ${tool#*:} with apt-get" >&2
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tool#*:}" >/dev/null
    else
      echo "test.sh: ${tool%%:*} is missing; install it (sudo apt-get install ${tool#*:}) or the tests that need it are skipped (they fail when CI is set)" >&2
    fi
  fi
done

# Kamailio (Debian kamailio, 5.6) in front of two instances: tests/cluster.rs runs
# deploy/kamailio/kamailio.cfg (kamcmd reads its dispatcher state).
if ! [ -x /usr/sbin/kamailio ] && ! command -v kamailio >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing kamailio with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio >/dev/null
  else
    echo "test.sh: kamailio is missing; install it (sudo apt-get install kamailio) or the cluster tests (tests/cluster.rs) are skipped (they fail when CI is set)" >&2
  fi
fi

# The test speech server (tests/speech/vosk_server.py, for tests/speech.rs): PocketSphinx and
# websockets from PyPI in tests/speech/.venv, installed again when its requirements change.
speech_venv=tests/speech/.venv
speech_stamp=$speech_venv/.outdial-requirements.sha256
speech_want=$(sha256sum tests/speech/requirements.txt | cut -d' ' -f1)
if [ ! -f "$speech_stamp" ] || [ "$(cat "$speech_stamp")" != "$speech_want" ]; then
  echo "test.sh: installing the test speech server's Python packages into $speech_venv" >&2
  if { [ -x "$speech_venv/bin/python" ] || python3 -m venv "$speech_venv"; } &&
    "$speech_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/speech/requirements.txt; then
    echo "$speech_want" >"$speech_stamp"
  else
    echo "test.sh: pocketsphinx could not be installed; the speech tests are skipped (they fail when CI is set)" >&2
  fi
fi

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --no-fail-fast
fi

bash scripts/sdk-tests.sh
