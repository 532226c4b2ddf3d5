// A call through a SIP trunk, created and read back with the official Node SDK, against the
// second Outdial scripts/sdk-tests.sh starts (carrier.kind = "sip", OUTDIAL_SIP_*). The trunk is
// SIPp playing tests/sip/uas_answer_wait_bye.xml: INVITE → 100, 180, 200 (PCMU) → ACK, then our
// BYE → 200. SIPp exits 0 only if our messages followed that scenario.
//
// Without sipp or the OUTDIAL_SIP_* variables the test is skipped, saying why; with env CI set
// it fails instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdtempSync, openSync, readFileSync, rmSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { EVENT_URL, FROM_NUMBER, clientAt, sleep, withRateLimitRetry } from './helpers.mjs';

const SIP_VARS = ['OUTDIAL_SIP_URL', 'OUTDIAL_SIP_APPLICATION_ID', 'OUTDIAL_SIP_PRIVATE_KEY', 'OUTDIAL_SIP_API_KEY', 'OUTDIAL_SIP_API_SECRET'];
const SCENARIO = fileURLToPath(new URL('../../../sip/uas_answer_wait_bye.xml', import.meta.url));
const FINAL_STATUSES = new Set(['completed', 'failed', 'rejected', 'busy', 'timeout', 'unanswered', 'cancelled']);
// SIPp's exit code when it could not bind its port (taken meanwhile): try another.
const SIPP_BIND_FAILED = 254;

function unavailable() {
  const missing = SIP_VARS.filter((name) => !process.env[name]);
  if (missing.length) {
    return `a SIP-carrier Outdial is not configured (missing ${missing.join(', ')}; scripts/sdk-tests.sh sets them)`;
  }
  if (spawnSync('sipp', ['-v'], { stdio: 'ignore' }).error) {
    return 'sipp is not installed (apt-get install sip-tester; scripts/test.sh does it when run as root)';
  }
  return undefined;
}

const reason = unavailable();
const inCI = Boolean(process.env.CI);
if (reason && !inCI) {
  console.log(`# SKIPPED sip-trunk: ${reason}`);
}

