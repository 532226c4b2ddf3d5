// The live-calls console: sign in, follow the account's calls over server-sent events, open a
// call (timeline, webhook attempts, SIP ladder, recordings), hang up or mute it. Operators also
// see trunks and instances. No framework; every value is written with textContent.
'use strict';

const ENDED = new Set(['completed', 'busy', 'cancelled', 'failed', 'rejected', 'timeout', 'unanswered']);
const STATE_ORDER = ['started', 'ringing', 'answered', 'machine', 'completed', 'busy', 'cancelled', 'failed', 'rejected', 'timeout', 'unanswered'];

const $ = (id) => document.getElementById(id);
let csrf = null;
let stream = null;
let selected = null;
let operatorTimer = null;
let detailTimer = null;
const calls = new Map();

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function api(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && csrf) init.headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, data: { detail: 'The server cannot be reached' } };
  }
  const type = res.headers.get('content-type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : null;
  return { ok: res.ok, status: res.status, data };
}

function endpoint(e) {
  if (!e) return '';
  return e.number || e.uri || e.user || e.name || e.type || '';
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : '';
}

function duration(call) {
  if (call.duration_s !== null && call.duration_s !== undefined && ENDED.has(call.status)) return `${call.duration_s} s`;
  if (call.answered_at && !ENDED.has(call.status)) return `${Math.max(0, Math.round((Date.now() - Date.parse(call.answered_at)) / 1000))} s`;
  return '';
}

// ---- Signing in and out ----------------------------------------------------------------------

function showSignIn(message) {
  csrf = null;
  if (stream) stream.close();
  stream = null;
  clearInterval(operatorTimer);
  calls.clear();
  $('console').hidden = true;
  $('sign-out').hidden = true;
  $('connection').hidden = true;
  $('who').textContent = '';
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
}

function showConsole(session) {
  csrf = session.csrf_token;
  const account = session.account;
  $('who').textContent = `${account.name} (${account.api_key})${account.operator ? ' · operator' : ''}`;
  $('operator-tab').hidden = !account.operator;
  $('sign-in').hidden = true;
  $('console').hidden = false;
  $('sign-out').hidden = false;
  $('connection').hidden = false;
  follow();
}

async function signIn(event) {
  event.preventDefault();
  const button = $('sign-in-button');
  button.disabled = true;
  $('sign-in-error').textContent = '';
  const res = await api('POST', '/console/api/session', { api_key: $('api-key').value, api_secret: $('api-secret').value });
  button.disabled = false;
  if (res.ok) {
    $('api-secret').value = '';
    showConsole(res.data);
  } else {
    $('sign-in-error').textContent = (res.data && res.data.detail) || `Sign-in failed (${res.status})`;
  }
}

async function signOut() {
  await api('DELETE', '/console/api/session');
  showSignIn('You are signed out.');
}

// ---- The live list ---------------------------------------------------------------------------

function setConnection(state) {
  const pill = $('connection');
  pill.textContent = state === 'live' ? 'live' : 'reconnecting…';
  pill.className = `pill ${state === 'live' ? 'live' : 'down'}`;
}

function follow() {
  if (stream) stream.close();
  stream = new EventSource('/console/api/stream');
  stream.onopen = () => setConnection('live');
  stream.addEventListener('snapshot', (e) => {
    calls.clear();
    merge(JSON.parse(e.data).calls);
  });
  stream.addEventListener('calls', (e) => merge(JSON.parse(e.data).calls));
  stream.addEventListener('signed-out', () => showSignIn('Your session ended; sign in again.'));
  stream.onerror = async () => {
    setConnection('down');
    if (stream && stream.readyState === EventSource.CLOSED) {
      const me = await api('GET', '/console/api/session');
      if (me.status === 401) showSignIn('Your session ended; sign in again.');
      else setTimeout(() => csrf && follow(), 3000);
    }
  };
}

function merge(list) {
  for (const call of list) calls.set(call.uuid, call);
  renderCalls();
  if (selected && list.some((c) => c.uuid === selected)) refreshDetailSoon();
}

