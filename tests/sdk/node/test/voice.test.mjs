// Voice API (/v1/calls) through the official Node SDK (@vonage/server-sdk → @vonage/voice).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import {
  APPLICATION_ID, BASE_URL, CALL_STATUSES, FROM_NUMBER, TO_NUMBER,
  expectHttpError, rateLimited, talkCall, voiceClient, withRateLimitRetry,
} from './helpers.mjs';

after(() => {
  console.log(`# ${rateLimited.retries} request(s) answered 429 and were resent (voice)`);
});

const vonage = voiceClient();

describe('voice: create and get a call', () => {
  let created;

  before(async () => {
    created = await withRateLimitRetry(() => vonage.voice.createOutboundCall(talkCall()));
  });

  test('createOutboundCall returns uuid, status started, direction outbound, conversationUUID', () => {
    assert.equal(typeof created.uuid, 'string');
    assert.ok(created.uuid.length > 0, 'uuid is empty');
    assert.equal(created.status, 'started');
    assert.equal(created.direction, 'outbound');
    assert.equal(typeof created.conversationUUID, 'string', `conversationUUID missing: ${JSON.stringify(created)}`);
    assert.match(created.conversationUUID, /^CON-/);
  });

  test('getCall(uuid) returns the call with to/from/status/direction', async () => {
    const call = await vonage.voice.getCall(created.uuid);
    assert.equal(call.uuid, created.uuid);
    assert.equal(call.conversationUUID, created.conversationUUID);
    assert.deepEqual({ type: call.to?.type, number: call.to?.number }, { type: 'phone', number: TO_NUMBER });
    assert.deepEqual({ type: call.from?.type, number: call.from?.number }, { type: 'phone', number: FROM_NUMBER });
    assert.ok(CALL_STATUSES.has(call.status), `unexpected status ${call.status}`);
    assert.equal(call.direction, 'outbound');
  });

  test('getCall of an unknown uuid is rejected with 404', async () => {
    await expectHttpError(vonage.voice.getCall(randomUUID()), 404);
  });
});

