// The Node client set-up README.md shows (§ Using the official SDKs), run as written against
// this server: the ```js block, with the README's base URL replaced by OUTDIAL_URL and the
// variables `outdial demo --env` would export taken from this suite's account.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import { BASE_URL } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const readme = readFileSync(join(here, '../../../../README.md'), 'utf8');

test('the README\'s Node set-up places a call, reads the balance and the records', () => {
  const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  assert.equal(blocks.length, 1, 'README.md has one ```js block');
  assert.match(blocks[0], /http:\/\/127\.0\.0\.1:8080/);
  // Inside the package, so that its imports resolve to the pinned SDK.
  const file = join(here, '..', '.readme-snippet.mjs');
  writeFileSync(file, blocks[0].replaceAll('http://127.0.0.1:8080', BASE_URL));
  try {
    const out = execFileSync(process.execPath, [file], {
      env: {
        ...process.env,
        API_KEY: process.env.OUTDIAL_API_KEY,
        API_SECRET: process.env.OUTDIAL_API_SECRET,
        APPLICATION_ID: process.env.OUTDIAL_APPLICATION_ID,
        PRIVATE_KEY: process.env.OUTDIAL_PRIVATE_KEY,
      },
      encoding: 'utf8',
      timeout: 30000,
    });
    const [uuid, balance, records] = out.trim().split(' ');
    assert.match(uuid, /^[0-9a-f-]{36}$/, out);
    assert.ok(Number.isFinite(Number(balance)), out);
    assert.match(records, /^\d+$/, out);
  } finally {
    rmSync(file, { force: true });
  }
});
