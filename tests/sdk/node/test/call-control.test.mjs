// Live call control (PUT /v1/calls/{uuid}, …/stream, …/talk, …/dtmf, …/input/dtmf) through the
// official Node SDK (@vonage/server-sdk → @vonage/voice 1.21.0): hangupCall, muteCall, unmuteCall,
// earmuffCall, unearmuffCall, transferCallWithNCCO, transferCallWithURL, streamAudio,
// stopStreamAudio, playTTS, stopTTS, playDTMF, subscribeDTMF and unsubscribeDTMF.
//
// Each call goes to 447700900000, which the simulated network answers after ~2 s (0.1 s at
// OUTDIAL__CARRIER__TIME_SCALE=20), and runs [{action: "wait", timeout: 600}] so it stays up until
// hung up or transferred. The effects are read back from the call's history
// (GET /v1/calls/{uuid}/events, JWT from @vonage/jwt tokenGenerate): "media" entries whose
// payload.what says what the simulated callee heard. A local receiver on 127.0.0.1 is the calls'
// event_url, serves the WAV for streamAudio and the NCCO for transferCallWithURL, and records the
// transfer event and the notify POSTs that prove the new NCCO ran. The server must be allowed to
// call back to loopback (OUTDIAL__WEBHOOKS__ALLOW_PRIVATE_ADDRESSES=true), as scripts/sdk-tests.sh
// sets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { tokenGenerate } from '@vonage/jwt';

import {
  APPLICATION_ID, BASE_URL, FROM_NUMBER, PRIVATE_KEY, TO_NUMBER,
  expectHttpError, httpStatus, rateLimited, sleep, voiceClient, withRateLimitRetry,
} from './helpers.mjs';

const WAIT_MS = 15_000;
const RUN = randomUUID().slice(0, 8);

after(() => {
  console.log(`# ${rateLimited.retries} request(s) answered 429 and were resent (call control)`);
});

const vonage = voiceClient();

// One second of 8 kHz 16-bit mono silence.
function silentWav(seconds = 1, rate = 8000) {
  const dataLen = Math.round(seconds * rate) * 2;
  const wav = Buffer.alloc(44 + dataLen);
  wav.write('RIFF', 0, 'ascii');
  wav.writeUInt32LE(36 + dataLen, 4);
  wav.write('WAVEfmt ', 8, 'ascii');
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36, 'ascii');
  wav.writeUInt32LE(dataLen, 40);
  return wav;
}

// A receiver on 127.0.0.1 recording every request (method, path, query, JSON body). `routes` maps
// a path to a function returning [status, content-type, body]; anything else answers 200, empty.
function startReceiver(routes = {}) {
  const requests = [];
  const waiters = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, 'http://receiver');
      const raw = Buffer.concat(chunks).toString('utf8');
      let body;
      try { body = raw ? JSON.parse(raw) : undefined; } catch { body = raw; }
      requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), body });
      const route = routes[url.pathname];
      if (route) {
        const [status, type, content] = route();
        res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(content) }).end(content);
      } else {
        res.writeHead(200, { 'content-length': '0' }).end();
      }
      for (const check of waiters) check();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        requests,
        close: () => new Promise((done) => { server.closeAllConnections?.(); server.close(() => done()); }),
        // Resolves with the first request matching predicate, or fails after timeoutMs.
        waitFor(predicate, what, timeoutMs = WAIT_MS) {
          return new Promise((resolveWait, reject) => {
            const finish = (hit) => { clearTimeout(timer); waiters.delete(check); resolveWait(hit); };
            const check = () => { const hit = requests.find(predicate); if (hit) finish(hit); };
            const timer = setTimeout(() => {
              waiters.delete(check);
              reject(new Error(`receiver: no ${what} within ${timeoutMs} ms; got `
                + JSON.stringify(requests.map((r) => [r.method, r.path, r.body?.status ?? r.body?.type]))));
            }, timeoutMs);
            waiters.add(check);
            check();
          });
        },
      });
    });
  });
}

// The call's history, GET /v1/calls/{uuid}/events with an application JWT from @vonage/jwt.
async function history(uuid) {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(`${BASE_URL}/v1/calls/${uuid}/events`, {
      headers: { Authorization: `Bearer ${tokenGenerate(APPLICATION_ID, PRIVATE_KEY)}`, Accept: 'application/json' },
    });
    if (res.status === 429 && attempt < 30) {
      rateLimited.retries++;
      await sleep(400);
      continue;
    }
    const text = await res.text();
    assert.equal(res.status, 200, `GET /v1/calls/${uuid}/events -> ${res.status} ${text.slice(0, 400)}`);
    const body = JSON.parse(text);
    assert.ok(Array.isArray(body._embedded?.events), `history has no _embedded.events: ${text.slice(0, 400)}`);
    return body._embedded.events;
  }
}

const mediaLines = (events) => events.filter((e) => e.kind === 'media').map((e) => e.payload?.what);

