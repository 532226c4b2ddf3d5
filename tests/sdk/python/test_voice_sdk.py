"""Outdial against the official Python SDK (vonage 4.9.1 / vonage-voice 1.5.1 /
vonage-application 2.0.2), over plain HTTP through the §8.3 adapter shim."""

import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from urllib.parse import parse_qs, urlsplit
from vonage_application import (
    ApplicationConfig,
    Capabilities,
    Keys,
    ListApplicationsFilter,
    VoiceUrl,
    VoiceWebhooks,
)
from vonage_application import Voice as VoiceCapability
from vonage_http_client.errors import AuthenticationError, HttpRequestError, NotFoundError
from vonage_voice import CreateCallRequest, ListCallsFilter, Talk

from conftest import (
    EVENT_URL,
    FROM_NUMBER,
    TO_NUMBER,
    account_client,
    voice_client,
    with_rate_limit_retry,
)

CALL_STATUSES = {
    'started', 'ringing', 'answered', 'machine', 'human', 'completed', 'busy', 'cancelled',
    'failed', 'rejected', 'timeout', 'unanswered',
}
RUN = uuid.uuid4().hex[:8]


def talk_call(**overrides) -> CreateCallRequest:
    fields = dict(
        to=[{'type': 'phone', 'number': TO_NUMBER}],
        from_={'type': 'phone', 'number': FROM_NUMBER},
        ncco=[Talk(text='Hello from the Outdial SDK compatibility tests')],
        event_url=[EVENT_URL],
    )
    fields.update(overrides)
    return CreateCallRequest(**fields)


def create_call(client, request=None):
    return with_rate_limit_retry(lambda: client.voice.create_call(request or talk_call()))


def new_rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private_pem, public_pem


def squash(pem: str) -> str:
    return ''.join((pem or '').split())


# --------------------------------------------------------------------------- voice


@pytest.fixture(scope='module')
def created_call(voice):
    return create_call(voice)


def test_create_call(created_call):
    assert isinstance(created_call.uuid, str) and created_call.uuid
    assert created_call.status == 'started'
    assert created_call.direction == 'outbound'
    assert created_call.conversation_uuid.startswith('CON-')


def test_get_call(voice, created_call):
    call = voice.voice.get_call(created_call.uuid)
    assert call.uuid == created_call.uuid
    assert call.conversation_uuid == created_call.conversation_uuid
    assert call.to.type == 'phone' and call.to.number == TO_NUMBER
    assert call.from_.type == 'phone' and call.from_.number == FROM_NUMBER
    assert call.status in CALL_STATUSES
    assert call.direction == 'outbound'
    assert call.link  # _links.self.href


def test_get_unknown_call_is_404(voice):
    with pytest.raises(NotFoundError):
        voice.voice.get_call(str(uuid.uuid4()))


PAGE = 10
CALLS = 25


@pytest.fixture(scope='module')
def many_calls(voice):
    uuids = [create_call(voice).uuid for _ in range(CALLS)]
    assert len(set(uuids)) == CALLS
    return uuids


def test_list_calls_pages_with_page_size_and_record_index(voice, many_calls):
    seen = {}
    pages = []
    record_index = 0
    while True:
        calls, next_index = voice.voice.list_calls(
            ListCallsFilter(page_size=PAGE, record_index=record_index)
        )
        raw = voice.http_client.last_response.json()
        pages.append((record_index, len(calls), next_index))
        assert raw['page_size'] == PAGE, raw
        assert raw['record_index'] == record_index, raw
        assert raw['count'] >= CALLS
        assert len(calls) <= PAGE
        for call in calls:
            assert call.uuid not in seen, f'{call.uuid} listed twice; pages {pages}'
            seen[call.uuid] = call
        if next_index is None:
            assert 'next' not in raw['_links']
            assert record_index + len(calls) == raw['count'], f'stopped early: {pages}, count {raw["count"]}'
            break
        # The SDK returns record_index + 1 (a quirk); the server's next link has the real offset.
        assert len(calls) == PAGE, f'non-last page is short: {pages}'
        next_href = raw['_links']['next']['href']
        query = parse_qs(urlsplit(next_href).query)
        assert query.get('record_index') == [str(record_index + PAGE)], next_href
        assert len(pages) < 10_000, 'pagination never ends'
        record_index += PAGE

    assert len(pages) >= 3, pages
    missing = [u for u in many_calls if u not in seen]
    assert missing == [], f'list_calls missed created calls; pages {pages}'
    sample = seen[many_calls[0]]
    assert sample.to.number == TO_NUMBER
    assert sample.from_.number == FROM_NUMBER
    assert sample.direction == 'outbound'


def test_list_calls_record_index_offsets_are_disjoint(voice, many_calls):
    first, _ = voice.voice.list_calls(ListCallsFilter(page_size=PAGE, record_index=0))
    second, _ = voice.voice.list_calls(ListCallsFilter(page_size=PAGE, record_index=PAGE))
    assert len(first) == PAGE and len(second) == PAGE
    assert not {c.uuid for c in first} & {c.uuid for c in second}


def test_list_calls_default_page_size_is_sent_as_100(voice, many_calls):
    calls, _ = voice.voice.list_calls()
    raw = voice.http_client.last_response.json()
    assert raw['page_size'] == 100
    assert len(calls) == min(100, raw['count'])
    assert raw['_links']['self']['href']


