// A call whose NCCO connects to a websocket, created with the official Node SDK on the
// simulated network: the test's WebSocket server (the `ws` package, the customer's side)
// receives `websocket:connected` with the endpoint's headers, then 20 ms frames of 16 kHz PCM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';

import { EVENT_URL, FROM_NUMBER, TO_NUMBER, voiceClient, withRateLimitRetry } from './helpers.mjs';

test('a call whose NCCO connects to a websocket reaches the server with its headers', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address();
  const received = { first: undefined, frames: [] };
  const connected = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no websocket connection within 20 s')), 20000);
    server.on('connection', (socket) => {
      socket.on('message', (data, isBinary) => {
        if (!isBinary && received.first === undefined) {
          received.first = JSON.parse(data.toString());
        } else if (isBinary) {
          received.frames.push(data.length);
          if (received.frames.length >= 25) {
            clearTimeout(timer);
            socket.close();
            resolve();
          }
        }
      });
    });
  });
  try {
    const vonage = voiceClient();
    const call = {
      to: [{ type: 'phone', number: TO_NUMBER }],
      from: { type: 'phone', number: FROM_NUMBER },
      event_url: [EVENT_URL],
      ncco: [{
        action: 'connect',
        endpoint: [{
          type: 'websocket',
          uri: `ws://127.0.0.1:${port}/bot`,
          'content-type': 'audio/l16;rate=16000',
          headers: { language: 'en-GB', customer: 'acme' },
        }],
      }],
    };
    const created = await withRateLimitRetry(() => vonage.voice.createOutboundCall(call));
    assert.ok(created.uuid);
    await connected;
    assert.equal(received.first.event, 'websocket:connected');
    assert.equal(received.first['content-type'], 'audio/l16;rate=16000');
    assert.equal(received.first.language, 'en-GB');
    assert.equal(received.first.customer, 'acme');
    assert.ok(received.frames.every((size) => size === 640), `20 ms of 16 kHz 16-bit: ${received.frames}`);
  } finally {
    server.close();
  }
});
