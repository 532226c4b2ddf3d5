"""Shared fixtures for the Python SDK compatibility tests.

Environment (provided by tests/sdk/run.sh or the caller):
  OUTDIAL_URL             base URL of a running Outdial server, e.g. http://127.0.0.1:18080
  OUTDIAL_APPLICATION_ID  application id used for JWT (Voice API) auth
  OUTDIAL_PRIVATE_KEY     path to that application's PKCS#8 PEM private key
  OUTDIAL_API_KEY         account api key (HTTP Basic, Applications API)
  OUTDIAL_API_SECRET      account api secret
Optional:
  OUTDIAL_SIGNATURE_SECRET  account signature secret; without it the signed-webhook test is skipped
  OUTDIAL_SIP_URL, OUTDIAL_SIP_APPLICATION_ID, OUTDIAL_SIP_PRIVATE_KEY, OUTDIAL_SIP_API_KEY,
  OUTDIAL_SIP_API_SECRET    a second Outdial with the SIP carrier (test_sip_trunk.py; skipped
                            without them, failed when env CI is set)
"""

import os
import time
from urllib.parse import urlsplit

import pytest
from requests.adapters import HTTPAdapter
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import RateLimitedError

TO_NUMBER = '447700900000'
FROM_NUMBER = '447700900001'
# Nothing listens on the discard port: webhook deliveries fail fast and stay on this machine.
EVENT_URL = 'http://127.0.0.1:9/events'


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f'environment variable {name} must be set (see tests/sdk/run.sh)', returncode=2)
    return value


RATE_LIMITED = {'retries': 0}


class HttpsToHttpAdapter(HTTPAdapter):
    """Send requests the SDK addressed to https://HOST over plain http.

    The SDK hard-codes f'https://{api_host}{path}' (vonage-http-client 1.5.2), so a
    plain-HTTP server needs this transport shim (reference §8.3).
    """

    def send(self, request, **kwargs):
        request.url = 'http://' + request.url[len('https://'):]
        return super().send(request, **kwargs)


def base_url() -> str:
    return _env('OUTDIAL_URL').rstrip('/')


def api_host(url: str | None = None) -> str:
    url = url or base_url()
    parts = urlsplit(url)
    if parts.scheme != 'http' or not parts.netloc or parts.path not in ('', '/'):
        pytest.exit(f'an Outdial URL must look like http://host:port, got {url!r}', returncode=2)
    return parts.netloc


def make_client(auth: Auth, url: str | None = None) -> Vonage:
    """An SDK client for the Outdial at OUTDIAL_URL, or at `url` (e.g. OUTDIAL_SIP_URL)."""
    host = api_host(url)
    # rest_host: the Account client (get_balance) builds https://{rest_host}/account/...
    client = Vonage(auth, http_client_options=HttpClientOptions(api_host=host, rest_host=host, timeout=15))
    # The Voice, Applications and Account clients all build https://{host}/...;
    # requests picks the longest matching prefix, so this adapter wins over 'https://'.
    client.http_client._session.mount(f'https://{host}', HttpsToHttpAdapter())
    # The server limits each account to 3 call creations/s and 15 other requests/s, like
    # Vonage. These tests are about compatibility, not those limits: on 429 wait and send the
    # request again through the SDK (so it is re-signed with a fresh JWT), and count it.
    make_request = client.http_client.make_request
    client.http_client.make_request = lambda *a, **kw: with_rate_limit_retry(lambda: make_request(*a, **kw))
    return client


def voice_client(application_id: str | None = None, private_key: str | None = None) -> Vonage:
    if private_key is None:
        with open(_env('OUTDIAL_PRIVATE_KEY')) as f:
            private_key = f.read()
    return make_client(
        Auth(application_id=application_id or _env('OUTDIAL_APPLICATION_ID'), private_key=private_key)
    )


def account_client(api_key: str | None = None, api_secret: str | None = None) -> Vonage:
    return make_client(
        Auth(api_key=api_key or _env('OUTDIAL_API_KEY'), api_secret=api_secret or _env('OUTDIAL_API_SECRET'))
    )


def with_rate_limit_retry(fn, attempts: int = 30):
    """Call fn(); on HTTP 429 (3 call creations/s per account) wait and retry."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RateLimitedError as err:
            if attempt == attempts:
                raise
            RATE_LIMITED['retries'] += 1
            retry_after = err.response.headers.get('Retry-After')
            try:
                delay = min(float(retry_after), 5.0) if retry_after else 0.4
            except ValueError:
                delay = 0.4
            time.sleep(delay if delay > 0 else 0.4)


@pytest.fixture(scope='session')
def voice() -> Vonage:
    return voice_client()


@pytest.fixture(scope='session')
def account() -> Vonage:
    return account_client()


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"{RATE_LIMITED['retries']} request(s) answered 429 and were resent by the test shim"
    )