def test_invalid_to_number_is_rejected_with_400(voice):
    request = talk_call(to=[{'type': 'phone', 'number': 'not-a-number'}])
    with pytest.raises(HttpRequestError) as info:
        create_call(voice, request)
    assert info.value.response.status_code == 400
    body = info.value.response.json()
    assert isinstance(body.get('title'), str), body
    assert body.get('invalid_parameters'), body


def test_wrong_private_key_is_401():
    private_pem, _ = new_rsa_key()
    impostor = voice_client(private_key=private_pem)
    with pytest.raises(AuthenticationError):
        impostor.voice.list_calls(ListCallsFilter(page_size=1))


# --------------------------------------------------------------------------- applications


def voice_capabilities(tag: str) -> Capabilities:
    return Capabilities(
        voice=VoiceCapability(
            webhooks=VoiceWebhooks(
                answer_url=VoiceUrl(address=f'http://127.0.0.1:9/{tag}/answer', http_method='GET'),
                event_url=VoiceUrl(address=f'http://127.0.0.1:9/{tag}/event', http_method='POST'),
            )
        )
    )


@pytest.fixture(scope='module')
def application(account):
    app = account.application.create_application(
        ApplicationConfig(name=f'sdk-py-{RUN}', capabilities=voice_capabilities('created'))
    )
    yield app
    try:
        account.application.delete_application(app.id)
    except NotFoundError:
        pass


def test_create_application_generates_key_pair(account, application):
    assert application.id
    assert application.name == f'sdk-py-{RUN}'
    extra = application.keys.model_extra or {}
    assert '-----BEGIN PRIVATE KEY-----' in (extra.get('private_key') or ''), application.keys
    assert '-----BEGIN PUBLIC KEY-----' in (application.keys.public_key or '')
    webhooks = application.capabilities.voice.webhooks
    assert webhooks.answer_url.address == 'http://127.0.0.1:9/created/answer'
    assert webhooks.answer_url.http_method == 'GET'
    assert webhooks.event_url.address == 'http://127.0.0.1:9/created/event'
    assert webhooks.event_url.http_method == 'POST'


def test_generated_private_key_authenticates_voice_calls(application):
    client = voice_client(application_id=application.id, private_key=application.keys.model_extra['private_key'])
    call = create_call(client)
    assert call.status == 'started'
    assert client.voice.get_call(call.uuid).uuid == call.uuid


def test_get_application(account, application):
    got = account.application.get_application(application.id)
    assert got.id == application.id
    assert got.name == f'sdk-py-{RUN}'
    assert squash(got.keys.public_key) == squash(application.keys.public_key)
    assert 'private_key' not in (got.keys.model_extra or {}), 'private key must only be returned on creation'
    assert got.capabilities.voice.webhooks.answer_url.address == 'http://127.0.0.1:9/created/answer'


def test_list_applications_pages(account, application):
    extra_ids = []
    try:
        for i in range(3):
            extra_ids.append(
                account.application.create_application(
                    ApplicationConfig(name=f'sdk-py-{RUN}-page-{i}', capabilities=voice_capabilities(f'p{i}'))
                ).id
            )
        seen = []
        page = 1
        pages = 0
        while page is not None:
            apps, page_next = account.application.list_applications(ListApplicationsFilter(page_size=2, page=page))
            raw = account.http_client.last_response.json()
            assert raw['page_size'] == 2 and raw['page'] == page, raw
            assert raw['total_pages'] == -(-raw['total_items'] // 2), raw
            assert len(apps) <= 2
            seen.extend(a.id for a in apps)
            pages += 1
            assert pages < 5_000, 'pagination never ends'
            page = page_next
        assert pages >= 2
        assert len(seen) == len(set(seen)), 'an application was listed twice'
        for app_id in [application.id, *extra_ids]:
            assert app_id in seen
    finally:
        for app_id in extra_ids:
            account.application.delete_application(app_id)


def test_update_application(account, application):
    updated = account.application.update_application(
        application.id,
        ApplicationConfig(name=f'sdk-py-{RUN}-renamed', capabilities=voice_capabilities('updated')),
    )
    assert updated.id == application.id
    assert updated.name == f'sdk-py-{RUN}-renamed'
    assert updated.capabilities.voice.webhooks.answer_url.address == 'http://127.0.0.1:9/updated/answer'
    got = account.application.get_application(application.id)
    assert got.name == f'sdk-py-{RUN}-renamed'
    assert got.capabilities.voice.webhooks.event_url.address == 'http://127.0.0.1:9/updated/event'


def test_create_application_with_public_key(account):
    _, public_pem = new_rsa_key()
    app = account.application.create_application(
        ApplicationConfig(
            name=f'sdk-py-{RUN}-own-key',
            keys=Keys(public_key=public_pem),
            capabilities=voice_capabilities('own-key'),
        )
    )
    try:
        assert squash(app.keys.public_key) == squash(public_pem)
        assert 'private_key' not in (app.keys.model_extra or {})
    finally:
        account.application.delete_application(app.id)


def test_delete_application(account):
    app = account.application.create_application(
        ApplicationConfig(name=f'sdk-py-{RUN}-delete', capabilities=voice_capabilities('delete'))
    )
    account.application.delete_application(app.id)
    with pytest.raises(NotFoundError):
        account.application.get_application(app.id)


def test_wrong_api_secret_is_401():
    bad = account_client(api_secret='definitely-not-the-secret')
    with pytest.raises(AuthenticationError):
        bad.application.list_applications(ListApplicationsFilter(page_size=1))


def test_unknown_application_is_404(account):
    with pytest.raises(NotFoundError):
        account.application.get_application(str(uuid.uuid4()))

