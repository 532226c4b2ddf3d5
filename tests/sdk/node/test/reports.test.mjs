// Reports API v2 for voice through the official @vonage/reports client (Basic api_key:api_secret,
// `apiHost` pointing at Outdial): the synchronous records of calls placed here, and an
// asynchronous report created, polled and downloaded.
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync } from 'node:zlib';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Reports, Product, Direction, AsyncReportStatus } from '@vonage/reports';

import {
  API_KEY, API_SECRET, SDK_OPTIONS, FROM_NUMBER, EVENT_URL, voiceClient, withRateLimitRetry, expectHttpError, sleep,
} from './helpers.mjs';

const WAIT_MS = 30000;
const reports = new Reports({ apiKey: API_KEY, apiSecret: API_SECRET }, SDK_OPTIONS);
const vonage = voiceClient();

async function placeAndFinish(number) {
  const created = await withRateLimitRetry(() => vonage.voice.createOutboundCall({
    to: [{ type: 'phone', number }],
    from: { type: 'phone', number: FROM_NUMBER },
    ncco: [{ action: 'talk', text: 'A call for the reports' }],
    eventUrl: [EVENT_URL],
  }));
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const call = await vonage.voice.getCall(created.uuid);
    // A finished leg reads how it ended: completed (answered), busy, failed, rejected, …
    if (['completed', 'busy', 'failed', 'rejected', 'timeout', 'unanswered', 'cancelled'].includes(call.status)) return created.uuid;
    if (Date.now() > deadline) assert.fail(`call ${created.uuid} still ${call.status}`);
    await sleep(100);
  }
}

// The single file of a zip archive, read through its central directory.
function unzipOne(buf) {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  assert.ok(eocd >= 0, 'a zip archive');
  const central = buf.readUInt32LE(eocd + 16);
  assert.equal(buf.readUInt32LE(central), 0x02014b50);
  const method = buf.readUInt16LE(central + 10);
  const compressed = buf.readUInt32LE(central + 20);
  const nameLength = buf.readUInt16LE(central + 28);
  const name = buf.subarray(central + 46, central + 46 + nameLength).toString();
  const local = buf.readUInt32LE(central + 42);
  const data = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
  const bytes = buf.subarray(data, data + compressed);
  return { name, text: (method === 8 ? inflateRawSync(bytes) : bytes).toString('utf8') };
}

