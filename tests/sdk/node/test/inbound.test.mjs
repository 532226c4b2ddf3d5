// An inbound call reaches the application the official Node SDK linked the number to: the
// Numbers client (@vonage/numbers) finds the account's number and links it to the application,
// the Applications client points its answer_url at this test's server, then SIPp, playing the
// carrier, calls the number (tests/sip/uac_inbound.xml: INVITE → 180 → 200 → ACK, waits for our
// BYE). Runs against the SIP-carrier Outdial of scripts/sdk-tests.sh, which holds the number on a
// platform trunk at 127.0.0.1 (OUTDIAL_SIP_NUMBER) and listens for SIP on OUTDIAL_SIP_PORT.
//
// Without those variables or sipp the test is skipped, saying why; with env CI set it fails.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Numbers } from '@vonage/numbers';
import { Vonage } from '@vonage/server-sdk';

const VARS = ['OUTDIAL_SIP_URL', 'OUTDIAL_SIP_APPLICATION_ID', 'OUTDIAL_SIP_API_KEY', 'OUTDIAL_SIP_API_SECRET', 'OUTDIAL_SIP_NUMBER', 'OUTDIAL_SIP_PORT'];
const SCENARIO = fileURLToPath(new URL('../../../sip/uac_inbound.xml', import.meta.url));

function unavailable() {
  const missing = VARS.filter((name) => !process.env[name]);
  if (missing.length) return `no SIP-carrier Outdial with a number (missing ${missing.join(', ')}; scripts/sdk-tests.sh sets them)`;
  if (spawnSync('sipp', ['-v'], { stdio: 'ignore' }).error) return 'sipp is not installed (apt-get install sip-tester)';
  return undefined;
}
const reason = unavailable();
if (reason && !process.env.CI) console.log(`# SKIPPED inbound: ${reason}`);
const skip = reason && !process.env.CI ? reason : false;

const env = (name) => process.env[name] ?? '';
const base = env('OUTDIAL_SIP_URL').replace(/\/+$/, '');
const credentials = { apiKey: env('OUTDIAL_SIP_API_KEY'), apiSecret: env('OUTDIAL_SIP_API_SECRET') };
const numbers = new Numbers(credentials, { restHost: base, timeout: 15000 });
const vonage = new Vonage(credentials, { apiHost: base, restHost: base, timeout: 15000 });
const NUMBER = env('OUTDIAL_SIP_NUMBER');

// The application's answer_url: answers with a short talk and records each request.
async function startAnswerServer() {
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams) });
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(url.pathname === '/answer' ? JSON.stringify([{ action: 'talk', text: 'Thanks for calling' }]) : '');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { requests, url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

// SIPp calling the number once; its exit code (0: our answers followed the scenario) and logs.
async function callIn() {
  const dir = mkdtempSync(join(tmpdir(), 'outdial-sdk-inbound-'));
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = spawn('sipp', [
      '-sf', SCENARIO, '-i', '127.0.0.1', '-p', String(port), '-m', '1', '-nostdin', '-timeout', '30s', '-timeout_error',
      '-trace_err', '-error_file', join(dir, 'errors.log'), '-s', NUMBER, `127.0.0.1:${env('OUTDIAL_SIP_PORT')}`,
    ], { cwd: dir, stdio: 'ignore' });
    const code = await new Promise((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
    let errors = '';
    try { errors = readFileSync(join(dir, 'errors.log'), 'utf8'); } catch { /* none */ }
    if (code === 254 || errors.includes('Unable to bind')) continue;
    rmSync(dir, { recursive: true, force: true });
    return { code, errors };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error('SIPp could not bind a UDP port in 5 attempts');
}

let answer;
after(async () => {
  if (skip) return;
  answer?.close();
  await numbers.updateNumber({ country: 'GB', msisdn: NUMBER }).catch(() => {});
});

test('a call to a number the SDK linked reaches the application\'s answer_url', { skip }, async () => {
  answer = await startAnswerServer();
  const appId = env('OUTDIAL_SIP_APPLICATION_ID');
  await vonage.applications.updateApplication({
    id: appId,
    name: 'sdk-tests-sip',
    capabilities: {
      voice: {
        webhooks: {
          answerUrl: { address: `${answer.url}/answer`, httpMethod: 'GET' },
          eventUrl: { address: `${answer.url}/event`, httpMethod: 'POST' },
        },
      },
    },
  });
  const owned = await numbers.getOwnedNumbers({ pattern: NUMBER, searchPattern: 1 });
  assert.deepEqual(owned.numbers.map((n) => n.msisdn), [NUMBER], JSON.stringify(owned));
  const linked = await numbers.updateNumber({ country: 'GB', msisdn: NUMBER, applicationId: appId });
  assert.equal(linked.errorCode ?? linked['error-code'], '200', JSON.stringify(linked));
  const after = await numbers.getOwnedNumbers({ applicationId: appId });
  assert.ok(after.numbers.some((n) => n.msisdn === NUMBER && (n.appId ?? n.app_id) === appId), JSON.stringify(after));

  const { code, errors } = await callIn();
  assert.equal(code, 0, `SIPp: ${errors}`);
  const asked = answer.requests.filter((r) => r.path === '/answer');
  assert.equal(asked.length, 1, JSON.stringify(answer.requests));
  assert.equal(asked[0].method, 'GET');
  assert.equal(asked[0].query.to, NUMBER);
  assert.equal(asked[0].query.from, '447700900000');
  assert.ok(asked[0].query.uuid, 'the answer_url gets the call\'s uuid');
  // The call is listed as inbound by the Voice API.
  const events = answer.requests.filter((r) => r.path === '/event');
  assert.ok(events.length >= 1, 'events reached the event_url');
});
