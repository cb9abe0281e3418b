// Odin Stream live console: a client of the gateway's /ws (protocol in docs/protocol.md) plus
// a 1 s poll of the gateway's JSON /stats. The connection (reconnect with jittered backoff,
// re-subscription with offset recovery, token, liveness) is @odin-stream/client, whose
// browser build odin-client.js is embedded next to this file (generated from
// clients/typescript; do not edit it). No build step for this file.
import { OdinClient, expandSubscription } from './odin-client.js';

// Everything held in memory is bounded: the page may stay open for days on a busy stream.
const MAX_ROWS = 500;          // event table rows (newest first); older rows are dropped
const MAX_NOTICES = 50;        // messages panel
const HISTORY = 60;            // sparkline points, one per second
const DATA_CHARS = 180;        // compact data shown in a cell; the full text is in its title
const TITLE_CHARS = 4000;
const RENDER_MS = 100;         // table refresh batching: many events per DOM update
const PING_EVERY_MS = 15000;   // round-trip shown next to the status; also the client's heartbeat
const CATEGORIES = ['trade', 'liquidity', 'metadata', 'social', 'community', 'creation', 'analytics', 'balances'];

const $ = (id) => document.getElementById(id);
const el = {
  status: $('conn-status'), wsUrl: $('ws-url'), jwt: $('jwt'),
  connForm: $('conn-form'), connect: $('connect'), disconnect: $('disconnect'), sendAuth: $('send-auth'),
  reconnectNote: $('reconnect-note'),
  subForm: $('sub-form'), bundle: $('bundle'), tokens: $('tokens'), channels: $('channels'),
  subscribe: $('subscribe'), unsubscribe: $('unsubscribe'),
  subs: $('subs'), subsCount: $('subs-count'), notices: $('notices'),
  stKafka: $('st-kafka'), stConnections: $('st-connections'), stDeliveries: $('st-deliveries'),
  stDrops: $('st-drops'), stRecords: $('st-records'), stLag: $('st-lag'), statsAge: $('stats-age'),
  lagRows: $('lag-rows'), catRows: $('cat-rows'),
  sparkGw: $('spark-gw'), sparkPage: $('spark-page'), sparkMax: $('spark-max'),
  filter: $('filter'), pause: $('pause'), clear: $('clear'), pauseNote: $('pause-note'),
  rows: $('event-rows'), eventsCount: $('events-count'),
};

const state = {
  client: null,                // the OdinClient; it keeps the subscriptions and their offsets
  connectedOnce: false,        // the next `open` is a reconnect
  reconnectAt: 0,
  reconnectWhy: '',
  countdownTimer: null,
  pingTimer: null,
  rttMs: null,
  user: null,                  // userId the gateway authenticated this connection as
  // channel -> 'active' | 'pending', as the gateway confirmed them (shown as chips).
  channels: new Map(),
  rows: [],                    // newest first, at most MAX_ROWS
  incoming: [],                // received since the last render (bounded by MAX_ROWS too)
  renderTimer: null,
  paused: false,
  missedWhilePaused: 0,
  filter: '',
  received: 0,
  secCount: 0,
  catSec: new Map(),
  catRate: new Map(),
  catTotal: new Map(),
  pageHist: [],
  gwHist: [],
  lastStats: null,             // {at, deliveries, records} totals for rates when the server gives totals
  statsTimer: null,
};

// ---- small helpers -------------------------------------------------------------------

function splitList(s) {
  return s.split(/[\s,]+/).map((x) => x.trim()).filter((x) => x.length > 0);
}

function fmtTime(ms) {
  if (typeof ms !== 'number' || !isFinite(ms)) return '';
  const d = new Date(ms);
  const p = (n, w) => String(n).padStart(w, '0');
  return p(d.getHours(), 2) + ':' + p(d.getMinutes(), 2) + ':' + p(d.getSeconds(), 2) + '.' + p(d.getMilliseconds(), 3);
}

function fmtNum(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(1);
}

function category(channel) {
  const i = channel.lastIndexOf('.');
  return i >= 0 ? channel.slice(i + 1) : channel;
}

function notice(text, kind) {
  const li = document.createElement('li');
  li.textContent = fmtTime(Date.now()) + ' ' + text;
  if (kind) li.className = kind;
  el.notices.prepend(li);
  while (el.notices.children.length > MAX_NOTICES) el.notices.lastElementChild.remove();
}

