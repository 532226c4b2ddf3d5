// Shared set-up for the Node SDK compatibility tests.
//
// Environment (provided by tests/sdk/run.sh or the caller):
//   OUTDIAL_URL             base URL of a running Outdial server, e.g. http://127.0.0.1:18080
//   OUTDIAL_APPLICATION_ID  application id used for JWT (Voice API) auth
//   OUTDIAL_PRIVATE_KEY     path to that application's PKCS#8 PEM private key
//   OUTDIAL_API_KEY         account api key (HTTP Basic, Applications API)
//   OUTDIAL_API_SECRET      account api secret
// Optional:
//   OUTDIAL_SIGNATURE_SECRET  account signature secret (signed-webhooks.test.mjs; skipped without it)
//   OUTDIAL_SIP_URL, OUTDIAL_SIP_APPLICATION_ID, OUTDIAL_SIP_PRIVATE_KEY, OUTDIAL_SIP_API_KEY,
//   OUTDIAL_SIP_API_SECRET    a second Outdial with the SIP carrier (sip-trunk.test.mjs; skipped
//                             without them, failed when env CI is set)
import { readFileSync } from 'node:fs';
import { Vonage } from '@vonage/server-sdk';

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} must be set (see tests/sdk/run.sh)`);
  }
  return value;
}

export const BASE_URL = required('OUTDIAL_URL').replace(/\/+$/, '');
export const APPLICATION_ID = required('OUTDIAL_APPLICATION_ID');
export const PRIVATE_KEY = readFileSync(required('OUTDIAL_PRIVATE_KEY'), 'utf8');
export const API_KEY = required('OUTDIAL_API_KEY');
export const API_SECRET = required('OUTDIAL_API_SECRET');

export const TO_NUMBER = '447700900000';
export const FROM_NUMBER = '447700900001';
// Nothing listens on the discard port: webhook deliveries fail fast and never leave the machine.
export const EVENT_URL = 'http://127.0.0.1:9/events';

// Every SDK client (voice, applications, ...) builds its URLs from `apiHost`,
// scheme included (see @vonage/server-client Client constructor).
export const SDK_OPTIONS = { apiHost: BASE_URL, restHost: BASE_URL, timeout: 15000 };

export function voiceClient(applicationId = APPLICATION_ID, privateKey = PRIVATE_KEY) {
  return explainErrors(new Vonage({ applicationId, privateKey }, SDK_OPTIONS));
}

// An SDK client for another Outdial (e.g. the SIP-carrier one, OUTDIAL_SIP_URL), with the same
// error reports and 429 retries as the others.
export function clientAt(baseUrl, credentials) {
  const url = baseUrl.replace(/\/+$/, '');
  return explainErrors(new Vonage(credentials, { apiHost: url, restHost: url, timeout: 15000 }));
}

export function accountClient(apiKey = API_KEY, apiSecret = API_SECRET) {
  return explainErrors(new Vonage({ apiKey, apiSecret }, SDK_OPTIONS));
}

// Number of HTTP 429 answers the test scaffolding absorbed (see explainErrors).
export const rateLimited = { retries: 0 };

// Patches the SDK's shared Client prototype (from @vonage/server-client) once:
// 1. The SDK's VetchError only says "Request failed with status code N". For useful failure
//    reports, append the request and the server's response body to the message (the body is
//    read from a clone, so err.response stays readable).
// 2. The server limits each account to 3 call creations/s and 15 other requests/s, like Vonage;
//    the Node SDK never retries, so the tests wait and resend on 429 (Retry-After honoured).
function explainErrors(vonage) {
  let proto = vonage.voice;
  while (proto && !Object.prototype.hasOwnProperty.call(proto, 'parseResponse')) {
    proto = Object.getPrototypeOf(proto);
  }
  if (!proto || proto.outdialExplained) return vonage;
  const sendRequest = proto.sendRequest;
  proto.sendRequest = async function retryingSendRequest(request) {
    for (let attempt = 1; ; attempt++) {
      // prepareRequest mutates the request (url gets the query appended): send a copy.
      const copy = { ...request, headers: { ...request.headers } };
      try {
        return await sendRequest.call(this, copy);
      } catch (err) {
        if (httpStatus(err) !== 429 || attempt >= 40) throw err;
        rateLimited.retries++;
        const retryAfter = Number(err.response.headers?.get?.('retry-after'));
        await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 5) * 1000 : 400);
      }
    }
  };
  const original = proto.parseResponse;
  proto.parseResponse = async function parseResponse(request, response) {
    if (response.ok) return original.call(this, request, response);
    const body = await response.clone().text().catch(() => '<unreadable>');
    try {
      return await original.call(this, request, response);
    } catch (err) {
      const sent = request.data ? ` ${JSON.stringify(request.data).slice(0, 400)}` : '';
      err.message += ` [${request.method} ${request.url}${sent} -> ${response.status} ${body.slice(0, 600)}]`;
      throw err;
    }
  };
  proto.outdialExplained = true;
  return vonage;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Status of a VetchError (the SDK throws one for every non-2xx response), or undefined.
export function httpStatus(err) {
  return err?.response?.status;
}

// Run fn(); on HTTP 429 (Vonage allows 3 call creations/s per account) wait and retry.
export async function withRateLimitRetry(fn, { attempts = 30 } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (httpStatus(err) !== 429 || attempt >= attempts) {
        throw err;
      }
      const retryAfter = Number(err.response.headers?.get?.('retry-after'));
      await sleep(Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 5) * 1000 : 400);
    }
  }
}

export function talkCall(extra = {}) {
  return {
    to: [{ type: 'phone', number: TO_NUMBER }],
    from: { type: 'phone', number: FROM_NUMBER },
    ncco: [{ action: 'talk', text: 'Hello from the Outdial SDK compatibility tests' }],
    eventUrl: [EVENT_URL],
    ...extra,
  };
}

// Assert helper for "this promise must be rejected by the SDK with HTTP <status>".
export async function expectHttpError(promise, status) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  if (!err) {
    throw new Error(`expected the SDK to throw for HTTP ${status}, but the call succeeded`);
  }
  if (err.constructor?.name !== 'VetchError' || httpStatus(err) !== status) {
    throw new Error(
      `expected VetchError with HTTP ${status}, got ${err.constructor?.name}: ${err.message}`,
      { cause: err },
    );
  }
  return err;
}

export const CALL_STATUSES = new Set([
  'started', 'ringing', 'answered', 'machine', 'human', 'completed', 'busy', 'cancelled',
  'failed', 'rejected', 'timeout', 'unanswered',
]);