async function freeUdpPort() {
  const socket = dgram.createSocket('udp4');
  await new Promise((resolve, reject) => socket.once('error', reject).bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise((resolve) => socket.close(resolve));
  return port;
}

// SIPp binds without SO_REUSEADDR: binding the port ourselves fails once SIPp holds it.
async function udpPortTaken(port) {
  const socket = dgram.createSocket('udp4');
  try {
    await new Promise((resolve, reject) => socket.once('error', reject).bind(port, '127.0.0.1', resolve));
    await new Promise((resolve) => socket.close(resolve));
    return false;
  } catch (err) {
    if (err.code === 'EADDRINUSE') return true;
    throw err;
  }
}

// SIPp waiting for one call on a free loopback UDP port; resolves once it listens.
async function startSipp(scenario) {
  const dir = mkdtempSync(join(tmpdir(), 'outdial-sdk-sipp-'));
  const read = (file) => {
    try {
      return readFileSync(join(dir, file), 'utf8').trim();
    } catch {
      return '';
    }
  };
  let lastFailure = '';
  for (let attempt = 1; attempt <= 5; attempt++) {
    const port = await freeUdpPort();
    const screen = openSync(join(dir, 'screen.log'), 'w');
    const stderr = openSync(join(dir, 'stderr.log'), 'w');
    const child = spawn('sipp', [
      '-sf', scenario, '-i', '127.0.0.1', '-p', String(port), '-m', '1', '-nostdin',
      '-timeout', '30s', '-timeout_error', '-trace_err', '-trace_msg',
      '-message_file', join(dir, 'messages.log'), '-error_file', join(dir, 'errors.log'),
    ], { cwd: dir, stdio: ['ignore', screen, stderr] });
    closeSync(screen);
    closeSync(stderr);
    let exitCode;
    const exited = new Promise((resolve) => child.on('exit', (code) => {
      exitCode = code ?? -1;
      resolve(exitCode);
    }));
    const started = Date.now();
    while (exitCode === undefined && !(await udpPortTaken(port))) {
      if (Date.now() - started > 10_000) {
        child.kill('SIGKILL');
        throw new Error(`SIPp did not bind 127.0.0.1:${port} within 10 s`);
      }
      await sleep(5);
    }
    if (exitCode === undefined) {
      return {
        port,
        // Exit code, or -1 when SIPp was still running after timeoutMs (then killed); its logs.
        async wait(timeoutMs) {
          const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
          const code = await exited;
          clearTimeout(timer);
          const log = [`SIPp ${scenario} on 127.0.0.1:${port}: exit code ${code}`];
          for (const file of ['stderr.log', 'errors.log', 'messages.log']) {
            const text = read(file);
            if (text) log.push(`--- SIPp ${file} ---\n${text}`);
          }
          return { code, log: log.join('\n') };
        },
        stop() {
          if (exitCode === undefined) child.kill('SIGKILL');
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    lastFailure = read('stderr.log');
    if (exitCode !== SIPP_BIND_FAILED && !lastFailure.includes('Unable to bind')) {
      const errors = read('errors.log');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`SIPp exited on start with code ${exitCode}:\n${lastFailure}\n${errors}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`SIPp could not bind a UDP port in 5 attempts: ${lastFailure}`);
}

// The account's trunks through the REST API (Basic auth): the SDK has no trunks client.
async function trunkRequest(method, path, body) {
  const base = process.env.OUTDIAL_SIP_URL.replace(/\/+$/, '');
  const credentials = Buffer.from(`${process.env.OUTDIAL_SIP_API_KEY}:${process.env.OUTDIAL_SIP_API_SECRET}`).toString('base64');
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Basic ${credentials}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined, text };
}

test('a call through a SIP trunk (SIPp) completes and getCall returns its sip object', { skip: !inCI && reason }, async (t) => {
  if (reason) {
    assert.fail(`env CI is set, so the SIP trunk test may not be skipped: ${reason}`);
  }
  const vonage = clientAt(process.env.OUTDIAL_SIP_URL, {
    applicationId: process.env.OUTDIAL_SIP_APPLICATION_ID,
    privateKey: readFileSync(process.env.OUTDIAL_SIP_PRIVATE_KEY, 'utf8'),
  });

  const sipp = await startSipp(SCENARIO);
  t.after(() => sipp.stop());

  // A prefix of this run only, as long as the number: the longest matching prefix wins, so no
  // other trunk of the account (another run's, the Python test's) takes this call.
  const number = `4477009${String(randomInt(10_000_000)).padStart(7, '0')}`;
  const name = `sdk-node-${randomUUID().slice(0, 8)}`;
  const created = await trunkRequest('POST', '/v1/trunks', {
    name, host: '127.0.0.1', port: sipp.port, transport: 'udp', prefixes: [number],
  });
  assert.equal(created.status, 201, `POST /v1/trunks: ${created.status} ${created.text}`);
  t.after(async () => {
    const deleted = await trunkRequest('DELETE', `/v1/trunks/${created.body.id}`);
    assert.equal(deleted.status, 204, `DELETE /v1/trunks/${created.body.id}: ${deleted.status} ${deleted.text}`);
  });

  const result = await withRateLimitRetry(() => vonage.voice.createOutboundCall({
    to: [{ type: 'phone', number }],
    from: { type: 'phone', number: FROM_NUMBER },
    ncco: [{ action: 'talk', text: 'Hello from the SIP trunk test' }],
    eventUrl: [EVENT_URL],
  }));
  assert.equal(result.status, 'started');

  const seen = [];
  let call;
  const deadline = Date.now() + 40_000;
  for (;;) {
    call = await vonage.voice.getCall(result.uuid);
    if (seen.at(-1) !== call.status) seen.push(call.status);
    if (FINAL_STATUSES.has(call.status)) break;
    assert.ok(Date.now() < deadline, `call ${result.uuid} not finished after 40 s; statuses ${seen.join(' → ')}`);
    await sleep(200);
  }
  const { code, log } = await sipp.wait(30_000);
  assert.equal(call.status, 'completed', `statuses ${seen.join(' → ')}; call ${JSON.stringify(call)}\n${log}`);
  assert.equal(code, 0, log);

  // getCall camel-cases keys deeply but keeps the originals (camelCaseObjectKeys(call, deep,
  // preserve) in @vonage/voice): `sip` survives, with both call_id and callId, and so on.
  const { sip } = call;
  assert.equal(typeof sip, 'object', `getCall returned no sip object: ${JSON.stringify(call)}`);
  assert.equal(call.uuid, result.uuid);
  assert.equal(call.to?.number, number);
  assert.equal(sip.final_code, 200, JSON.stringify(sip));
  assert.equal(sip.finalCode, 200, JSON.stringify(sip));
  assert.equal(sip.final_reason, 'OK');
  assert.equal(sip.trunk, name);
  assert.equal(sip.codec, 'PCMU');
  // The far end's media address from its SDP answer (SIPp's [media_ip]:[media_port]).
  assert.match(sip.remote_address, /^127\.0\.0\.1:\d+$/);
  assert.equal(sip.remoteAddress, sip.remote_address);
  assert.equal(typeof sip.call_id, 'string', JSON.stringify(sip));
  assert.ok(sip.call_id.startsWith(result.uuid.replaceAll('-', '')), `call_id ${sip.call_id}`);
  assert.equal(sip.callId, sip.call_id);
  assert.ok(Array.isArray(sip.attempts) && sip.attempts.length === 1, `attempts: ${JSON.stringify(sip.attempts)}`);
  assert.equal(sip.attempts[0].trunk, name);
  assert.equal(sip.attempts[0].code, 200, JSON.stringify(sip.attempts));
});