// Polls the history until predicate(events) holds; fails with the history's outline otherwise.
async function waitForHistory(uuid, predicate, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let events;
  for (;;) {
    events = await history(uuid);
    if (predicate(events)) return events;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.fail(`call ${uuid}: no ${what} in its history within ${timeoutMs} ms; history: `
    + JSON.stringify(events.map((e) => (e.kind === 'media' ? `media: ${e.payload?.what}` : e.kind))));
}

const waitForMedia = (uuid, line) => waitForHistory(uuid, (events) => mediaLines(events).includes(line), `media line ${JSON.stringify(line)}`);

async function waitForStatus(uuid, wanted, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let call;
  for (;;) {
    call = await vonage.voice.getCall(uuid);
    if (call.status === wanted) return call;
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  assert.fail(`call ${uuid} is still ${call.status} after ${timeoutMs} ms, expected ${wanted}`);
}

// A call that stays up (wait 600 s) until hung up or transferred, answered.
async function answeredWaitingCall(receiver) {
  const created = await withRateLimitRetry(() => vonage.voice.createOutboundCall({
    to: [{ type: 'phone', number: TO_NUMBER }],
    from: { type: 'phone', number: FROM_NUMBER },
    ncco: [{ action: 'wait', timeout: 600 }],
    eventUrl: [`${receiver.url}/event`],
  }));
  assert.equal(typeof created.uuid, 'string');
  await waitForStatus(created.uuid, 'answered');
  return created.uuid;
}

async function hangupQuietly(uuid) {
  if (!uuid) return;
  try {
    await vonage.voice.hangupCall(uuid);
  } catch (err) {
    if (httpStatus(err) !== 400) throw err; // 400: already ended
  }
}

const eventFor = (uuid, predicate) => (r) => r.method === 'POST' && r.path === '/event' && r.body?.uuid === uuid && predicate(r.body);

describe('voice: live call control on an answered call', () => {
  let receiver;
  let uuid;
  const wavUrl = () => `${receiver.url}/audio/hold-${RUN}.wav`;
  const TALK = `Playing text to speech into a live call ${RUN}`;

  before(async () => {
    receiver = await startReceiver({ [`/audio/hold-${RUN}.wav`]: () => [200, 'audio/wav', silentWav()] });
    uuid = await answeredWaitingCall(receiver);
  });

  after(async () => {
    await hangupQuietly(uuid);
    await receiver?.close();
  });

  test('muteCall / unmuteCall: the callee\'s audio is cut, then restored', async () => {
    assert.equal(await vonage.voice.muteCall(uuid), undefined);
    await waitForMedia(uuid, 'muted: the callee\'s audio is not sent');
    assert.equal(await vonage.voice.unmuteCall(uuid), undefined);
    const events = await waitForMedia(uuid, 'unmuted');
    const lines = mediaLines(events);
    assert.ok(lines.indexOf('muted: the callee\'s audio is not sent') < lines.indexOf('unmuted'), JSON.stringify(lines));
  });

  test('earmuffCall / unearmuffCall: the callee hears nothing, then hears again', async () => {
    assert.equal(await vonage.voice.earmuffCall(uuid), undefined);
    await waitForMedia(uuid, 'earmuffed: the callee hears nothing');
    assert.equal(await vonage.voice.unearmuffCall(uuid), undefined);
    const events = await waitForMedia(uuid, 'unearmuffed');
    const lines = mediaLines(events);
    assert.ok(lines.indexOf('earmuffed: the callee hears nothing') < lines.indexOf('unearmuffed'), JSON.stringify(lines));
  });

  test('playTTS / stopTTS return {message, uuid} and the callee hears the text until stopped', async () => {
    const started = await vonage.voice.playTTS(uuid, { text: TALK, language: 'en-GB', style: 0, loop: 0, level: 0.2 });
    assert.deepEqual({ ...started }, { message: 'Talk started', uuid });
    await waitForMedia(uuid, `heard talk "${TALK}"`);

    const stopped = await vonage.voice.stopTTS(uuid);
    assert.deepEqual({ ...stopped }, { message: 'Talk stopped', uuid });
    await waitForMedia(uuid, `stopped talk "${TALK}"`);
  });

  test('streamAudio / stopStreamAudio return {message, uuid} and the callee hears the WAV until stopped', async () => {
    // loop 0 = until stopped; the SDK sends level as a string ("0.3").
    const started = await vonage.voice.streamAudio(uuid, wavUrl(), 0, 0.3);
    assert.deepEqual({ ...started }, { message: 'Stream started', uuid });
    await waitForMedia(uuid, `heard stream ${wavUrl()}`);
    assert.ok(
      receiver.requests.some((r) => r.method === 'GET' && r.path === new URL(wavUrl()).pathname),
      'the server never fetched the stream URL',
    );

    const stopped = await vonage.voice.stopStreamAudio(uuid);
    assert.deepEqual({ ...stopped }, { message: 'Stream stopped', uuid });
    await waitForMedia(uuid, `stopped stream ${wavUrl()}`);
  });

  test('playDTMF returns {message: "DTMF sent", uuid} and the callee hears the digits', async () => {
    const sent = await vonage.voice.playDTMF(uuid, '1234#*');
    assert.deepEqual({ ...sent }, { message: 'DTMF sent', uuid });
    await waitForMedia(uuid, 'heard DTMF 1234#*');
  });

  test('subscribeDTMF / unsubscribeDTMF (PUT/DELETE …/input/dtmf) succeed and take effect', async () => {
    assert.equal(await vonage.voice.subscribeDTMF(uuid, `${receiver.url}/dtmf`), undefined);
    await waitForMedia(uuid, 'real-time DTMF subscribed');
    assert.equal(await vonage.voice.unsubscribeDTMF(uuid), undefined);
    await waitForMedia(uuid, 'real-time DTMF unsubscribed');
  });

  test('hangupCall ends the call: status completed, a completed event, then further control is 400', async () => {
    assert.equal(await vonage.voice.hangupCall(uuid), undefined);
    const call = await waitForStatus(uuid, 'completed');
    assert.equal(call.uuid, uuid);
    await receiver.waitFor(eventFor(uuid, (b) => b.status === 'completed'), '"completed" event');
    const events = await history(uuid);
    assert.ok(events.some((e) => e.kind === 'completed'), JSON.stringify(events.map((e) => e.kind)));

    await expectHttpError(vonage.voice.muteCall(uuid), 400);
    await expectHttpError(vonage.voice.playTTS(uuid, { text: 'too late' }), 400);
    await expectHttpError(vonage.voice.hangupCall(uuid), 400);
  });
});

describe('voice: transferCallWithNCCO runs the new NCCO', () => {
  let receiver;
  let uuid;
  const TEXT = `Transferred by an inline NCCO ${RUN}`;

  before(async () => {
    receiver = await startReceiver();
    uuid = await answeredWaitingCall(receiver);
  });

  after(async () => {
    await hangupQuietly(uuid);
    await receiver?.close();
  });

  test('transferCallWithNCCO: transfer event, the new talk is heard, its notify is posted, then the call completes', async () => {
    const result = await vonage.voice.transferCallWithNCCO(uuid, [
      { action: 'talk', text: TEXT },
      { action: 'notify', payload: { step: 'ncco-transfer', run: RUN }, eventUrl: [`${receiver.url}/notify/ncco`] },
    ]);
    assert.equal(result, undefined);

    const transfer = await receiver.waitFor(eventFor(uuid, (b) => b.type === 'transfer'), 'transfer event');
    assert.equal(typeof transfer.body.conversation_uuid_from, 'string', JSON.stringify(transfer.body));
    assert.equal(typeof transfer.body.conversation_uuid_to, 'string', JSON.stringify(transfer.body));
    assert.equal(typeof transfer.body.timestamp, 'string', JSON.stringify(transfer.body));

    const notify = await receiver.waitFor((r) => r.method === 'POST' && r.path === '/notify/ncco', 'notify POST from the new NCCO');
    assert.deepEqual(notify.body, { step: 'ncco-transfer', run: RUN });

    await waitForStatus(uuid, 'completed');
    const events = await history(uuid);
    const kinds = events.map((e) => e.kind);
    assert.ok(mediaLines(events).includes(`heard talk "${TEXT}"`), JSON.stringify(mediaLines(events)));
    for (const kind of ['transfer', 'notify', 'completed']) {
      assert.ok(kinds.includes(kind), `no ${kind} entry in the history: ${JSON.stringify(kinds)}`);
    }
    assert.ok(kinds.indexOf('transfer') < kinds.indexOf('notify'), JSON.stringify(kinds));
  });
});

describe('voice: transferCallWithURL fetches and runs the new NCCO', () => {
  let receiver;
  let uuid;
  const nccoPath = `/ncco/transfer-${RUN}`;

  before(async () => {
    receiver = await startReceiver({
      [nccoPath]: () => [200, 'application/json', JSON.stringify([
        { action: 'notify', payload: { step: 'url-transfer', run: RUN }, eventUrl: [`${receiver.url}/notify/url`] },
      ])],
    });
    uuid = await answeredWaitingCall(receiver);
  });

  after(async () => {
    await hangupQuietly(uuid);
    await receiver?.close();
  });

  test('transferCallWithURL: the NCCO is fetched, a transfer event is sent, its notify is posted, the call completes', async () => {
    assert.equal(await vonage.voice.transferCallWithURL(uuid, `${receiver.url}${nccoPath}`), undefined);

    const fetched = await receiver.waitFor((r) => r.path === nccoPath, `request for ${nccoPath}`);
    assert.equal(fetched.method, 'GET');
    await receiver.waitFor(eventFor(uuid, (b) => b.type === 'transfer'), 'transfer event');
    const notify = await receiver.waitFor((r) => r.method === 'POST' && r.path === '/notify/url', 'notify POST from the fetched NCCO');
    assert.deepEqual(notify.body, { step: 'url-transfer', run: RUN });

    await waitForStatus(uuid, 'completed');
    await receiver.waitFor(eventFor(uuid, (b) => b.status === 'completed'), '"completed" event');
    const kinds = (await history(uuid)).map((e) => e.kind);
    for (const kind of ['transfer', 'notify', 'completed']) {
      assert.ok(kinds.includes(kind), `no ${kind} entry in the history: ${JSON.stringify(kinds)}`);
    }
  });
});
