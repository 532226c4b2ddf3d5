// The live-calls console (/console) in a real browser: headless Chromium (Debian's `chromium`,
// or CHROMIUM=/path) driven by playwright-core. Signs in (a wrong secret first: refused with a
// message), places a call through the official SDK that waits until hung up, sees it appear
// answered in the live list, opens it (event timeline), hangs it up from the page and sees it
// complete. Any console error on the page (a Content-Security-Policy violation, a script error)
// fails the test. Without Chromium it is skipped, saying why; with env CI set it fails instead.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

import { API_KEY, API_SECRET, BASE_URL, voiceClient, talkCall, withRateLimitRetry } from './helpers.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const missing = existsSync(CHROMIUM) ? null : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`;
if (missing && process.env.CI) throw new Error(`console.test.mjs: ${missing}`);

describe('live-calls console in Chromium', { skip: missing || false }, () => {
  let browser;
  let page;
  const problems = [];
  const vonage = voiceClient();

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    page = await browser.newPage();
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
  });

  test('a wrong secret is refused with a message', async () => {
    await page.goto(`${BASE_URL}/console`);
    await page.locator('#sign-in').waitFor();
    await page.fill('#api-key', API_KEY);
    await page.fill('#api-secret', 'not-the-secret');
    await page.click('#sign-in-button');
    await page.locator('#sign-in-error', { hasText: 'wrong' }).waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#console').isVisible(), false);
    // The browser's refused request (401) is logged as a console error; nothing else may be.
    problems.length = 0;
  });

  test('sign in, see a live call, open it, hang it up, see it complete', async () => {
    await page.fill('#api-key', API_KEY);
    await page.fill('#api-secret', API_SECRET);
    await page.click('#sign-in-button');
    await page.locator('#console').waitFor({ timeout: 10_000 });
    await page.locator('#connection.live').waitFor({ timeout: 10_000 });
    // Not an operator: no trunks and instances.
    assert.equal(await page.locator('#operator-tab').isVisible(), false);

    const created = await withRateLimitRetry(() => vonage.voice.createOutboundCall(talkCall({ ncco: [{ action: 'wait', timeout: 600 }] })));
    const uuid = created.uuid;
    const row = page.locator(`#calls tr[data-uuid="${uuid}"]`);
    await page.locator(`#calls tr[data-uuid="${uuid}"][data-status="answered"]`).waitFor({ timeout: 15_000 });
    assert.match(await row.locator('.state').innerText(), /answered/);

    await row.click();
    await page.locator(`#detail[data-uuid="${uuid}"]`).waitFor({ timeout: 10_000 });
    await page.locator('#timeline li[data-kind="answered"]').waitFor({ timeout: 10_000 });
    assert.ok(await page.locator('#timeline li[data-kind="started"]').count() >= 1, 'the timeline shows the started event');
    assert.equal(await page.locator('#hangup').isEnabled(), true);

    await page.click('#hangup');
    await page.locator(`#calls tr[data-uuid="${uuid}"][data-status="completed"]`).waitFor({ timeout: 15_000 });
    await page.locator(`#detail[data-status="completed"]`).waitFor({ timeout: 10_000 });
    await page.locator('#timeline li[data-kind="completed"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#hangup').isDisabled(), true);
    assert.match(await page.locator('#commands').innerText(), /hangup/);

    // The REST API agrees.
    const call = await vonage.voice.getCall(uuid);
    assert.equal(call.status, 'completed');
    assert.deepEqual(problems, []);
  });

  test('sign out ends the session', async () => {
    await page.click('#sign-out');
    await page.locator('#sign-in').waitFor({ timeout: 10_000 });
    await page.reload();
    await page.locator('#sign-in').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#console').isVisible(), false);
  });
});