function setStatus(text, kind) {
  el.status.textContent = text;
  el.status.className = 'badge badge-' + kind;
}

// "connected", then who the gateway says we are and the last ping's round trip.
function statusText() {
  let t = 'connected';
  if (state.user) t += ' as ' + state.user;
  if (state.rttMs !== null) t += ' · ' + Math.round(state.rttMs) + ' ms';
  return t;
}

function isOpen() {
  return state.client !== null && state.client.state === 'open';
}

// ---- connection: the library's state, as the page shows it ---------------------------------

function defaultWsUrl() {
  const u = new URL('ws', window.location.href);
  u.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.toString();
}

function validUrl(text) {
  try {
    const u = new URL(text);
    return u.protocol === 'ws:' || u.protocol === 'wss:' ? null : 'not a ws: or wss: URL';
  } catch (e) {
    return e.message;
  }
}

function makeClient() {
  const client = new OdinClient({
    // Read on every (re)connect: the field may be edited between attempts.
    url: () => el.wsUrl.value.trim(),
    // The JWT field; empty = anonymous. Sent as the first frame (never in the URL), so a bad
    // token leaves the page connected anonymously with an `unauthorized` notice.
    token: () => el.jwt.value.trim(),
    tokenTransport: 'frame',
    heartbeatMs: PING_EVERY_MS,
  });
  client.on('state', onState);
  client.on('event', onEvent);
  client.on('frame', onFrame);
  client.on('error', onError);
  client.on('stale', (s) => {
    // Recovery outcomes of named channels are in the `subscribed` notice already.
    if (s.reason === 'wildcard') notice(s.channel + ': a wildcard is not recovered, events during the outage are not replayed', 'err');
    else if (s.reason === 'gap') notice(s.channel + ': a gap that could not be recovered (refetch state)', 'err');
  });
  return client;
}

function connect() {
  const url = el.wsUrl.value.trim();
  const bad = validUrl(url);
  if (bad !== null) {
    notice('bad WebSocket URL: ' + bad, 'err');
    setStatus('bad URL', 'bad');
    return;
  }
  // A new connection keeps the subscriptions and recovers them from the last offsets seen.
  if (state.client.state !== 'closed') state.client.close();
  state.client.connect();
}

function disconnect() {
  state.client.close();
}

function onState(change) {
  const client = state.client;
  clearInterval(state.countdownTimer);
  if (change.state !== 'open') {
    clearInterval(state.pingTimer);
    state.rttMs = null;
    state.user = null;
    for (const c of state.channels.keys()) state.channels.set(c, 'pending');
    renderSubs();
  }
  switch (change.state) {
    case 'connecting':
      setStatus('connecting…', 'warn');
      break;
    case 'open':
      el.reconnectNote.hidden = true;
      setStatus('connected', 'ok');
      notice((state.connectedOnce ? 'reconnected to ' : 'connected to ') + client.url, 'ok');
      state.connectedOnce = true;
      clearInterval(state.pingTimer);
      state.pingTimer = setInterval(ping, PING_EVERY_MS);
      break;
    case 'reconnecting': {
      const why = change.code !== undefined
        ? 'code ' + change.code + (change.reason ? ' "' + change.reason + '"' : '')
        : (change.reason || 'no connection');
      const delay = change.delayMs || 0;
      state.reconnectAt = Date.now() + delay;
      state.reconnectWhy = why;
      setStatus(change.previous === 'open' ? 'connection lost' : 'reconnecting…', 'bad');
      notice((change.previous === 'open' ? 'connection lost' : 'no connection') + ' (' + why + '), reconnecting in ' +
        (delay / 1000).toFixed(1) + ' s', 'err');
      showCountdown(change.attempt || 0);
      state.countdownTimer = setInterval(() => showCountdown(change.attempt || 0), 250);
      break;
    }
    case 'closed':
      el.reconnectNote.hidden = true;
      setStatus('disconnected', 'idle');
      if (change.previous !== 'closed') notice('disconnected');
      break;
  }
  updateButtons();
}

function showCountdown(attempt) {
  const left = Math.max(0, state.reconnectAt - Date.now());
  el.reconnectNote.hidden = false;
  el.reconnectNote.textContent = 'Connection lost (' + state.reconnectWhy + '). Reconnecting in ' + (left / 1000).toFixed(1) +
    ' s (attempt ' + (attempt + 1) + ')' + (state.client.offsets.size > 0 ? ', recovering from the last offsets seen.' : '.');
}