function renderCalls() {
  const liveOnly = $('live-only').checked;
  const rows = [...calls.values()]
    .filter((c) => !liveOnly || !ENDED.has(c.status))
    .sort((a, b) => (ENDED.has(a.status) - ENDED.has(b.status))
      || (STATE_ORDER.indexOf(a.status) - STATE_ORDER.indexOf(b.status))
      || (Date.parse(b.created_at) - Date.parse(a.created_at)));
  const body = $('calls').tBodies[0];
  body.replaceChildren(...rows.map((c) => {
    const row = el('tr', { 'data-uuid': c.uuid, 'data-status': c.status, class: c.uuid === selected ? 'selected' : '' },
      el('td', {}, el('span', { class: `state state-${c.status}` }, c.status)),
      el('td', {}, el('code', { title: c.uuid }, c.uuid.slice(0, 8))),
      el('td', {}, c.direction),
      el('td', {}, endpoint(c.from)),
      el('td', {}, endpoint(c.to)),
      el('td', {}, c.trunk || ''),
      el('td', {}, time(c.created_at)),
      el('td', { class: 'duration' }, duration(c)));
    row.addEventListener('click', () => openCall(c.uuid));
    return row;
  }));
  const counts = {};
  for (const c of calls.values()) counts[c.status] = (counts[c.status] || 0) + 1;
  const live = [...calls.values()].filter((c) => !ENDED.has(c.status)).length;
  $('state-counts').replaceChildren(
    el('span', { class: 'pill', 'data-count': 'live' }, `live ${live}`),
    ...STATE_ORDER.filter((s) => counts[s]).map((s) => el('span', { class: `state state-${s}`, 'data-count': s }, `${s} ${counts[s]}`)));
}

// ---- One call --------------------------------------------------------------------------------

function refreshDetailSoon() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => selected && openCall(selected, true), 300);
}

async function openCall(uuid, quiet) {
  selected = uuid;
  const res = await api('GET', `/console/api/calls/${uuid}`);
  if (selected !== uuid) return;
  if (!res.ok) {
    if (res.status === 401) return showSignIn('Your session ended; sign in again.');
    $('action-result').textContent = (res.data && res.data.detail) || `Could not open the call (${res.status})`;
    return;
  }
  if (!quiet) $('action-result').textContent = '';
  renderDetail(res.data);
  renderCalls();
}

