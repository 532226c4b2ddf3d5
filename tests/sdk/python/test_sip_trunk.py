"""A call through a SIP trunk, created and read back with the official Python SDK (vonage 4.9.1 /
vonage-voice 1.5.1), against the second Outdial scripts/sdk-tests.sh starts (carrier.kind =
"sip", OUTDIAL_SIP_*). The trunk is SIPp playing tests/sip/uas_answer_wait_bye.xml: INVITE → 100,
180, 200 (PCMU) → ACK, then our BYE → 200. SIPp exits 0 only if our messages followed it.

Without sipp or the OUTDIAL_SIP_* variables the test is skipped, saying why; with env CI set it
fails instead.
"""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from vonage import Auth
from vonage_voice import CreateCallRequest, Talk

from conftest import EVENT_URL, FROM_NUMBER, make_client, with_rate_limit_retry

SIP_VARS = ('OUTDIAL_SIP_URL', 'OUTDIAL_SIP_APPLICATION_ID', 'OUTDIAL_SIP_PRIVATE_KEY', 'OUTDIAL_SIP_API_KEY', 'OUTDIAL_SIP_API_SECRET')
SCENARIO = Path(__file__).resolve().parents[2] / 'sip' / 'uas_answer_wait_bye.xml'
FINAL_STATUSES = {'completed', 'failed', 'rejected', 'busy', 'timeout', 'unanswered', 'cancelled'}
# SIPp's exit code when it could not bind its port (taken meanwhile): try another.
SIPP_BIND_FAILED = 254


def unavailable() -> str | None:
    missing = [name for name in SIP_VARS if not os.environ.get(name)]
    if missing:
        return f'a SIP-carrier Outdial is not configured (missing {", ".join(missing)}; scripts/sdk-tests.sh sets them)'
    if shutil.which('sipp') is None:
        return 'sipp is not installed (apt-get install sip-tester; scripts/test.sh does it when run as root)'
    return None


@pytest.fixture
def sip_ready():
    reason = unavailable()
    if reason and os.environ.get('CI'):
        pytest.fail(f'env CI is set, so the SIP trunk test may not be skipped: {reason}')
    if reason:
        pytest.skip(reason)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def udp_port_taken(port: int) -> bool:
    """SIPp binds without SO_REUSEADDR: binding the port ourselves fails once SIPp holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return True
        return False


class Sipp:
    """SIPp waiting for one call on a free loopback UDP port (started listening)."""

    def __init__(self, scenario: Path):
        self.scenario = scenario
        self.dir = Path(tempfile.mkdtemp(prefix='outdial-sdk-sipp-'))
        last_failure = ''
        for _ in range(5):
            self.port = free_udp_port()
            with open(self.dir / 'screen.log', 'wb') as screen, open(self.dir / 'stderr.log', 'wb') as stderr:
                self.process = subprocess.Popen(
                    ['sipp', '-sf', str(scenario), '-i', '127.0.0.1', '-p', str(self.port), '-m', '1', '-nostdin',
                     '-timeout', '30s', '-timeout_error', '-trace_err', '-trace_msg',
                     '-message_file', str(self.dir / 'messages.log'), '-error_file', str(self.dir / 'errors.log')],
                    cwd=self.dir, stdin=subprocess.DEVNULL, stdout=screen, stderr=stderr,
                )
            deadline = time.monotonic() + 10
            while self.process.poll() is None and not udp_port_taken(self.port):
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f'SIPp did not bind 127.0.0.1:{self.port} within 10 s')
                time.sleep(0.005)
            if self.process.poll() is None:
                return
            last_failure = self.read('stderr.log')
            if self.process.returncode != SIPP_BIND_FAILED and 'Unable to bind' not in last_failure:
                errors = self.read('errors.log')
                self.stop()
                raise AssertionError(f'SIPp exited on start with code {self.process.returncode}:\n{last_failure}\n{errors}')
        self.stop()
        raise AssertionError(f'SIPp could not bind a UDP port in 5 attempts: {last_failure}')

    def read(self, name: str) -> str:
        try:
            return (self.dir / name).read_text(errors='replace').strip()
        except FileNotFoundError:
            return ''

    def wait(self, timeout_s: float) -> tuple[int, str]:
        """Exit code (-1 when SIPp was still running after timeout_s, then killed) and its logs."""
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = -1
        log = [f'SIPp {self.scenario.name} on 127.0.0.1:{self.port}: exit code {code}']
        for name in ('stderr.log', 'errors.log', 'messages.log'):
            text = self.read(name)
            if text:
                log.append(f'--- SIPp {name} ---\n{text}')
        return code, '\n'.join(log)

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def sipp(sip_ready):
    trunk = Sipp(SCENARIO)
    yield trunk
    trunk.stop()


def trunks_request(method: str, path: str, **kwargs) -> requests.Response:
    """The account's trunks through the REST API (Basic auth): the SDK has no trunks client."""
    url = os.environ['OUTDIAL_SIP_URL'].rstrip('/') + path
    auth = (os.environ['OUTDIAL_SIP_API_KEY'], os.environ['OUTDIAL_SIP_API_SECRET'])
    return requests.request(method, url, auth=auth, timeout=15, **kwargs)