function sendAuth() {
  if (el.jwt.value.trim().length === 0) {
    notice('the JWT field is empty', 'err');
    return;
  }
  state.client.authenticate().then((sent) => notice(sent ? 'JWT sent' : 'not connected: JWT not sent', sent ? '' : 'err'));
}

function ping() {
  state.client.ping().then((rtt) => {
    state.rttMs = rtt;
    if (isOpen()) setStatus(statusText(), 'ok');
  }, () => {});
}

function updateButtons() {
  const open = isOpen();
  el.disconnect.disabled = state.client === null || state.client.state === 'closed';
  el.sendAuth.disabled = !open;
  el.subscribe.disabled = !open;
  el.unsubscribe.disabled = !open;
}

// ---- frames from the gateway (after the library handled them) -------------------------------

function onFrame(msg) {
  switch (msg.type) {
    case 'subscribed': onSubscribed(msg); break;
    case 'unsubscribed': onUnsubscribed(msg); break;
    case 'authenticated':
      state.user = msg.userId ? String(msg.userId) : null;
      notice('authenticated as ' + (state.user || '?') +
        (typeof msg.expiresAt === 'number' ? ' until ' + new Date(msg.expiresAt).toLocaleString('en-GB') : ''), 'ok');
      setStatus(statusText(), 'ok');
      break;
    case 'gap':
      notice('gap on ' + msg.channel + ' from offset ' + msg.fromOffset + ': recovering it', 'err');
      break;
    case 'reconnect':
      notice('the gateway asked to reconnect' + (msg.reason ? ' (' + msg.reason + ')' : ''), 'err');
      break;
    case 'event': case 'events': case 'error': case 'pong': case 'heartbeat':
      break; // events: onEvent; errors: onError; pongs: ping()
    default:
      notice('unknown frame type ' + JSON.stringify(msg.type), 'err');
  }
}

// Gateway error frames, and the library's own (token, liveness). A socket that fails to
// open says nothing useful in browsers; the reconnect notice says what happened.
function onError(e) {
  if (e.code === 'transport' && /^socket error/.test(e.message)) return;
  notice('error ' + (e.code || '?') + (e.id ? ' [' + e.id + ']' : '') + ': ' + (e.message || ''), 'err');
}

function onSubscribed(msg) {
  const chans = Array.isArray(msg.channels) ? msg.channels : [];
  for (const c of chans) state.channels.set(String(c), 'active');
  let text = 'subscribed' + (msg.id ? ' [' + msg.id + ']' : '') + ': ' + chans.length + ' channel' + (chans.length === 1 ? '' : 's');
  if (msg.recovery && typeof msg.recovery === 'object') {
    const parts = [];
    for (const [c, r] of Object.entries(msg.recovery)) {
      if (r && r.recovered) parts.push(c + ' +' + (r.replayed || 0));
      else parts.push(c + ' NOT recovered' + (r && r.reason ? ' (' + r.reason + ')' : '') + ' (refetch state)');
    }
    if (parts.length > 0) text += '; recovery: ' + parts.join(', ');
  }
  notice(text, 'ok');
  renderSubs();
}

function onUnsubscribed(msg) {
  const chans = Array.isArray(msg.channels) ? msg.channels : [];
  for (const c of chans) state.channels.delete(String(c));
  notice('unsubscribed' + (msg.id ? ' [' + msg.id + ']' : '') + ': ' + chans.join(', '));
  renderSubs();
}

// Every event once, in channel order (the library drops replayed duplicates).
function onEvent(msg) {
  const channel = String(msg.channel || '');
  state.received += 1;
  state.secCount += 1;
  const cat = category(channel);
  state.catSec.set(cat, (state.catSec.get(cat) || 0) + 1);
  state.catTotal.set(cat, (state.catTotal.get(cat) || 0) + 1);

  // Serialising the data waits for the render: under a fast stream most events are
  // replaced by newer ones before they could be shown.
  state.incoming.push({
    channel: channel,
    event: String(msg.event || ''),
    timestamp: msg.timestamp,
    offset: typeof msg.offset === 'number' ? msg.offset : null,
    eventId: msg.eventId ? String(msg.eventId) : '',
    raw: msg.data,
  });
  // Trimmed in batches (cheap per event); more than a table's worth could never be shown.
  if (state.incoming.length > 2 * MAX_ROWS) state.incoming.splice(0, state.incoming.length - MAX_ROWS);
  if (state.renderTimer === null) state.renderTimer = setTimeout(flushRows, RENDER_MS);
}