describe('voice: list calls across pages', () => {
  const CALLS = 25;
  const PAGE = 10;
  const createdUuids = [];

  before(async () => {
    // Sequential: the server is expected to limit call creation to 3/s per account (429 → retry).
    for (let i = 0; i < CALLS; i++) {
      const res = await withRateLimitRetry(() => vonage.voice.createOutboundCall(talkCall()));
      createdUuids.push(res.uuid);
    }
    assert.equal(new Set(createdUuids).size, CALLS, 'created call uuids are not unique');
  });

  test(`getAllCalls({ pageSize: ${PAGE} }) walks several pages and sees every created call once`, async () => {
    // getAllCalls calls this.getCallsPage() once per page: count the pages it fetches.
    const pages = [];
    const original = vonage.voice.getCallsPage.bind(vonage.voice);
    vonage.voice.getCallsPage = async (params) => {
      const page = await original(params);
      pages.push({ recordIndex: params.recordIndex, returned: page?._embedded?.calls?.length });
      assert.ok(pages.length <= 10_000, 'getAllCalls did not terminate (next link never omitted?)');
      return page;
    };
    const seen = new Map();
    try {
      for await (const call of vonage.voice.getAllCalls({ pageSize: PAGE })) {
        assert.ok(!seen.has(call.uuid), `call ${call.uuid} returned twice (pages so far: ${JSON.stringify(pages)})`);
        seen.set(call.uuid, call);
      }
    } finally {
      vonage.voice.getCallsPage = original;
    }
    const missing = createdUuids.filter((uuid) => !seen.has(uuid));
    assert.deepEqual(missing, [], `getAllCalls missed created calls; pages: ${JSON.stringify(pages)}`);
    assert.ok(pages.length >= 3, `expected >= 3 pages of ${PAGE}, fetched ${pages.length}: ${JSON.stringify(pages)}`);
    for (const p of pages) {
      assert.ok(p.returned <= PAGE, `a page returned ${p.returned} calls for pageSize ${PAGE}`);
    }
    const sample = seen.get(createdUuids[0]);
    assert.equal(sample.to?.number, TO_NUMBER);
    assert.equal(sample.from?.number, FROM_NUMBER);
    assert.equal(sample.direction, 'outbound');
    assert.equal(typeof sample.conversationUUID, 'string');
  });

  test('getCallsPage({ pageSize, recordIndex }) returns a HAL page at that offset', async () => {
    const first = await vonage.voice.getCallsPage({ pageSize: PAGE, recordIndex: 0 });
    const second = await vonage.voice.getCallsPage({ pageSize: PAGE, recordIndex: PAGE });

    for (const [page, index] of [[first, 0], [second, PAGE]]) {
      assert.equal(typeof page.count, 'number', `count missing: ${JSON.stringify(page).slice(0, 500)}`);
      assert.ok(page.count >= CALLS, `count ${page.count} < ${CALLS}`);
      assert.equal(page.page_size, PAGE);
      assert.equal(page.record_index, index);
      assert.ok(Array.isArray(page._embedded?.calls), '_embedded.calls missing');
      assert.equal(page._embedded.calls.length, PAGE);
      assert.equal(typeof page._links?.self?.href, 'string', '_links.self.href missing');
      for (const call of page._embedded.calls) {
        assert.equal(typeof call.uuid, 'string');
        assert.equal(typeof call.conversation_uuid, 'string');
        assert.equal(typeof call._links?.self?.href, 'string', `call ${call.uuid} lacks _links.self.href`);
      }
    }

    // getAllCalls needs an absolute next href carrying record_index.
    const next = first._links?.next?.href;
    assert.equal(typeof next, 'string', '_links.next.href missing on a non-last page');
    const url = new URL(next); // throws on a relative href, as the SDK would
    assert.equal(url.searchParams.get('record_index'), String(PAGE));
    assert.equal(url.searchParams.get('page_size'), String(PAGE));
    assert.ok(next.startsWith(BASE_URL), `next href ${next} is not under ${BASE_URL}`);

    const firstIds = new Set(first._embedded.calls.map((c) => c.uuid));
    const overlap = second._embedded.calls.filter((c) => firstIds.has(c.uuid)).map((c) => c.uuid);
    assert.deepEqual(overlap, [], 'record_index=10 page overlaps record_index=0 page');
  });

  test('the last page has no _links.next', async () => {
    const probe = await vonage.voice.getCallsPage({ pageSize: 1 });
    const lastIndex = probe.count - 1;
    const last = await vonage.voice.getCallsPage({ pageSize: PAGE, recordIndex: Math.max(0, lastIndex - 1) });
    assert.ok(last._embedded.calls.length >= 1 && last._embedded.calls.length <= 2);
    assert.equal(last._links?.next, undefined, `last page still has next: ${JSON.stringify(last._links)}`);
  });
});

describe('voice: rejected requests', () => {
  test('createOutboundCall with an invalid to number is rejected with 400', async () => {
    const call = talkCall({ to: [{ type: 'phone', number: 'not-a-number' }] });
    const err = await expectHttpError(withRateLimitRetry(() => vonage.voice.createOutboundCall(call)), 400);
    const body = await err.response.json();
    assert.equal(typeof body.title, 'string', `400 body has no title: ${JSON.stringify(body)}`);
    assert.ok(Array.isArray(body.invalid_parameters) && body.invalid_parameters.length > 0,
      `400 body has no invalid_parameters: ${JSON.stringify(body)}`);
  });

  test('createOutboundCall with an empty ncco is rejected with 400', async () => {
    await expectHttpError(withRateLimitRetry(() => vonage.voice.createOutboundCall(talkCall({ ncco: [] }))), 400);
  });

  test('a JWT signed with the wrong private key is rejected with 401', async () => {
    const { privateKey } = generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const impostor = voiceClient(APPLICATION_ID, privateKey);
    await expectHttpError(impostor.voice.getCallsPage({ pageSize: 1 }), 401);
  });

  test('a JWT for an unknown application is rejected with 401', async () => {
    const impostor = voiceClient(randomUUID());
    await expectHttpError(impostor.voice.getCall(randomUUID()), 401);
  });
});
