"""Live call control through the official Python SDK (vonage-voice 1.5.1): hangup, mute, unmute,
earmuff, unearmuff, transfer_call_ncco, transfer_call_answer_url, play_audio_into_call,
stop_audio_stream, play_tts_into_call, stop_tts and play_dtmf_into_call. (1.5.1 has no method for
PUT/DELETE /v1/calls/{uuid}/input/dtmf; the Node suite covers it.)

Each call goes to 447700900000, which the simulated network answers after ~2 s (0.1 s at
OUTDIAL__CARRIER__TIME_SCALE=20). The SDK's CreateCallRequest has no `wait` NCCO model, so the call
is created with an answer_url on a local receiver that answers [{"action": "wait", "timeout": 600}]:
the call stays up until hung up or transferred. The effects are read back from the call's history
(GET /v1/calls/{uuid}/events, sent through the SDK's own HttpClient with its application JWT):
"media" entries whose payload.what says what the simulated callee heard. The receiver is also the
calls' event_url, serves the WAV for play_audio_into_call and the NCCO for transfer_call_answer_url,
and records the transfer event and the notify POSTs that prove the new NCCO ran. The server must be
allowed to call back to loopback (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true), as
scripts/sdk-tests.sh sets.
"""

import json
import struct
import threading
import time
import uuid as uuidlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from vonage_http_client.errors import HttpRequestError
from vonage_voice import (
    AudioStreamOptions,
    CallMessage,
    CreateCallRequest,
    Notify,
    Talk,
    TtsStreamOptions,
)

from conftest import FROM_NUMBER, TO_NUMBER, with_rate_limit_retry

WAIT_S = 15
RUN = uuidlib.uuid4().hex[:8]
WAIT_NCCO = [{'action': 'wait', 'timeout': 600}]