// ---- the event table ---------------------------------------------------------------------

function matches(row) {
  return state.filter === '' || row.search.includes(state.filter);
}

function makeRow(row) {
  const tr = document.createElement('tr');
  tr.dataset.channel = row.channel;
  tr.dataset.event = row.event;
  if (row.eventId) tr.dataset.eventId = row.eventId;
  const cells = [
    fmtTime(row.timestamp),
    row.channel,
    row.event,
    row.offset === null ? '' : String(row.offset),
  ];
  for (let i = 0; i < cells.length; i++) {
    const td = document.createElement('td');
    td.textContent = cells[i];
    if (i === 3) td.className = 'num';
    tr.appendChild(td);
  }
  const td = document.createElement('td');
  td.className = 'data';
  td.textContent = row.data.length > DATA_CHARS ? row.data.slice(0, DATA_CHARS) + '…' : row.data;
  td.title = (row.eventId ? 'eventId ' + row.eventId + '\n' : '') + row.data.slice(0, TITLE_CHARS);
  tr.appendChild(td);
  return tr;
}

function flushRows() {
  state.renderTimer = null;
  const fresh = state.incoming.length > MAX_ROWS ? state.incoming.slice(-MAX_ROWS) : state.incoming;
  state.incoming = [];
  if (fresh.length === 0) return;
  for (const row of fresh) {
    let data = '';
    try {
      data = row.raw === undefined ? '' : JSON.stringify(row.raw);
    } catch (e) {
      data = String(row.raw);
    }
    row.data = data;
    row.raw = undefined;
    row.search = (row.channel + ' ' + row.event + ' ' + row.eventId + ' ' + data).toLowerCase();
  }
  // fresh is oldest first; the table is newest first.
  fresh.reverse();
  state.rows = fresh.concat(state.rows);
  if (state.rows.length > MAX_ROWS) state.rows.length = MAX_ROWS;
  if (state.paused) {
    state.missedWhilePaused += fresh.length;
    el.pauseNote.textContent = state.missedWhilePaused + ' new while paused';
    return;
  }
  const frag = document.createDocumentFragment();
  let added = 0;
  for (const row of fresh) {
    if (added >= MAX_ROWS) break;
    if (!matches(row)) continue;
    frag.appendChild(makeRow(row));
    added += 1;
  }
  el.rows.prepend(frag);
  while (el.rows.children.length > MAX_ROWS) el.rows.lastElementChild.remove();
  updateCount();
  // Totals follow the table; the per-second column changes on the second tick.
  renderCategories();
}

function rebuildRows() {
  const frag = document.createDocumentFragment();
  for (const row of state.rows) if (matches(row)) frag.appendChild(makeRow(row));
  el.rows.replaceChildren(frag);
  updateCount();
}

function updateCount() {
  el.eventsCount.textContent = el.rows.children.length + ' shown · ' + state.received + ' received' +
    (state.client !== null && state.client.stats.duplicates > 0
      ? ' · ' + state.client.stats.duplicates + ' repeated offsets dropped' : '');
}

function setPaused(paused) {
  state.paused = paused;
  el.pause.setAttribute('aria-pressed', String(paused));
  el.pause.textContent = paused ? 'Resume' : 'Pause';
  if (!paused) {
    state.missedWhilePaused = 0;
    el.pauseNote.textContent = '';
    rebuildRows();
  } else {
    el.pauseNote.textContent = 'paused';
  }
}

// ---- subscriptions form and list -----------------------------------------------------------

// The form as a subscription: a bundle over tokens, and/or explicit channels.
function formSpec() {
  const spec = {};
  const bundle = el.bundle.value;
  const tokens = splitList(el.tokens.value);
  const channels = splitList(el.channels.value);
  if (bundle !== '') {
    spec.bundle = bundle;
    spec.tokens = tokens;
  }
  if (channels.length > 0) spec.channels = channels;
  if (spec.bundle === undefined && spec.channels === undefined) {
    notice('choose a bundle with tokens, or give channels', 'err');
    return null;
  }
  return spec;
}

