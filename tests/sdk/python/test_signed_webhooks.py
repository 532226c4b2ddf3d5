"""Signed webhooks: the official Python SDK verifies Outdial's event callbacks.

An application with capabilities.voice.signed_callbacks makes Outdial send every call event
with `Authorization: Bearer <HS256 JWT>` keyed with the account's signature secret, carrying
payload_hash = hex sha256 of the body (as Vonage does). The secret comes from
OUTDIAL_SIGNATURE_SECRET (optional: the test is skipped without it). The server must be
allowed to call back to loopback (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true) and should
run simulated time fast (OUTDIAL__CARRIER__TIME_SCALE=20), as scripts/sdk-tests.sh does.
"""

import hashlib
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from vonage_application import ApplicationConfig, Capabilities, VoiceUrl, VoiceWebhooks
from vonage_application import Voice as VoiceCapability
from vonage_http_client.errors import NotFoundError
from vonage_voice import CreateCallRequest, Talk

from conftest import FROM_NUMBER, TO_NUMBER, voice_client, with_rate_limit_retry

WAIT_FOR_COMPLETED_S = 20
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope='module')
def signature_secret() -> str:
    secret = os.environ.get('OUTDIAL_SIGNATURE_SECRET')
    if not secret:
        pytest.skip(
            'OUTDIAL_SIGNATURE_SECRET is not set (the account signature secret, `signature_secret` '
            'in `outdial account create` output): cannot verify signed webhooks'
        )
    return secret


class Receiver:
    """A webhook receiver on 127.0.0.1 recording every request's method, path, headers, raw body."""

    def __init__(self):
        self.requests = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _record(self):
                if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
                    body = b''
                    while True:
                        size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                        if size == 0:
                            while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                with receiver.arrived:
                    receiver.requests.append(
                        {'method': self.command, 'path': self.path, 'headers': dict(self.headers.items()), 'body': body}
                    )
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header('Content-Length', '0')
                self.end_headers()

            do_POST = do_GET = do_PUT = _record

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

    def snapshot(self):
        with self.arrived:
            return list(self.requests)

    def wait_for(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
            return True


def status_of(request) -> str | None:
    try:
        return json.loads(request['body']).get('status')
    except (ValueError, AttributeError):
        return None


def bearer_token(request) -> str:
    headers = {k.lower(): v for k, v in request['headers'].items()}
    auth = headers.get('authorization')
    assert auth, f'unsigned webhook {request["method"]} {request["path"]}: headers {request["headers"]}'
    scheme, _, token = auth.partition(' ')
    assert scheme == 'Bearer' and token, f'Authorization is not a bearer token: {auth!r}'
    return token


def wrong_secret(secret: str) -> str:
    # Same length (pyjwt warns about short HMAC keys), one character different.
    return ('B' if secret[0] == 'A' else 'A') + secret[1:]


@pytest.fixture(scope='module')
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(scope='module')
def signed_application(account, receiver, signature_secret):
    app = account.application.create_application(
        ApplicationConfig(
            name=f'sdk-py-signed-{RUN}',
            capabilities=Capabilities(
                voice=VoiceCapability(
                    webhooks=VoiceWebhooks(
                        answer_url=VoiceUrl(address=f'{receiver.url}/app/answer', http_method='GET'),
                        event_url=VoiceUrl(address=f'{receiver.url}/app/event', http_method='POST'),
                    ),
                    signed_callbacks=True,
                )
            ),
        )
    )
    yield app
    try:
        account.application.delete_application(app.id)
    except NotFoundError:
        pass


@pytest.fixture(scope='module')
def signed_call(signed_application, receiver):
    client = voice_client(
        application_id=signed_application.id, private_key=signed_application.keys.model_extra['private_key']
    )
    request = CreateCallRequest(
        to=[{'type': 'phone', 'number': TO_NUMBER}],
        from_={'type': 'phone', 'number': FROM_NUMBER},
        ncco=[Talk(text='Signed webhooks from the Outdial SDK compatibility tests')],
        event_url=[f'{receiver.url}/call/event'],
    )
    call = with_rate_limit_retry(lambda: client.voice.create_call(request))
    completed = receiver.wait_for(
        lambda reqs: any(status_of(r) == 'completed' for r in reqs), WAIT_FOR_COMPLETED_S
    )
    received = receiver.snapshot()
    assert completed, (
        f'no "completed" event for call {call.uuid} within {WAIT_FOR_COMPLETED_S} s; received '
        f'{[(r["method"], r["path"], status_of(r)) for r in received]}'
    )
    return client, call, received


def test_signed_callbacks_is_stored(account, signed_application):
    assert signed_application.capabilities.voice.signed_callbacks is True
    got = account.application.get_application(signed_application.id)
    assert got.capabilities.voice.signed_callbacks is True


def test_every_call_event_is_signed_and_verified_by_the_sdk(
    signed_call, signed_application, signature_secret
):
    client, call, received = signed_call
    statuses = [status_of(r) for r in received]
    assert 'completed' in statuses, statuses
    jtis = set()
    for request in received:
        assert request['method'] == 'POST', request
        assert request['path'] == '/call/event', f'event went to {request["path"]}, not the call event_url'
        body = json.loads(request['body'])
        assert body.get('uuid') == call.uuid, body
        token = bearer_token(request)

        assert client.voice.verify_signature(token, signature_secret) is True, (
            f'SDK rejected the signature of the {body.get("status")!r} event'
        )
        assert client.voice.verify_signature(token, wrong_secret(signature_secret)) is False

        claims = jwt.decode(token, signature_secret, algorithms=['HS256'])
        assert jwt.get_unverified_header(token)['alg'] == 'HS256'
        assert claims['payload_hash'] == hashlib.sha256(request['body']).hexdigest(), (
            f'payload_hash does not match the {body.get("status")!r} body'
        )
        assert claims['iss'] == 'Vonage'
        assert claims['api_key'] == os.environ['OUTDIAL_API_KEY']
        assert claims['application_id'] == signed_application.id
        assert isinstance(claims['iat'], int) and abs(claims['iat'] - time.time()) < 300, claims
        assert claims['jti'] and claims['jti'] not in jtis, 'jti repeated'
        jtis.add(claims['jti'])