def test_call_through_a_sip_trunk_completes_and_reads_back_its_sip_object(sipp):
    with open(os.environ['OUTDIAL_SIP_PRIVATE_KEY']) as f:
        private_key = f.read()
    client = make_client(
        Auth(application_id=os.environ['OUTDIAL_SIP_APPLICATION_ID'], private_key=private_key),
        os.environ['OUTDIAL_SIP_URL'],
    )

    # A prefix of this run only, as long as the number: the longest matching prefix wins, so no
    # other trunk of the account (another run's, the Node test's) takes this call.
    number = f'4477008{secrets.randbelow(10_000_000):07d}'
    name = f'sdk-py-{uuid.uuid4().hex[:8]}'
    created = trunks_request('POST', '/v1/trunks', json={
        'name': name, 'host': '127.0.0.1', 'port': sipp.port, 'transport': 'udp', 'prefixes': [number],
    })
    assert created.status_code == 201, f'POST /v1/trunks: {created.status_code} {created.text}'
    trunk_id = created.json()['id']
    try:
        result = with_rate_limit_retry(lambda: client.voice.create_call(CreateCallRequest(
            to=[{'type': 'phone', 'number': number}],
            from_={'type': 'phone', 'number': FROM_NUMBER},
            ncco=[Talk(text='Hello from the SIP trunk test')],
            event_url=[EVENT_URL],
        )))
        assert result.status == 'started'

        seen = []
        deadline = time.monotonic() + 40
        while True:
            call = client.voice.get_call(result.uuid)
            # The JSON the SDK's http client got for this get_call.
            raw = client.http_client.last_response.json()
            if not seen or seen[-1] != call.status:
                seen.append(call.status)
            if call.status in FINAL_STATUSES:
                break
            assert time.monotonic() < deadline, f'call {result.uuid} not finished after 40 s; statuses {seen}'
            time.sleep(0.2)
        code, log = sipp.wait(30)
        assert call.status == 'completed', f'statuses {seen}; call {raw}\n{log}'
        assert code == 0, log
    finally:
        deleted = trunks_request('DELETE', f'/v1/trunks/{trunk_id}')
        assert deleted.status_code == 204, f'DELETE /v1/trunks/{trunk_id}: {deleted.status_code} {deleted.text}'

    assert call.uuid == result.uuid
    assert call.to.number == number
    # get_call returns a pydantic CallInfo that declares Vonage's fields only and ignores others
    # (pydantic's default extra='ignore'): `sip` does not survive on the model.
    assert not hasattr(call, 'sip')
    assert 'sip' not in call.model_dump()
    # It is in the response the SDK received, reachable through client.http_client.last_response.
    assert raw['uuid'] == result.uuid
    sip = raw.get('sip')
    assert isinstance(sip, dict), f'no sip object in the response: {raw}'
    assert sip['final_code'] == 200, sip
    assert sip['final_reason'] == 'OK'
    assert sip['trunk'] == name
    assert sip['codec'] == 'PCMU'
    assert sip['call_id'].startswith(result.uuid.replace('-', '')), sip
    # The far end's media address from its SDP answer (SIPp's [media_ip]:[media_port]).
    host, _, port = sip['remote_address'].rpartition(':')
    assert host == '127.0.0.1' and port.isdigit(), sip
    assert [(a['trunk'], a['code']) for a in sip['attempts']] == [(name, 200)], sip