function subscribeForm() {
  const spec = formSpec();
  if (spec === null) return;
  let sub;
  try {
    sub = state.client.subscribe(spec);
  } catch (e) {
    notice('not subscribed: ' + e.message, 'err');
    return;
  }
  notice('subscribe sent: ' + sub.channels.join(', '));
  // A refusal comes as an error notice (onError); the library forgets that subscription.
  sub.ready.catch(() => {});
}

function unsubscribe(channels) {
  state.client.unsubscribe(channels);
  if (isOpen()) {
    notice('unsubscribe sent: ' + channels.join(', '));
  } else {
    // Nothing to tell the gateway: the channels are simply not re-subscribed.
    for (const c of channels) state.channels.delete(c);
    renderSubs();
  }
}

function unsubscribeForm() {
  const spec = formSpec();
  if (spec === null) return;
  let channels;
  try {
    channels = expandSubscription(spec);
  } catch (e) {
    notice('not unsubscribed: ' + e.message, 'err');
    return;
  }
  unsubscribe(channels);
}

function renderSubs() {
  const frag = document.createDocumentFragment();
  const names = Array.from(state.channels.keys()).sort();
  for (const c of names) {
    const li = document.createElement('li');
    if (state.channels.get(c) !== 'active') li.className = 'pending';
    const span = document.createElement('span');
    span.textContent = c;
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = '×';
    b.title = 'Unsubscribe ' + c;
    b.setAttribute('aria-label', 'Unsubscribe ' + c);
    b.addEventListener('click', () => unsubscribe([c]));
    li.append(span, b);
    frag.appendChild(li);
  }
  el.subs.replaceChildren(frag);
  el.subsCount.textContent = String(names.length);
}

// ---- rates, sparkline and gateway figures ---------------------------------------------------

function pushHist(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.splice(0, arr.length - HISTORY);
}

function tickSecond() {
  pushHist(state.pageHist, state.secCount);
  state.secCount = 0;
  state.catRate = state.catSec;
  state.catSec = new Map();
  renderCategories();
  renderSpark();
}

function renderCategories() {
  const frag = document.createDocumentFragment();
  const seen = new Set(CATEGORIES);
  const names = CATEGORIES.concat(Array.from(state.catTotal.keys()).filter((c) => !seen.has(c)));
  for (const c of names) {
    const tr = document.createElement('tr');
    const vals = [c, fmtNum(state.catRate.get(c) || 0), fmtNum(state.catTotal.get(c) || 0)];
    for (let i = 0; i < vals.length; i++) {
      const td = document.createElement('td');
      td.textContent = vals[i];
      if (i > 0) td.className = 'num';
      tr.appendChild(td);
    }
    frag.appendChild(tr);
  }
  el.catRows.replaceChildren(frag);
}

function points(arr, max) {
  const n = HISTORY - 1;
  const off = HISTORY - arr.length;
  return arr.map((v, i) => ((off + i) * 300 / n).toFixed(1) + ',' + (78 - (v / max) * 74).toFixed(1)).join(' ');
}

function renderSpark() {
  const max = Math.max(1, ...state.pageHist, ...state.gwHist);
  el.sparkPage.setAttribute('points', points(state.pageHist, max));
  el.sparkGw.setAttribute('points', points(state.gwHist, max));
  el.sparkMax.textContent = fmtNum(max);
}

function num(v) {
  return typeof v === 'number' && isFinite(v) ? v : null;
}

