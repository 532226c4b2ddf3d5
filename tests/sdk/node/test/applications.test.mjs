// Applications API v2 (/v2/applications, HTTP Basic api_key:api_secret) through the
// official Node SDK (@vonage/server-sdk → @vonage/applications, which uses `apiHost`).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';

import {
  API_KEY, accountClient, expectHttpError, rateLimited, talkCall, voiceClient, withRateLimitRetry,
} from './helpers.mjs';

after(() => {
  console.log(`# ${rateLimited.retries} request(s) answered 429 and were resent (applications)`);
});

const vonage = accountClient();
const RUN = randomUUID().slice(0, 8);

function voiceCapabilities(tag) {
  return {
    voice: {
      webhooks: {
        answerUrl: { address: `http://127.0.0.1:9/${tag}/answer`, httpMethod: 'GET' },
        eventUrl: { address: `http://127.0.0.1:9/${tag}/event`, httpMethod: 'POST' },
      },
    },
  };
}

function newPublicKey() {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

const normalisePem = (pem) => pem.replace(/\s+/g, '');

describe('applications: lifecycle', () => {
  const toDelete = new Set();
  let app;

  before(async () => {
    app = await vonage.applications.createApplication({
      name: `sdk-node-${RUN}`,
      capabilities: voiceCapabilities('created'),
    });
    if (app?.id) toDelete.add(app.id);
  });

  after(async () => {
    for (const id of toDelete) {
      await vonage.applications.deleteApplication(id).catch(() => {});
    }
  });

  test('createApplication without a public key returns id, name, webhooks and a generated key pair', () => {
    assert.equal(typeof app.id, 'string', `no id in ${JSON.stringify(app)}`);
    assert.equal(app.name, `sdk-node-${RUN}`);
    assert.equal(typeof app.keys?.privateKey, 'string', `keys.private_key missing: ${JSON.stringify(app.keys)}`);
    assert.match(app.keys.privateKey, /-----BEGIN PRIVATE KEY-----/);
    assert.equal(typeof app.keys?.publicKey, 'string', 'keys.public_key missing');
    assert.match(app.keys.publicKey, /-----BEGIN PUBLIC KEY-----/);
    const webhooks = app.capabilities?.voice?.webhooks;
    assert.equal(webhooks?.answerUrl?.address, 'http://127.0.0.1:9/created/answer');
    assert.equal(webhooks?.answerUrl?.httpMethod, 'GET');
    assert.equal(webhooks?.eventUrl?.address, 'http://127.0.0.1:9/created/event');
    assert.equal(webhooks?.eventUrl?.httpMethod, 'POST');
  });

  test('the generated private key authenticates Voice API calls for the new application', async () => {
    const client = voiceClient(app.id, app.keys.privateKey);
    const call = await withRateLimitRetry(() => client.voice.createOutboundCall(talkCall()));
    assert.equal(call.status, 'started');
    const fetched = await client.voice.getCall(call.uuid);
    assert.equal(fetched.uuid, call.uuid);
  });

  test('getApplication returns the application without the private key', async () => {
    const got = await vonage.applications.getApplication(app.id);
    assert.equal(got.id, app.id);
    assert.equal(got.name, `sdk-node-${RUN}`);
    assert.equal(normalisePem(got.keys?.publicKey ?? ''), normalisePem(app.keys.publicKey));
    assert.equal(got.keys?.privateKey, undefined, 'private key must only be returned on creation');
    assert.equal(got.capabilities?.voice?.webhooks?.answerUrl?.address, 'http://127.0.0.1:9/created/answer');
    assert.equal(got.capabilities?.voice?.webhooks?.eventUrl?.httpMethod, 'POST');
  });

  test('listApplications returns a page containing the application', async () => {
    const page = await vonage.applications.listApplications({ pageSize: 100, page: 1 });
    assert.equal(typeof page.totalItems, 'number', `total_items missing: ${JSON.stringify(page).slice(0, 400)}`);
    assert.equal(typeof page.totalPages, 'number', 'total_pages missing');
    assert.equal(page.pageSize, 100);
    assert.equal(page.page, 1);
    assert.ok(Array.isArray(page._embedded?.applications), '_embedded.applications missing');
    if (page.totalItems <= 100) {
      assert.ok(page._embedded.applications.some((a) => a.id === app.id), 'created application not listed');
    }
  });

  test('listAllApplications({ pageSize: 2 }) pages through every application', async () => {
    const extra = [];
    for (let i = 0; i < 3; i++) {
      const created = await vonage.applications.createApplication({
        name: `sdk-node-${RUN}-page-${i}`,
        capabilities: voiceCapabilities(`page-${i}`),
      });
      toDelete.add(created.id);
      extra.push(created.id);
    }
    let pagesFetched = 0;
    const original = vonage.applications.getApplicationPage.bind(vonage.applications);
    vonage.applications.getApplicationPage = async (params) => {
      pagesFetched++;
      assert.ok(pagesFetched <= 5_000, 'listAllApplications did not terminate (next link never omitted?)');
      return original(params);
    };
    const seen = [];
    try {
      for await (const a of vonage.applications.listAllApplications({ pageSize: 2 })) {
        seen.push(a.id);
      }
    } finally {
      vonage.applications.getApplicationPage = original;
    }
    for (const id of [app.id, ...extra]) {
      assert.ok(seen.includes(id), `application ${id} not seen by listAllApplications`);
    }
    assert.equal(new Set(seen).size, seen.length, 'an application was listed twice');
    assert.ok(pagesFetched >= 2, `expected several pages of 2, fetched ${pagesFetched}`);

    const first = await vonage.applications.listApplications({ pageSize: 2, page: 1 });
    assert.equal(first._embedded.applications.length, 2);
    assert.ok(first.totalItems >= 4);
    assert.equal(first.totalPages, Math.ceil(first.totalItems / 2));
  });

  test('updateApplication changes name and webhooks', async () => {
    const updated = await vonage.applications.updateApplication({
      id: app.id,
      name: `sdk-node-${RUN}-renamed`,
      capabilities: voiceCapabilities('updated'),
    });
    assert.equal(updated.id, app.id);
    assert.equal(updated.name, `sdk-node-${RUN}-renamed`);
    assert.equal(updated.capabilities?.voice?.webhooks?.answerUrl?.address, 'http://127.0.0.1:9/updated/answer');

    const got = await vonage.applications.getApplication(app.id);
    assert.equal(got.name, `sdk-node-${RUN}-renamed`);
    assert.equal(got.capabilities?.voice?.webhooks?.eventUrl?.address, 'http://127.0.0.1:9/updated/event');
  });

  test('deleteApplication removes it (get → 404)', async () => {
    await vonage.applications.deleteApplication(app.id);
    toDelete.delete(app.id);
    await expectHttpError(vonage.applications.getApplication(app.id), 404);
  });
});

describe('applications: supplied public key and errors', () => {
  test('createApplication with keys.publicKey stores that key and returns no private key', async () => {
    const { publicKey } = newPublicKey();
    const app = await vonage.applications.createApplication({
      name: `sdk-node-${RUN}-own-key`,
      keys: { publicKey },
      capabilities: voiceCapabilities('own-key'),
    });
    try {
      assert.equal(normalisePem(app.keys?.publicKey ?? ''), normalisePem(publicKey));
      assert.equal(app.keys?.privateKey, undefined);
    } finally {
      await vonage.applications.deleteApplication(app.id);
    }
  });

  test('wrong api secret is rejected with 401', async () => {
    const bad = accountClient(API_KEY, 'definitely-not-the-secret');
    await expectHttpError(bad.applications.listApplications({ pageSize: 1 }), 401);
  });

  test('getApplication of an unknown id is rejected with 404', async () => {
    await expectHttpError(vonage.applications.getApplication(randomUUID()), 404);
  });
});
