// Account API balance (GET /account/get-balance, api_key/api_secret as query parameters)
// through the official Node SDK (@vonage/server-sdk → @vonage/accounts, which uses `restHost`).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { accountClient, expectHttpError } from './helpers.mjs';

describe('accounts: balance', () => {
  test('getBalance returns the balance as a number and autoReload false', async () => {
    const balance = await accountClient().accounts.getBalance();
    assert.equal(typeof balance.value, 'number');
    assert.ok(Number.isFinite(balance.value));
    assert.equal(balance.autoReload, false);
  });

  test('a wrong api_secret is refused with 401', async () => {
    await expectHttpError(accountClient(undefined, 'wrong-secret').accounts.getBalance(), 401);
  });
});
