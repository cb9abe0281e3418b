// Odin Stream live console: an ordinary WebSocket client of the gateway's /ws (protocol in
// docs/protocol.md) plus a 1 s poll of the gateway's JSON /stats. Vanilla JS, no build step.
'use strict';

(function () {
  // Everything held in memory is bounded: the page may stay open for days on a busy stream.
  const MAX_ROWS = 500;          // event table rows (newest first); older rows are dropped
  const MAX_NOTICES = 50;        // messages panel
  const HISTORY = 60;            // sparkline points, one per second
  const DATA_CHARS = 180;        // compact data shown in a cell; the full text is in its title
  const TITLE_CHARS = 4000;
  const RENDER_MS = 100;         // table refresh batching: many events per DOM update
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const PING_EVERY_MS = 15000;
  const CHUNK = 200;             // channels per re-subscribe frame: stays far below WS_MAX_FRAME_BYTES
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
    ws: null,
    wantOpen: false,             // false after the user pressed Disconnect: no auto-reconnect
    attempt: 0,                  // consecutive failed connects, for the backoff
    reconnectAt: 0,
    reconnectTimer: null,
    countdownTimer: null,
    pingTimer: null,
    pingSentAt: 0,
    rttMs: null,
    user: null,                  // userId the gateway authenticated this connection as
    nextId: 1,
    // channel -> 'active' | 'pending'; what the page re-subscribes to after a reconnect.
    channels: new Map(),
    lastOffset: new Map(),       // channel -> last Kafka offset seen (offset recovery on reconnect)
    recoverUnsupported: false,   // the gateway refused the `recover` field once: stop sending it
    resubs: new Map(),           // id -> channels of a re-subscribe frame that carried `recover`
    rows: [],                    // newest first, at most MAX_ROWS
    incoming: [],                // received since the last render (bounded by MAX_ROWS too)
    renderTimer: null,
    paused: false,
    missedWhilePaused: 0,
    filter: '',
    received: 0,
    repeats: 0,                  // events at or below a channel's last offset (replays, duplicates)
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
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
  }

  function send(frame) {
    if (!isOpen()) {
      notice('not connected: ' + frame.type + ' not sent', 'err');
      return false;
    }
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function newId(prefix) {
    return prefix + (state.nextId++);
  }

  // ---- connection, auth, reconnect with backoff -------------------------------------------

  function defaultWsUrl() {
    const u = new URL('ws', window.location.href);
    u.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.search = '';
    u.hash = '';
    return u.toString();
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    state.wantOpen = true;
    state.resubs.clear();
    if (state.ws !== null) {
      const old = state.ws;
      state.ws = null;
      old.onclose = null;
      old.close(1000, 'reconnect');
    }
    let ws;
    try {
      ws = new WebSocket(el.wsUrl.value.trim());
    } catch (e) {
      notice('bad WebSocket URL: ' + e.message, 'err');
      setStatus('bad URL', 'bad');
      state.wantOpen = false;
      return;
    }
    state.ws = ws;
    setStatus(state.attempt > 0 ? 'reconnecting…' : 'connecting…', 'warn');
    ws.onopen = () => onOpen(ws);
    ws.onmessage = (ev) => onMessage(ev);
    ws.onclose = (ev) => onClose(ws, ev);
    // onerror carries no detail in browsers; onclose follows and says what happened.
    ws.onerror = () => {};
  }

  function onOpen(ws) {
    if (ws !== state.ws) return;
    const wasReconnect = state.attempt > 0 || state.channels.size > 0;
    state.attempt = 0;
    el.reconnectNote.hidden = true;
    setStatus('connected', 'ok');
    notice((wasReconnect ? 'reconnected to ' : 'connected to ') + el.wsUrl.value.trim(), 'ok');
    sendAuth(false);
    resubscribe();
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(ping, PING_EVERY_MS);
    updateButtons();
  }

  function sendAuth(explicit) {
    const token = el.jwt.value.trim();
    if (token.length === 0) {
      if (explicit) notice('the JWT field is empty', 'err');
      return;
    }
    if (send({ type: 'auth', id: newId('auth-'), token: token })) notice('JWT sent');
  }

  // After a reconnect: subscribe again to every channel the page held, asking the gateway to
  // replay what was missed after the last offset seen on each (ignored by gateways without
  // recovery; they simply resume live).
  function resubscribe() {
    const all = Array.from(state.channels.keys());
    if (all.length === 0) return;
    for (const c of all) state.channels.set(c, 'pending');
    for (let i = 0; i < all.length; i += CHUNK) {
      const part = all.slice(i, i + CHUNK);
      const frame = { type: 'subscribe', id: newId('resub-'), channels: part };
      const recover = {};
      let any = false;
      for (const c of part) {
        if (state.lastOffset.has(c)) {
          recover[c] = state.lastOffset.get(c);
          any = true;
        }
      }
      if (any && !state.recoverUnsupported) {
        frame.recover = recover;
        // Bounded by the channels held: one entry per in-flight re-subscribe frame.
        state.resubs.set(frame.id, part);
      }
      send(frame);
    }
    renderSubs();
  }

  function onClose(ws, ev) {
    if (ws !== state.ws) return;
    state.ws = null;
    clearInterval(state.pingTimer);
    state.rttMs = null;
    state.user = null;
    const why = 'code ' + ev.code + (ev.reason ? ' "' + ev.reason + '"' : '');
    if (!state.wantOpen) {
      setStatus('disconnected', 'idle');
      notice('disconnected (' + why + ')');
      updateButtons();
      return;
    }
    state.attempt += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempt - 1));
    // Jitter so that many consoles do not reconnect in lockstep after a gateway restart.
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    state.reconnectAt = Date.now() + delay;
    for (const c of state.channels.keys()) state.channels.set(c, 'pending');
    renderSubs();
    setStatus('connection lost', 'bad');
    notice('connection lost (' + why + '), reconnecting in ' + (delay / 1000).toFixed(1) + ' s', 'err');
    showCountdown(why);
    clearInterval(state.countdownTimer);
    state.countdownTimer = setInterval(() => showCountdown(why), 250);
    state.reconnectTimer = setTimeout(() => {
      clearInterval(state.countdownTimer);
      connect();
    }, delay);
    updateButtons();
  }

  function showCountdown(why) {
    const left = Math.max(0, state.reconnectAt - Date.now());
    el.reconnectNote.hidden = false;
    el.reconnectNote.textContent = 'Connection lost (' + why + '). Reconnecting in ' + (left / 1000).toFixed(1) +
      ' s (attempt ' + state.attempt + ')' + (state.lastOffset.size > 0 ? ', recovering from the last offsets seen.' : '.');
  }

  function disconnect() {
    state.wantOpen = false;
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    clearInterval(state.pingTimer);
    el.reconnectNote.hidden = true;
    state.attempt = 0;
    if (state.ws !== null) {
      state.ws.close(1000, 'closed by user');
    } else {
      setStatus('disconnected', 'idle');
    }
    updateButtons();
  }

  function ping() {
    state.pingSentAt = performance.now();
    send({ type: 'ping', id: newId('ping-') });
  }

  function updateButtons() {
    const open = isOpen();
    el.disconnect.disabled = state.ws === null && !state.wantOpen;
    el.sendAuth.disabled = !open;
    el.subscribe.disabled = !open;
    el.unsubscribe.disabled = !open;
  }

  // ---- frames from the gateway -----------------------------------------------------------

  function onMessage(ev) {
    if (typeof ev.data !== 'string') {
      notice('binary frame ignored', 'err');
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (e) {
      notice('unparsable frame from the gateway: ' + ev.data.slice(0, 120), 'err');
      return;
    }
    switch (msg.type) {
      case 'event': onEvent(msg); break;
      case 'subscribed': onSubscribed(msg); break;
      case 'unsubscribed': onUnsubscribed(msg); break;
      case 'authenticated':
        state.user = msg.userId ? String(msg.userId) : null;
        notice('authenticated as ' + (state.user || '?') +
          (typeof msg.expiresAt === 'number' ? ' until ' + new Date(msg.expiresAt).toLocaleString('en-GB') : ''), 'ok');
        setStatus(statusText(), 'ok');
        break;
      case 'pong':
        if (state.pingSentAt > 0) state.rttMs = performance.now() - state.pingSentAt;
        setStatus(statusText(), 'ok');
        break;
      case 'error':
        if (retryWithoutRecover(msg)) break;
        notice('error ' + (msg.code || '?') + (msg.id ? ' [' + msg.id + ']' : '') + ': ' + (msg.message || ''), 'err');
        break;
      default:
        notice('unknown frame type ' + JSON.stringify(msg.type), 'err');
    }
  }

  // A gateway without offset recovery refuses the unknown `recover` field; subscribe again
  // without it so the reconnect still resumes live, and say that missed events are lost.
  function retryWithoutRecover(msg) {
    const part = typeof msg.id === 'string' ? state.resubs.get(msg.id) : undefined;
    if (part === undefined) return false;
    state.resubs.delete(msg.id);
    if (msg.code !== 'bad_request' || !String(msg.message || '').includes('recover')) return false;
    state.recoverUnsupported = true;
    notice('this gateway has no offset recovery: resumed live, events during the outage are not replayed', 'err');
    send({ type: 'subscribe', id: newId('resub-'), channels: part });
    return true;
  }

  function onSubscribed(msg) {
    if (typeof msg.id === 'string') state.resubs.delete(msg.id);
    const chans = Array.isArray(msg.channels) ? msg.channels : [];
    for (const c of chans) state.channels.set(String(c), 'active');
    let text = 'subscribed' + (msg.id ? ' [' + msg.id + ']' : '') + ': ' + chans.length + ' channel' + (chans.length === 1 ? '' : 's');
    if (msg.recovery && typeof msg.recovery === 'object') {
      const parts = [];
      for (const [c, r] of Object.entries(msg.recovery)) {
        if (r && r.recovered) parts.push(c + ' +' + (r.replayed || 0));
        else parts.push(c + ' NOT recovered (refetch state)');
      }
      if (parts.length > 0) text += '; recovery: ' + parts.join(', ');
    }
    notice(text, 'ok');
    renderSubs();
  }

  function onUnsubscribed(msg) {
    const chans = Array.isArray(msg.channels) ? msg.channels : [];
    for (const c of chans) {
      state.channels.delete(String(c));
      state.lastOffset.delete(String(c));
    }
    notice('unsubscribed' + (msg.id ? ' [' + msg.id + ']' : '') + ': ' + chans.join(', '));
    renderSubs();
  }

  function onEvent(msg) {
    const channel = String(msg.channel || '');
    // Only channels held by name are tracked (they are what recovery can name); a wildcard
    // would make this map grow with every token on the stream.
    if (typeof msg.offset === 'number' && state.channels.has(channel)) {
      const last = state.lastOffset.get(channel);
      if (last !== undefined && msg.offset <= last) state.repeats += 1;
      else state.lastOffset.set(channel, msg.offset);
    }
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
      (state.repeats > 0 ? ' · ' + state.repeats + ' repeated offsets' : '');
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

  function formRequest(type) {
    const frame = { type: type, id: newId(type === 'subscribe' ? 'sub-' : 'unsub-') };
    const bundle = el.bundle.value;
    const tokens = splitList(el.tokens.value);
    const channels = splitList(el.channels.value);
    if (bundle !== '') {
      frame.bundle = bundle;
      frame.tokens = tokens;
    }
    if (channels.length > 0) frame.channels = channels;
    if (frame.bundle === undefined && frame.channels === undefined) {
      notice('choose a bundle with tokens, or give channels', 'err');
      return null;
    }
    return frame;
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
      b.addEventListener('click', () => send({ type: 'unsubscribe', id: newId('unsub-'), channels: [c] }));
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

    el.connForm.addEventListener('submit', (e) => {
      e.preventDefault();
      state.attempt = 0;
      connect();
    });
    el.disconnect.addEventListener('click', disconnect);
    el.sendAuth.addEventListener('click', () => sendAuth(true));
    el.subForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const f = formRequest('subscribe');
      if (f !== null && send(f)) notice('subscribe sent [' + f.id + ']');
    });
    el.unsubscribe.addEventListener('click', () => {
      const f = formRequest('unsubscribe');
      if (f !== null && send(f)) notice('unsubscribe sent [' + f.id + ']');
    });
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
})();