// The gateway's /stats; rates are taken from the server when given, else from its totals.
function renderStats(s, now) {
  const kafka = s.kafka || {};
  const connected = kafka.connected === true;
  el.stKafka.textContent = connected ? 'connected' : ('down' + (kafka.reason ? ': ' + kafka.reason : ''));
  el.stKafka.className = connected ? 'ok' : 'bad';
  el.stKafka.title = kafka.reason || '';
  el.stConnections.textContent = fmtNum(num(s.connections));

  let dps = num(s.deliveriesPerSec);
  let rps = num(s.recordsPerSec);
  const prev = state.lastStats;
  const cur = { at: now, deliveries: num(s.deliveriesTotal), records: num(s.recordsTotal) };
  if (prev !== null && now > prev.at) {
    const dt = (now - prev.at) / 1000;
    if (dps === null && cur.deliveries !== null && prev.deliveries !== null) dps = Math.max(0, cur.deliveries - prev.deliveries) / dt;
    if (rps === null && cur.records !== null && prev.records !== null) rps = Math.max(0, cur.records - prev.records) / dt;
  }
  state.lastStats = cur;
  el.stDeliveries.textContent = fmtNum(dps);
  el.stRecords.textContent = fmtNum(rps);
  if (dps !== null) pushHist(state.gwHist, dps);

  let drops = num(s.dropsTotal);
  if (drops === null && s.drops && typeof s.drops === 'object') {
    drops = Object.values(s.drops).reduce((a, b) => a + (num(b) || 0), 0);
  }
  el.stDrops.textContent = fmtNum(drops);
  if (s.drops && typeof s.drops === 'object') {
    el.stDrops.title = Object.entries(s.drops).map(([k, v]) => k + ': ' + v).join('\n');
  }

  const lag = s.lag && typeof s.lag === 'object' ? s.lag : {};
  const topics = Object.keys(lag).sort();
  let total = 0;
  const frag = document.createDocumentFragment();
  for (const t of topics) {
    const v = num(lag[t]) || 0;
    total += v;
    const li = document.createElement('li');
    const a = document.createElement('span');
    a.className = 'topic';
    a.textContent = t;
    const b = document.createElement('span');
    b.className = 'lag';
    b.textContent = fmtNum(v);
    li.append(a, b);
    frag.appendChild(li);
  }
  el.lagRows.replaceChildren(frag);
  el.stLag.textContent = topics.length > 0 ? fmtNum(total) : '–';
  el.statsAge.textContent = '· updated ' + fmtTime(now);
}

function statsUrl() {
  return new URL('stats', window.location.href).toString();
}

// One poll at a time: the next starts a second after the previous finished, so a slow
// gateway is never asked faster than it answers.
async function pollStats() {
  try {
    const res = await fetch(statsUrl(), { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (res.ok) {
      renderStats(await res.json(), Date.now());
    } else {
      el.statsAge.textContent = '· stats unavailable (HTTP ' + res.status + ')';
    }
  } catch (e) {
    el.statsAge.textContent = '· stats unavailable (' + e.message + ')';
  }
  state.statsTimer = setTimeout(pollStats, 1000);
}

// ---- wiring ---------------------------------------------------------------------------------

function typingIn(target) {
  const tag = target && target.tagName;
  return tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA' || (target && target.isContentEditable);
}

function init() {
  const params = new URLSearchParams(window.location.search);
  el.wsUrl.value = params.get('ws') || defaultWsUrl();
  if (params.has('bundle')) el.bundle.value = params.get('bundle');
  if (params.has('tokens')) el.tokens.value = params.get('tokens');
  if (params.has('channels')) el.channels.value = params.get('channels');
  state.client = makeClient();

  el.connForm.addEventListener('submit', (e) => {
    e.preventDefault();
    connect();
  });
  el.disconnect.addEventListener('click', disconnect);
  el.sendAuth.addEventListener('click', sendAuth);
  el.subForm.addEventListener('submit', (e) => {
    e.preventDefault();
    subscribeForm();
  });
  el.unsubscribe.addEventListener('click', unsubscribeForm);
  el.pause.addEventListener('click', () => setPaused(!state.paused));
  el.clear.addEventListener('click', () => {
    state.rows = [];
    state.incoming = [];
    el.rows.replaceChildren();
    updateCount();
  });
  let filterTimer = null;
  const applyFilter = () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      const f = el.filter.value.trim().toLowerCase();
      if (f === state.filter) return;
      state.filter = f;
      rebuildRows();
    }, 150);
  };
  // `input` while typing; `change` and `search` also cover clearing (the field's × button,
  // a programmatic clear) which fires no `input`.
  for (const ev of ['input', 'change', 'search']) el.filter.addEventListener(ev, applyFilter);
  el.filter.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      el.filter.value = '';
      state.filter = '';
      rebuildRows();
    }
  });
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typingIn(e.target)) return;
    if (e.key === '/') {
      e.preventDefault();
      el.filter.focus();
    } else if (e.key === 'p') {
      setPaused(!state.paused);
    } else if (e.key === 's') {
      e.preventDefault();
      el.tokens.focus();
    }
  });

  renderCategories();
  renderSubs();
  updateCount();
  updateButtons();
  setInterval(tickSecond, 1000);
  pollStats();
  if (params.get('autoconnect') !== '0') connect();
}

init();