def silent_wav(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """`seconds` of 8 kHz 16-bit mono PCM silence."""
    data_len = int(seconds * rate) * 2
    header = b'RIFF' + struct.pack('<I', 36 + data_len) + b'WAVEfmt '
    header += struct.pack('<IHHIIHH', 16, 1, 1, rate, rate * 2, 2, 16)
    header += b'data' + struct.pack('<I', data_len)
    return header + bytes(data_len)


class Receiver:
    """An HTTP receiver on 127.0.0.1 recording every request (method, path, query, JSON body).

    `routes` maps a path to (content type, bytes); anything else answers 200 with an empty body.
    """

    def __init__(self):
        self.requests = []
        self.routes = {}
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _handle(self):
                if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
                    raw = b''
                    while True:
                        size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                        if size == 0:
                            while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                                pass
                            break
                        raw += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                parts = urlsplit(self.path)
                with receiver.arrived:
                    receiver.requests.append(
                        {'method': self.command, 'path': parts.path, 'query': parse_qs(parts.query), 'body': body}
                    )
                    route = receiver.routes.get(parts.path)
                    receiver.arrived.notify_all()
                content_type, content = route if route else ('text/plain', b'')
                self.send_response(200)
                self.send_header('Content-Type', content_type)
                self.send_header('Content-Length', str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def serve_json(self, path: str, value) -> str:
        self.routes[path] = ('application/json', json.dumps(value).encode())
        return self.url + path

    def wait_for(self, predicate, what: str, timeout: float = WAIT_S):
        """The first recorded request matching predicate; fails after timeout."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                hit = next((r for r in self.requests if predicate(r)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    outline = [
                        (r['method'], r['path'], (r['body'] or {}).get('status') if isinstance(r['body'], dict) else None)
                        for r in self.requests
                    ]
                    pytest.fail(f'receiver: no {what} within {timeout} s; got {outline}')
                self.arrived.wait(left)


def event_for(call_uuid: str, predicate):
    def match(r):
        body = r['body']
        return (
            r['method'] == 'POST' and r['path'] == '/event' and isinstance(body, dict)
            and body.get('uuid') == call_uuid and predicate(body)
        )

    return match


def history(voice, call_uuid: str) -> list[dict]:
    """GET /v1/calls/{uuid}/events through the SDK's HttpClient (application JWT auth)."""
    body = voice.http_client.get(voice.http_client.api_host, f'/v1/calls/{call_uuid}/events')
    assert voice.http_client.last_response.status_code == 200
    assert isinstance(body, dict) and isinstance(body.get('_embedded', {}).get('events'), list), body
    return body['_embedded']['events']


def media_lines(events: list[dict]) -> list[str]:
    return [e['payload'].get('what') for e in events if e['kind'] == 'media']


def outline(events: list[dict]) -> list[str]:
    return [f"media: {e['payload'].get('what')}" if e['kind'] == 'media' else e['kind'] for e in events]


def wait_for_history(voice, call_uuid: str, predicate, what: str, timeout: float = WAIT_S) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        events = history(voice, call_uuid)
        if predicate(events):
            return events
        if time.monotonic() > deadline:
            pytest.fail(f'call {call_uuid}: no {what} in its history within {timeout} s; history: {outline(events)}')
        time.sleep(0.1)


def wait_for_media(voice, call_uuid: str, line: str) -> list[dict]:
    return wait_for_history(voice, call_uuid, lambda events: line in media_lines(events), f'media line {line!r}')


def wait_for_status(voice, call_uuid: str, wanted: str, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        call = voice.voice.get_call(call_uuid)
        if call.status == wanted:
            return call
        if time.monotonic() > deadline:
            pytest.fail(f'call {call_uuid} is still {call.status} after {timeout} s, expected {wanted}')
        time.sleep(0.1)


def answered_waiting_call(voice, receiver: Receiver, tag: str) -> str:
    """Creates a call whose answer_url (on the receiver) answers a 600 s wait; waits until answered."""
    answer_url = receiver.serve_json(f'/answer/{tag}', WAIT_NCCO)
    request = CreateCallRequest(
        to=[{'type': 'phone', 'number': TO_NUMBER}],
        from_={'type': 'phone', 'number': FROM_NUMBER},
        answer_url=[answer_url],
        answer_method='GET',
        event_url=[f'{receiver.url}/event'],
    )
    call = with_rate_limit_retry(lambda: voice.voice.create_call(request))
    assert call.uuid and call.status == 'started'
    wait_for_status(voice, call.uuid, 'answered')
    receiver.wait_for(lambda r: r['path'] == f'/answer/{tag}', f'answer_url request for {tag}', timeout=1)
    return call.uuid


def hangup_quietly(voice, call_uuid: str):
    try:
        voice.voice.hangup(call_uuid)
    except HttpRequestError as err:
        if err.response.status_code != 400:  # 400: already ended
            raise


@pytest.fixture(scope='module')
def receiver():
    with Receiver() as r:
        yield r


def last_status(voice) -> int:
    return voice.http_client.last_response.status_code


# --------------------------------------------------------------------------- one live call


@pytest.fixture(scope='module')
def live_call(voice, receiver):
    call_uuid = answered_waiting_call(voice, receiver, f'live-{RUN}')
    yield call_uuid
    hangup_quietly(voice, call_uuid)


def test_mute_and_unmute(voice, live_call):
    assert voice.voice.mute(live_call) is None
    assert last_status(voice) == 204
    wait_for_media(voice, live_call, "muted: the callee's audio is not sent")
    assert voice.voice.unmute(live_call) is None
    assert last_status(voice) == 204
    lines = media_lines(wait_for_media(voice, live_call, 'unmuted'))
    assert lines.index("muted: the callee's audio is not sent") < lines.index('unmuted'), lines


def test_earmuff_and_unearmuff(voice, live_call):
    assert voice.voice.earmuff(live_call) is None
    assert last_status(voice) == 204
    wait_for_media(voice, live_call, 'earmuffed: the callee hears nothing')
    assert voice.voice.unearmuff(live_call) is None
    assert last_status(voice) == 204
    lines = media_lines(wait_for_media(voice, live_call, 'unearmuffed'))
    assert lines.index('earmuffed: the callee hears nothing') < lines.index('unearmuffed'), lines


def test_play_tts_into_call_and_stop_tts(voice, live_call):
    text = f'Playing text to speech into a live call {RUN}'
    started = voice.voice.play_tts_into_call(
        live_call, TtsStreamOptions(text=text, language='en-GB', style=0, premium=False, loop=0, level=0.2)
    )
    assert isinstance(started, CallMessage)
    assert (started.message, started.uuid) == ('Talk started', live_call)
    wait_for_media(voice, live_call, f'heard talk "{text}"')

    stopped = voice.voice.stop_tts(live_call)
    assert isinstance(stopped, CallMessage)
    assert (stopped.message, stopped.uuid) == ('Talk stopped', live_call)
    wait_for_media(voice, live_call, f'stopped talk "{text}"')


def test_play_audio_into_call_and_stop_audio_stream(voice, receiver, live_call):
    path = f'/audio/hold-{RUN}.wav'
    receiver.routes[path] = ('audio/wav', silent_wav())
    wav_url = receiver.url + path
    # loop 0 = until stopped; the SDK sends level as a JSON number.
    started = voice.voice.play_audio_into_call(live_call, AudioStreamOptions(stream_url=[wav_url], loop=0, level=0.3))
    assert isinstance(started, CallMessage)
    assert (started.message, started.uuid) == ('Stream started', live_call)
    wait_for_media(voice, live_call, f'heard stream {wav_url}')
    receiver.wait_for(lambda r: r['method'] == 'GET' and r['path'] == path, 'GET of the stream URL', timeout=1)

    stopped = voice.voice.stop_audio_stream(live_call)
    assert isinstance(stopped, CallMessage)
    assert (stopped.message, stopped.uuid) == ('Stream stopped', live_call)
    wait_for_media(voice, live_call, f'stopped stream {wav_url}')


def test_play_dtmf_into_call(voice, live_call):
    sent = voice.voice.play_dtmf_into_call(live_call, '1234#*')
    assert isinstance(sent, CallMessage)
    assert (sent.message, sent.uuid) == ('DTMF sent', live_call)
    wait_for_media(voice, live_call, 'heard DTMF 1234#*')


def test_hangup_completes_the_call(voice, receiver, live_call):
    assert voice.voice.hangup(live_call) is None
    assert last_status(voice) == 204
    call = wait_for_status(voice, live_call, 'completed')
    assert call.uuid == live_call
    receiver.wait_for(event_for(live_call, lambda b: b.get('status') == 'completed'), '"completed" event')
    kinds = [e['kind'] for e in history(voice, live_call)]
    assert 'completed' in kinds, kinds

    # An ended call can no longer be controlled: 400 (HttpRequestError).
    for attempt in (
        lambda: voice.voice.mute(live_call),
        lambda: voice.voice.play_tts_into_call(live_call, TtsStreamOptions(text='too late')),
        lambda: voice.voice.hangup(live_call),
    ):
        with pytest.raises(HttpRequestError) as info:
            attempt()
        assert info.value.response.status_code == 400


# --------------------------------------------------------------------------- transfers


def test_transfer_call_ncco_runs_the_new_ncco(voice, receiver):
    call_uuid = answered_waiting_call(voice, receiver, f'ncco-{RUN}')
    try:
        text = f'Transferred by an inline NCCO {RUN}'
        notify_path = f'/notify/ncco-{RUN}'
        result = voice.voice.transfer_call_ncco(
            call_uuid,
            [
                Talk(text=text),
                Notify(payload={'step': 'ncco-transfer', 'run': RUN}, eventUrl=[receiver.url + notify_path]),
            ],
        )
        assert result is None
        assert last_status(voice) == 204

        transfer = receiver.wait_for(event_for(call_uuid, lambda b: b.get('type') == 'transfer'), 'transfer event')
        for key in ('conversation_uuid_from', 'conversation_uuid_to', 'timestamp'):
            assert isinstance(transfer['body'].get(key), str), transfer['body']
        notify = receiver.wait_for(lambda r: r['method'] == 'POST' and r['path'] == notify_path, 'notify POST')
        assert notify['body'] == {'step': 'ncco-transfer', 'run': RUN}

        wait_for_status(voice, call_uuid, 'completed')
        events = history(voice, call_uuid)
        kinds = [e['kind'] for e in events]
        assert f'heard talk "{text}"' in media_lines(events), outline(events)
        for kind in ('transfer', 'notify', 'completed'):
            assert kind in kinds, outline(events)
        assert kinds.index('transfer') < kinds.index('notify'), outline(events)
    finally:
        hangup_quietly(voice, call_uuid)


def test_transfer_call_answer_url_fetches_and_runs_the_new_ncco(voice, receiver):
    call_uuid = answered_waiting_call(voice, receiver, f'url-{RUN}')
    try:
        notify_path = f'/notify/url-{RUN}'
        ncco_path = f'/ncco/transfer-{RUN}'
        ncco_url = receiver.serve_json(
            ncco_path,
            [{'action': 'notify', 'payload': {'step': 'url-transfer', 'run': RUN}, 'eventUrl': [receiver.url + notify_path]}],
        )
        assert voice.voice.transfer_call_answer_url(call_uuid, ncco_url) is None
        assert last_status(voice) == 204

        fetched = receiver.wait_for(lambda r: r['path'] == ncco_path, f'request for {ncco_path}')
        assert fetched['method'] == 'GET'
        receiver.wait_for(event_for(call_uuid, lambda b: b.get('type') == 'transfer'), 'transfer event')
        notify = receiver.wait_for(lambda r: r['method'] == 'POST' and r['path'] == notify_path, 'notify POST')
        assert notify['body'] == {'step': 'url-transfer', 'run': RUN}

        wait_for_status(voice, call_uuid, 'completed')
        receiver.wait_for(event_for(call_uuid, lambda b: b.get('status') == 'completed'), '"completed" event')
        events = history(voice, call_uuid)
        for kind in ('transfer', 'notify', 'completed'):
            assert kind in [e['kind'] for e in events], outline(events)
    finally:
        hangup_quietly(voice, call_uuid)