describe('reports: voice records and reports (@vonage/reports)', () => {
  let since;
  let answered;
  let busy;

  before(async () => {
    since = new Date(Date.now() - 60_000).toISOString();
    answered = await placeAndFinish('447700900123');
    await placeAndFinish('447700900124'); // a second answered call: two pages of one
    busy = await placeAndFinish('447700900486');
  });

  const window = () => ({ accountId: API_KEY, dateStart: since, dateEnd: new Date(Date.now() + 60_000).toISOString() });

  test('getRecords lists an answered call as a VOICE-CALL record, camel-cased by the SDK', async () => {
    const page = await reports.getRecords({ product: Product.VOICE_CALL, direction: Direction.OUTBOUND, ...window() });
    assert.equal(page.requestStatus, 'SUCCESS');
    assert.equal(page.product, 'VOICE-CALL');
    assert.match(page.links.self.href, /\/v2\/reports\/records\?/);
    const record = page.records.find((r) => r.callId === answered);
    assert.ok(record, `call ${answered} among ${JSON.stringify(page.records.map((r) => r.callId))}`);
    assert.equal(record.accountId, API_KEY);
    assert.equal(record.to, '447700900123');
    assert.equal(record.from, FROM_NUMBER);
    assert.equal(record.status, 'ANSWERED');
    assert.equal(record.currency, 'EUR');
    assert.match(record.duration, /^\d+$/);
    assert.match(record.totalPrice, /^\d+\.\d{8}$/);
    assert.ok(record.dateStart && record.dateEnd);
    assert.ok(!page.records.some((r) => r.callId === busy), 'a busy call is no VOICE-CALL record');

    const one = await reports.getRecords({ product: Product.VOICE_CALL, accountId: API_KEY, callId: answered });
    assert.deepEqual(one.records.map((r) => r.callId), [answered]);
  });

  test('getRecords lists a busy call as a VOICE-FAILED record', async () => {
    const page = await reports.getRecords({ product: Product.VOICE_FAILED, ...window() });
    const record = page.records.find((r) => r.callId === busy);
    assert.ok(record, `call ${busy} among ${JSON.stringify(page.records.map((r) => r.callId))}`);
    assert.equal(record.status, 'FAILED');
    assert.equal(record.statusCode, '486');
  });

  test('getRecords follows pages with the cursor of links.next', async () => {
    const first = await reports.getRecords({ product: Product.VOICE_CALL, pageSize: 1, ...window() });
    assert.equal(first.records.length, 1);
    assert.ok(first.links.next && first.cursor, 'two answered calls make two pages of one');
    assert.ok(first.links.next.href.includes(`cursor=${encodeURIComponent(first.cursor)}`), first.links.next.href);
    const second = await reports.getRecords({ product: Product.VOICE_CALL, pageSize: 1, cursor: first.cursor, ...window() });
    assert.equal(second.records.length, 1);
    assert.notEqual(second.records[0].callId, first.records[0].callId);
  });

  test('createReport → getReport until SUCCESS → the zipped CSV holds the call', async () => {
    const created = await reports.createReport({ product: Product.VOICE_CALL, ...window() });
    assert.equal(created.requestStatus, AsyncReportStatus.PENDING);
    assert.equal(typeof created.requestId, 'string');
    assert.match(created.links.self.href, new RegExp(`/v2/reports/${created.requestId}$`));

    let report = created;
    const deadline = Date.now() + WAIT_MS;
    while (report.requestStatus === AsyncReportStatus.PENDING || report.requestStatus === AsyncReportStatus.PROCESSING) {
      if (Date.now() > deadline) assert.fail(`report ${created.requestId} still ${report.requestStatus}`);
      await sleep(200);
      report = await reports.getReport(created.requestId);
    }
    assert.equal(report.requestStatus, AsyncReportStatus.SUCCESS);
    assert.ok(report.itemsCount >= 1);
    const href = report.links.downloadReport.href;
    assert.match(href, /\/v3\/media\/[0-9a-f-]{36}$/);

    // getReportData downloads only from vonage.com / nexmo.com hosts (a check in the SDK's
    // FileClient), so against a local Outdial it refuses before sending anything...
    await assert.rejects(reports.getReportData(created.requestId, join(mkdtempSync(join(tmpdir(), 'outdial-')), 'r.zip')), /invalid for file download/);
    // ...so fetch the link with the authentication that client adds (Basic), as it would.
    const request = await reports.addAuthenticationToRequest({ url: href, method: 'GET' });
    assert.match(request.headers.Authorization, /^Basic /);
    const response = await fetch(request.url, { method: 'GET', headers: request.headers });
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'application/zip');
    const { name, text } = unzipOne(Buffer.from(await response.arrayBuffer()));
    assert.match(name, /\.csv$/);
    const [header, ...rows] = text.trim().split('\n');
    assert.ok(header.split(',').includes('call_id'), header);
    assert.equal(rows.length, report.itemsCount);
    assert.ok(rows.some((row) => row.includes(answered)), `call ${answered} in the CSV`);

    // Finished: no longer cancellable.
    await expectHttpError(reports.cancelReport(created.requestId), 409);
  });

  test('a wrong secret is refused with 401', async () => {
    const wrong = new Reports({ apiKey: API_KEY, apiSecret: 'wrong-secret' }, SDK_OPTIONS);
    await expectHttpError(wrong.getRecords({ product: Product.VOICE_CALL, accountId: API_KEY }), 401);
  });
});