function renderDetail(d) {
  const call = d.call;
  $('detail').hidden = false;
  $('detail').dataset.uuid = call.uuid;
  $('detail').dataset.status = call.status;
  $('detail-uuid').textContent = call.uuid;
  const facts = [
    ['Status', call.status], ['Direction', call.direction], ['From', endpoint(call.from)], ['To', endpoint(call.to)],
    ['Conversation', call.conversation_uuid], ['Created', call.created_at], ['Started', call.start_time], ['Ended', call.end_time],
    ['Duration', call.duration && `${call.duration} s`], ['Price', call.price], ['Network', call.network],
    ['Trunk', call.sip && call.sip.trunk], ['SIP Call-ID', call.sip && call.sip.call_id],
    ['Final SIP code', call.sip && call.sip.final_code && `${call.sip.final_code} ${call.sip.final_reason || ''}`],
  ].filter(([, v]) => v !== undefined && v !== null && v !== '');
  $('detail-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  for (const id of ['hangup', 'mute', 'unmute']) $(id).disabled = !d.live;

  $('timeline').replaceChildren(...d.events.map((e) => {
    const what = e.kind === 'media' ? (e.payload && e.payload.what) : (e.payload && (e.payload.status || e.payload.detail));
    const item = el('li', { 'data-kind': e.kind },
      el('strong', {}, e.kind), ' ', time(e.created_at),
      what && e.kind !== e.payload.status ? ` · ${what}` : '',
      e.url ? el('span', { class: 'muted' }, ` → ${e.method} ${e.url} (${e.state})`) : el('span', { class: 'muted' }, ` (${e.state})`));
    for (const a of e.attempts || []) {
      const bad = a.error || !a.status_code || a.status_code >= 400;
      item.append(el('div', { class: `attempt${bad ? ' bad' : ''}` },
        `attempt ${time(a.attempted_at)}: ${a.status_code || 'no response'} in ${a.latency_ms} ms${a.error ? ` — ${a.error}` : ''}`));
    }
    return item;
  }));

  const ladder = d.sip_ladder || [];
  $('ladder-empty').hidden = ladder.length > 0;
  const t0 = ladder.length ? Date.parse(ladder[0].at) : 0;
  $('ladder').tBodies[0].replaceChildren(...ladder.map((m) => el('tr', {},
    el('td', { class: 'muted' }, `+${Date.parse(m.at) - t0} ms`),
    el('td', { class: m.dir }, m.dir === 'out' ? 'Outdial →' : '← far end'),
    el('td', {}, m.msg),
    el('td', { class: 'muted' }, m.cseq || ''))));

  $('commands').replaceChildren(...d.commands.map((c) =>
    el('li', {}, `${time(c.created_at)} ${c.action}: ${c.state}${c.reason ? ` (${c.reason})` : ''}`)));
  $('recordings').replaceChildren(...(d.recordings.length ? d.recordings.map((r) =>
    el('li', {}, el('a', { href: r.href, download: `${r.id}` }, `${r.content_type}, ${Math.round(r.size / 1024)} kB, ${time(r.start_time)}`)))
    : [el('li', { class: 'muted' }, 'None')]));
}

async function command(action) {
  if (!selected) return;
  $('action-result').textContent = `${action}…`;
  const res = await api('POST', `/console/api/calls/${selected}`, { action });
  $('action-result').textContent = res.ok ? `${action} sent` : ((res.data && res.data.detail) || `${action} failed (${res.status})`);
  refreshDetailSoon();
}

// ---- Operators -------------------------------------------------------------------------------

async function loadOperator() {
  const res = await api('GET', '/console/api/operator');
  if (!res.ok) return;
  $('trunks').tBodies[0].replaceChildren(...res.data.trunks.map((t) => el('tr', { 'data-trunk': t.name },
    el('td', {}, t.name, t.enabled ? '' : ' (disabled)'),
    el('td', {}, t.account_id === null ? 'platform' : `account ${t.account_id}`),
    el('td', {}, `${t.transport}:${t.host}:${t.port}`),
    el('td', {}, t.live_calls),
    el('td', {}, t.cps.toFixed(1)),
    el('td', {}, `cps ${t.cps_limit ?? '∞'}, channels ${t.max_channels ?? '∞'}`),
    el('td', {}, ...(t.last_errors.length ? t.last_errors.map((e) => el('div', {}, `${time(e.at)} ${e.code ?? 'no answer'} ${e.reason || ''}`)) : ['—'])))));
  $('instances').tBodies[0].replaceChildren(...res.data.instances.map((i) => el('tr', { 'data-instance': i.id },
    el('td', {}, el('code', { title: i.id }, i.id.slice(0, 8)), i.stopped_at ? ' (stopped)' : ''),
    el('td', {}, `${i.hostname} pid ${i.pid}`),
    el('td', {}, i.roles),
    el('td', {}, `${(i.heartbeat_age_ms / 1000).toFixed(1)} s ago`),
    el('td', {}, i.live_legs),
    el('td', {}, ...i.legs.map((l) => el('div', {}, el('code', {}, l.uuid.slice(0, 8)), ` ${l.status} ${l.direction}${l.trunk ? ` via ${l.trunk}` : ''}`))))));
}

function showView(id) {
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === id);
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== id;
  clearInterval(operatorTimer);
  if (id === 'operator-view') {
    loadOperator();
    operatorTimer = setInterval(loadOperator, 5000);
  }
}

// ---- Start -----------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', async () => {
  $('sign-in-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('live-only').addEventListener('change', renderCalls);
  $('detail-close').addEventListener('click', () => { selected = null; $('detail').hidden = true; renderCalls(); });
  for (const action of ['hangup', 'mute', 'unmute']) $(action).addEventListener('click', () => command(action));
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showView(tab.dataset.view));
  // Durations of answered calls tick.
  setInterval(() => {
    for (const row of $('calls').tBodies[0].rows) {
      const call = calls.get(row.dataset.uuid);
      if (call && !ENDED.has(call.status)) row.querySelector('.duration').textContent = duration(call);
    }
  }, 1000);
  const me = await api('GET', '/console/api/session');
  if (me.ok) showConsole(me.data);
  else showSignIn();
});
