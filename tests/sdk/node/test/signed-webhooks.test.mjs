// Signed webhooks: the official Node SDK (@vonage/jwt verifySignature, the helper Vonage documents
// for "decoding signed webhooks") verifies Outdial's call event callbacks.
//
// An application with capabilities.voice.signed_callbacks makes Outdial send every call event with
// `Authorization: Bearer <HS256 JWT>` keyed with the account's signature secret, carrying
// payload_hash = hex sha256 of the body. The secret comes from OUTDIAL_SIGNATURE_SECRET (optional:
// the test is skipped without it). The server must be allowed to call back to loopback
// (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true) and should run simulated time fast
// (OUTDIAL__CARRIER__TIME_SCALE=20), as scripts/sdk-tests.sh does.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { verifySignature } from '@vonage/jwt';

import {
  API_KEY, FROM_NUMBER, TO_NUMBER, accountClient, rateLimited, voiceClient, withRateLimitRetry,
} from './helpers.mjs';

const SECRET = process.env.OUTDIAL_SIGNATURE_SECRET;
const SKIP = SECRET
  ? false
  : 'OUTDIAL_SIGNATURE_SECRET is not set (the account signature secret, `signature_secret` in '
    + '`outdial account create` output): cannot verify signed webhooks';
const WAIT_FOR_COMPLETED_MS = 20_000;
const RUN = randomUUID().slice(0, 8);

after(() => {
  console.log(`# ${rateLimited.retries} request(s) answered 429 and were resent (signed webhooks)`);
});

// A webhook receiver on 127.0.0.1 recording every request's method, path, headers and raw body.
function startReceiver() {
  const requests = [];
  const waiters = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      requests.push({ method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-length': '0' }).end();
      for (const check of waiters) check();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      resolve({
        url,
        requests,
        close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(() => done()); }),
        // Resolves true once predicate(requests) holds, false after timeoutMs.
        waitFor(predicate, timeoutMs) {
          return new Promise((done) => {
            const finish = (ok) => { clearTimeout(timer); waiters.delete(check); done(ok); };
            const check = () => { if (predicate(requests)) finish(true); };
            const timer = setTimeout(() => finish(false), timeoutMs);
            waiters.add(check);
            check();
          });
        },
      });
    });
  });
}

function statusOf(request) {
  try {
    return JSON.parse(request.body.toString('utf8')).status;
  } catch {
    return undefined;
  }
}

function bearerToken(request) {
  const auth = request.headers.authorization;
  assert.ok(auth, `unsigned webhook ${request.method} ${request.path}: ${JSON.stringify(request.headers)}`);
  const match = /^Bearer (\S+)$/.exec(auth);
  assert.ok(match, `Authorization is not a bearer token: ${auth}`);
  return match[1];
}

function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

// Same length, one character different.
const wrongSecret = (secret) => (secret[0] === 'A' ? 'B' : 'A') + secret.slice(1);

describe('signed webhooks: call events verified with verifySignature', { skip: SKIP }, () => {
  const account = accountClient();
  let receiver;
  let app;
  let call;
  let received;

  before(async () => {
    receiver = await startReceiver();
    app = await account.applications.createApplication({
      name: `sdk-node-signed-${RUN}`,
      capabilities: {
        voice: {
          webhooks: {
            answerUrl: { address: `${receiver.url}/app/answer`, httpMethod: 'GET' },
            eventUrl: { address: `${receiver.url}/app/event`, httpMethod: 'POST' },
          },
          signedCallbacks: true,
        },
      },
    });
    const client = voiceClient(app.id, app.keys.privateKey);
    call = await withRateLimitRetry(() => client.voice.createOutboundCall({
      to: [{ type: 'phone', number: TO_NUMBER }],
      from: { type: 'phone', number: FROM_NUMBER },
      ncco: [{ action: 'talk', text: 'Signed webhooks from the Outdial SDK compatibility tests' }],
      eventUrl: [`${receiver.url}/call/event`],
    }));
    const completed = await receiver.waitFor(
      (reqs) => reqs.some((r) => statusOf(r) === 'completed'),
      WAIT_FOR_COMPLETED_MS,
    );
    received = [...receiver.requests];
    assert.ok(
      completed,
      `no "completed" event for call ${call.uuid} within ${WAIT_FOR_COMPLETED_MS} ms; received `
        + JSON.stringify(received.map((r) => [r.method, r.path, statusOf(r)])),
    );
  });

  after(async () => {
    await receiver?.close();
    if (app?.id) await account.applications.deleteApplication(app.id).catch(() => {});
  });

  test('createApplication stores capabilities.voice.signed_callbacks', async () => {
    assert.equal(app.capabilities?.voice?.signedCallbacks, true, JSON.stringify(app.capabilities));
    const got = await account.applications.getApplication(app.id);
    assert.equal(got.capabilities?.voice?.signedCallbacks, true, JSON.stringify(got.capabilities));
  });

  test('every event is signed; verifySignature accepts the account secret and rejects another', () => {
    assert.ok(received.some((r) => statusOf(r) === 'completed'));
    const jtis = new Set();
    for (const request of received) {
      assert.equal(request.method, 'POST');
      assert.equal(request.path, '/call/event', `event went to ${request.path}, not the call eventUrl`);
      const body = JSON.parse(request.body.toString('utf8'));
      assert.equal(body.uuid, call.uuid);
      const token = bearerToken(request);

      assert.equal(verifySignature(token, SECRET), true, `SDK rejected the signature of the ${body.status} event`);
      assert.equal(verifySignature(token, wrongSecret(SECRET)), false);

      const [header, payload] = token.split('.').map((s, i) => (i < 2 ? decodeSegment(s) : s));
      assert.equal(header.alg, 'HS256');
      assert.equal(
        payload.payload_hash,
        createHash('sha256').update(request.body).digest('hex'),
        `payload_hash does not match the ${body.status} body`,
      );
      assert.equal(payload.iss, 'Vonage');
      assert.equal(payload.api_key, API_KEY);
      assert.equal(payload.application_id, app.id);
      assert.ok(Number.isInteger(payload.iat) && Math.abs(payload.iat - Date.now() / 1000) < 300, JSON.stringify(payload));
      assert.ok(payload.jti && !jtis.has(payload.jti), 'jti missing or repeated');
      jtis.add(payload.jti);
    }
  });
});
