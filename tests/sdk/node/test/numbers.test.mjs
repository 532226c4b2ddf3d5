// Vonage's Numbers API (GET /account/numbers, GET /number/search, POST /number/update, /number/buy,
// /number/cancel) through the official Node SDK (@vonage/numbers, which uses `restHost`), and a
// call with randomFromNumber taking the caller id from the number linked to the application.
//
// The numbers are the operator's (`outdial number add`): scripts/sdk-tests.sh adds one owned by
// the test account (OUTDIAL_NUMBER) and one available to buy (OUTDIAL_AVAILABLE_NUMBER), both in
// GB. Without them the tests are skipped, saying why; with env CI set they fail instead.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Numbers } from '@vonage/numbers';

import {
  API_KEY, API_SECRET, APPLICATION_ID, BASE_URL, EVENT_URL, expectHttpError, voiceClient, withRateLimitRetry,
} from './helpers.mjs';

const OWNED = process.env.OUTDIAL_NUMBER;
const AVAILABLE = process.env.OUTDIAL_AVAILABLE_NUMBER;
const COUNTRY = 'GB';
const missing = ['OUTDIAL_NUMBER', 'OUTDIAL_AVAILABLE_NUMBER'].filter((name) => !process.env[name]);
const reason = missing.length ? `no numbers provisioned (missing ${missing.join(', ')}; scripts/sdk-tests.sh adds them)` : undefined;
if (reason && !process.env.CI) {
  console.log(`# SKIPPED numbers: ${reason}`);
}
const skip = reason && !process.env.CI ? reason : false;

// Constructed on its own, as the README shows, with restHost at Outdial.
const numbers = new Numbers({ apiKey: API_KEY, apiSecret: API_SECRET }, { restHost: BASE_URL, timeout: 15000 });

async function ownedNumber(msisdn, filter = {}) {
  const page = await numbers.getOwnedNumbers({ size: 100, ...filter });
  return (page.numbers ?? []).find((n) => n.msisdn === msisdn);
}

describe('numbers', { skip }, () => {
  after(async () => {
    // Leave the numbers as the run found them: the owned one unlinked, the other for sale.
    if (skip) return;
    await numbers.updateNumber({ country: COUNTRY, msisdn: OWNED }).catch(() => {});
    if (await ownedNumber(AVAILABLE).catch(() => undefined)) {
      await numbers.cancelNumber({ country: COUNTRY, msisdn: AVAILABLE }).catch(() => {});
    }
  });

  test('getOwnedNumbers lists the account\'s number with country, type and features', async () => {
    const page = await numbers.getOwnedNumbers();
    assert.ok(page.count >= 1, `count ${page.count}`);
    const mine = page.numbers.find((n) => n.msisdn === OWNED);
    assert.ok(mine, `${OWNED} not in ${JSON.stringify(page)}`);
    assert.equal(mine.country, COUNTRY);
    assert.equal(mine.type, 'landline');
    assert.deepEqual(mine.features, ['VOICE']);
    assert.equal(page.numbers.find((n) => n.msisdn === AVAILABLE), undefined, 'a number for sale is not owned');
    // Filters, as the SDK sends them (snake_case query parameters).
    const ends = await numbers.getOwnedNumbers({ pattern: OWNED.slice(-4), searchPattern: 2 });
    assert.deepEqual(ends.numbers.map((n) => n.msisdn), [OWNED]);
    const starts = await numbers.getOwnedNumbers({ pattern: '999', searchPattern: 0 });
    assert.equal(starts.count, 0);
  });

  test('updateNumber links the number to the application, and without appId unlinks it', async () => {
    const linked = await numbers.updateNumber({ country: COUNTRY, msisdn: OWNED, applicationId: APPLICATION_ID });
    assert.deepEqual(linked, { errorCode: '200', errorCodeLabel: 'success' });
    const mine = await ownedNumber(OWNED, { applicationId: APPLICATION_ID });
    assert.equal(mine?.app_id, APPLICATION_ID, JSON.stringify(mine));
    assert.equal(mine.voiceCallbackType, 'app');
    assert.equal(mine.voiceCallbackValue, APPLICATION_ID);
    assert.ok(await ownedNumber(OWNED, { hasApplication: true }));
    assert.equal(await ownedNumber(OWNED, { hasApplication: false }), undefined);

    // randomFromNumber: the caller id is the application's linked number (as Vonage picks it).
    const voice = voiceClient();
    const call = await withRateLimitRetry(() => voice.voice.createOutboundCall({
      to: [{ type: 'phone', number: '447700900000' }],
      randomFromNumber: true,
      ncco: [{ action: 'talk', text: 'From one of my numbers' }],
      eventUrl: [EVENT_URL],
    }));
    const placed = await voice.voice.getCall(call.uuid);
    assert.equal(placed.from?.number, OWNED, JSON.stringify(placed.from));

    const unlinked = await numbers.updateNumber({ country: COUNTRY, msisdn: OWNED });
    assert.equal(unlinked.errorCode, '200');
    const now = await ownedNumber(OWNED);
    assert.equal(now.app_id, undefined, JSON.stringify(now));
    assert.equal(now.voiceCallbackType, undefined);
  });

  test('an application that is not the account\'s is refused with Vonage\'s 420', async () => {
    const err = await expectHttpError(numbers.updateNumber({ country: COUNTRY, msisdn: OWNED, appId: randomUUID() }), 420);
    const body = await err.response.json();
    assert.equal(body['error-code'], '420');
    assert.match(body['error-code-label'], /not yours/);
    assert.equal((await ownedNumber(OWNED)).app_id, undefined, 'still unlinked');
  });

  test('getAvailableNumbers, buyNumber and cancelNumber move a number for sale to the account and back', async () => {
    const forSale = await numbers.getAvailableNumbers({ country: COUNTRY });
    const offer = forSale.numbers.find((n) => n.msisdn === AVAILABLE);
    assert.ok(offer, `${AVAILABLE} not for sale: ${JSON.stringify(forSale)}`);
    assert.equal(offer.cost, '0.00');

    const bought = await numbers.buyNumber({ country: COUNTRY, msisdn: AVAILABLE });
    assert.deepEqual(bought, { errorCode: '200', errorCodeLabel: 'success' });
    assert.ok(await ownedNumber(AVAILABLE), 'bought: now owned');
    const again = await expectHttpError(numbers.buyNumber({ country: COUNTRY, msisdn: AVAILABLE }), 420);
    assert.match((await again.response.json())['error-code-label'], /already own/);

    const cancelled = await numbers.cancelNumber({ country: COUNTRY, msisdn: AVAILABLE });
    assert.equal(cancelled.errorCode, '200');
    assert.equal(await ownedNumber(AVAILABLE), undefined, 'cancelled: no longer owned');
    const back = await numbers.getAvailableNumbers({ country: COUNTRY, pattern: AVAILABLE, searchPattern: 0 });
    assert.deepEqual(back.numbers.map((n) => n.msisdn), [AVAILABLE]);
  });

  test('a wrong api_secret is refused with 401', async () => {
    const wrong = new Numbers({ apiKey: API_KEY, apiSecret: 'wrong-secret' }, { restHost: BASE_URL });
    await expectHttpError(wrong.getOwnedNumbers(), 401);
  });
});
