// nomaly live dashboard: plain JavaScript, no build step, no libraries.
//
// Security rules this file keeps: everything that comes from the API, the WebSocket or
// a file (dataset names, column and feature names, errors, URLs) reaches the page only
// through textContent, DOM properties or setAttribute on known-safe attributes; never
// innerHTML and friends, never eval. The API key lives in sessionStorage only and is
// never logged nor put in the page's URL.
'use strict';

(() => {
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const KEY_STORE = 'nomaly.apiKey';
  const MAX_BODY = 6 * 1024 * 1024;
  const MAX_FEED = 200;
  const MAX_RECENT = 10;
  const MAX_TASK_ROWS = 50;
  const DENSE_ROWS = 5000;
  const TASK_REFRESH_MS = 10000;
  const PING_MS = 5 * 60 * 1000;
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const STATUS_RANK = { queued: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };
  const FORBIDDEN_HEADERS = new Set([
    'accept-charset', 'accept-encoding', 'access-control-request-headers',
    'access-control-request-method', 'connection', 'content-length', 'cookie', 'cookie2',
    'date', 'dnt', 'expect', 'host', 'keep-alive', 'origin', 'referer', 'te', 'trailer',
    'transfer-encoding', 'upgrade', 'via',
  ]);

  // ---- small helpers ---------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** An HTML element; `attrs` are attributes (never `style`), `text` its text. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  /** An SVG element. */
  function s(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'style') continue; // the CSP forbids style attributes; use classes
      if (k === 'class') node.setAttribute('class', v);
      else if (k === 'text') node.textContent = String(v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => guard(fn)(...args), ms);
    };
  }

  /** Wraps an (async) handler so that no failure escapes: it goes to the banner. */
  function guard(fn) {
    return async (...args) => {
      try {
        return await fn(...args);
      } catch (e) {
        showError(messageOf(e));
        return undefined;
      }
    };
  }

  function messageOf(e) {
    if (!e) return 'unknown error';
    if (typeof e === 'string') return e;
    return e.message || String(e);
  }

  function randomId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  /** Milliseconds since the epoch from an RFC 3339 string or a number (s or ms). */
  function toMs(v) {
    if (v === null || v === undefined || v === '') return 0;
    if (typeof v === 'number') return v < 1e11 ? v * 1000 : v;
    const n = Date.parse(v);
    return Number.isFinite(n) ? n : 0;
  }

  const pad = (n) => String(n).padStart(2, '0');

  function fmtTime(ms) {
    if (!ms) return '—';
    const d = new Date(ms);
    const now = new Date();
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) return hms;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
  }

  function fmtNum(x, digits = 4) {
    if (x === null || x === undefined || x === '') return '—';
    const n = Number(x);
    if (!Number.isFinite(n)) return String(x);
    if (n === 0) return '0';
    const a = Math.abs(n);
    if (a >= 1e6 || a < 1e-3) return n.toExponential(2);
    if (Number.isInteger(n) && a < 1e6) return String(n);
    return String(Number(n.toPrecision(digits)));
  }

  const fmtInt = (n) => (Number.isFinite(Number(n)) ? Number(n).toLocaleString('en-US') : '—');

  function fmtBytes(n) {
    if (!Number.isFinite(n)) return '?';
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(2)} MB`;
  }

  function shortId(id) {
    if (!id) return '—';
    const t = String(id);
    return t.length > 14 ? `${t.slice(0, 4)}…${t.slice(-6)}` : t;
  }

  function parseList(text) {
    return String(text || '')
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x.length > 0);
  }

  // ---- configuration -----------------------------------------------------------------

  /**
   * API base and WebSocket URL: this page's origin, unless the site serving the page has a
   * `config.json` beside it (`{"api": "https://...", "ws": "wss://.../live"}`), as a hosted
   * copy does. Never from the page's URL: a link must not be able to choose where the key
   * is sent.
   */
  async function loadConfig() {
    const own = {
      apiBase: location.origin,
      wsUrl: `${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/ws`,
    };
    let file;
    try {
      const res = await fetch(new URL('config.json', document.baseURI), { cache: 'no-store', credentials: 'omit' });
      if (!res.ok) return own;
      file = await res.json();
    } catch (_) {
      return own;
    }
    const cfg = { ...own };
    try {
      if (file && typeof file.api === 'string' && file.api) {
        const u = new URL(file.api);
        if (u.protocol === 'https:' || u.protocol === 'http:') {
          cfg.apiBase = (u.origin + u.pathname).replace(/\/+$/, '');
          cfg.wsUrl = `${cfg.apiBase.replace(/^http/, 'ws')}/ws`;
        }
      }
      if (file && typeof file.ws === 'string' && file.ws) {
        const u = new URL(file.ws);
        if (u.protocol === 'wss:' || u.protocol === 'ws:') cfg.wsUrl = u.href;
      }
    } catch (_) {
      return own;
    }
    return cfg;
  }

  // Filled in by loadConfig() before the page is wired.
  const cfg = { apiBase: location.origin, wsUrl: '' };

  const state = {
    key: null,
    tasks: new Map(), // id -> task
    models: [],
    datasets: new Map(), // id -> dataset
    currentDatasetId: null,
    uploadFile: null,
    detectFile: null,
    detectFileIsUpload: true,
    preferredModel: null,
    trainTaskId: null,
    result: null, // the last detection shown
    selectedRow: null,
    recent: [],
    feedCount: 0,
    busy: { upload: false, train: false, detect: false },
    excludeAuto: true, // the train exclude field still holds what the page put there
  };

  // ---- error banner --------------------------------------------------------------------

  function showError(msg, level = 'error') {
    const banner = $('error');
    $('error-text').textContent = msg;
    banner.dataset.level = level;
    banner.hidden = false;
  }

  function clearNotice() {
    const banner = $('error');
    if (banner.dataset.level === 'warn') banner.hidden = true;
  }

  function hideError() {
    $('error').hidden = true;
  }

  // ---- HTTP ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, title, detail, type) {
      super(detail || title || `HTTP ${status}`);
      this.status = status;
      this.title = title;
      this.type = type;
    }
  }

  function retryAfterMs(res) {
    const v = res.headers.get('Retry-After');
    let secs = 1;
    if (v) {
      const n = Number(v);
      if (Number.isFinite(n)) secs = n;
      else {
        const at = Date.parse(v);
        if (Number.isFinite(at)) secs = (at - Date.now()) / 1000;
      }
    }
    return Math.min(Math.max(secs, 1), 60) * 1000 + Math.random() * 250;
  }

  async function problemOf(res) {
    let text = '';
    try {
      text = await res.text();
    } catch (_) {
      /* no body */
    }
    let p = null;
    try {
      p = text ? JSON.parse(text) : null;
    } catch (_) {
      p = null;
    }
    if (p && typeof p === 'object') {
      return new ApiError(res.status, p.title, p.detail || p.message, p.type);
    }
    return new ApiError(res.status, res.statusText, `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
  }

  /**
   * One API call with the key. JSON in (`json`) or a raw `body`; JSON out. 429s wait for
   * Retry-After and go again. Errors become ApiError with the problem's detail.
   */
  async function api(path, opts = {}) {
    if (!state.key) throw new ApiError(401, 'No key', 'paste an API key and connect first');
    const headers = new Headers(opts.headers || {});
    headers.set('Authorization', `Bearer ${state.key}`);
    let body = opts.body;
    if (opts.json !== undefined) {
      headers.set('Content-Type', 'application/json');
      body = JSON.stringify(opts.json);
    }
    for (let attempt = 0; ; attempt += 1) {
      let res;
      try {
        res = await fetch(cfg.apiBase + path, {
          method: opts.method || 'GET',
          headers,
          body,
          cache: 'no-store',
          credentials: 'omit',
          referrerPolicy: 'no-referrer',
        });
      } catch (e) {
        throw new ApiError(0, 'Network error', `could not reach ${cfg.apiBase} (${messageOf(e)})`);
      }
      if (res.status === 429 && attempt < 5) {
        const wait = retryAfterMs(res);
        showError(`Rate limited by the API; retrying in ${Math.ceil(wait / 1000)} s…`, 'warn');
        await sleep(wait);
        continue;
      }
      if (attempt > 0) clearNotice();
      if (!res.ok) throw await problemOf(res);
      let data = null;
      if (res.status !== 204) {
        const text = await res.text();
        if (text) {
          try {
            data = JSON.parse(text);
          } catch (_) {
            throw new ApiError(res.status, 'Bad response', `the API answered ${path} with something that is not JSON`);
          }
        }
      }
      return opts.withResponse ? { data, res } : data;
    }
  }

  const enc = encodeURIComponent;

  // ---- connection state ------------------------------------------------------------------

  const CONN_TEXT = {
    disconnected: 'not connected',
    connecting: 'connecting…',
    connected: 'connected · live',
    reconnecting: 'reconnecting…',
    offline: 'API only (no live feed)',
  };

  function setConn(st, detail) {
    const pill = $('conn-state');
    pill.dataset.state = st;
    pill.textContent = CONN_TEXT[st] || st;
    pill.title = detail || '';
  }

  // ---- WebSocket ----------------------------------------------------------------------------

  const live = {
    ws: null,
    wanted: false,
    failures: 0,
    reconnectTimer: null,
    pingTimer: null,
    lastEventId: null,
    seen: new Set(),
    seenOrder: [],
    subscribed: false,
  };

  function openSocket() {
    if (!state.key) return;
    live.wanted = true;
    clearTimeout(live.reconnectTimer);
    const sep = cfg.wsUrl.includes('?') ? '&' : '?';
    let ws;
    try {
      ws = new WebSocket(`${cfg.wsUrl}${sep}api_key=${enc(state.key)}`);
    } catch (e) {
      setConn('offline', messageOf(e));
      scheduleReconnect();
      return;
    }
    live.ws = ws;
    live.subscribed = false;
    setConn(live.failures > 0 ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      const msg = { action: 'subscribe', channel: 'tenant' };
      if (live.lastEventId) msg.after = live.lastEventId;
      ws.send(JSON.stringify(msg));
      clearInterval(live.pingTimer);
      live.pingTimer = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ action: 'ping' }));
      }, PING_MS);
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(typeof m.data === 'string' ? m.data : '');
      } catch (_) {
        return;
      }
      guard(onSocketMessage)(msg);
    };
    ws.onerror = () => {
      /* a close follows */
    };
    ws.onclose = () => {
      clearInterval(live.pingTimer);
      if (live.ws === ws) live.ws = null;
      live.subscribed = false;
      if (live.wanted && state.key) {
        live.failures += 1;
        setConn('reconnecting', 'the live connection closed; reconnecting with backoff');
        scheduleReconnect();
      } else {
        setConn('disconnected');
      }
    };
  }

  function scheduleReconnect() {
    clearTimeout(live.reconnectTimer);
    const n = Math.min(live.failures, 6);
    const delay = Math.min(30000, 1000 * 2 ** n) * (0.75 + Math.random() * 0.5);
    live.reconnectTimer = setTimeout(openSocket, delay);
  }

  function closeSocket() {
    live.wanted = false;
    clearTimeout(live.reconnectTimer);
    clearInterval(live.pingTimer);
    if (live.ws) {
      try {
        live.ws.close();
      } catch (_) {
        /* already closed */
      }
    }
    live.ws = null;
  }

  function onSocketMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'subscribed': {
        const wasReconnect = live.failures > 0;
        live.failures = 0;
        live.subscribed = true;
        setConn('connected', `subscribed to ${msg.channel || 'tenant'}`);
        if (wasReconnect) refreshAll();
        return;
      }
      case 'pong':
      case 'unsubscribed':
        return;
      case 'error': {
        const p = msg.error || {};
        showError(`Live connection: ${p.detail || p.title || 'error'}`);
        return;
      }
      default:
        if (msg.event_id && typeof msg.type === 'string') onEvent(msg);
    }
  }

  function onEvent(ev) {
    if (live.seen.has(ev.event_id)) return;
    live.seen.add(ev.event_id);
    live.seenOrder.push(ev.event_id);
    if (live.seenOrder.length > 5000) live.seen.delete(live.seenOrder.shift());
    if (!live.lastEventId || ev.event_id > live.lastEventId) live.lastEventId = ev.event_id;

    const p = ev.payload || {};
    const at = toMs(ev.at) || Date.now();
    switch (ev.type) {
      case 'task.progress':
        taskEvent(p.task_id, { kind: p.kind, progress: p.progress, attempt: p.attempt, at });
        break;
      case 'task.completed':
        taskEvent(p.task_id, { kind: p.kind, status: 'completed', result: p.model_id || p.result_url, at });
        if (p.kind === 'train') refreshModelsSoon();
        if (p.kind === 'profile') refreshDatasetsSoon();
        break;
      case 'task.failed':
        taskEvent(p.task_id, { kind: p.kind, status: 'failed', error: p.error, at });
        break;
      case 'task.cancelled':
        taskEvent(p.task_id, { kind: p.kind, status: 'cancelled', at });
        break;
      case 'dataset.profiled':
        datasetEvent(p);
        refreshDatasetsSoon();
        break;
      case 'anomaly.detected':
        matchRecent(ev);
        break;
      default:
        break;
    }
    addFeed(ev);
  }

  // ---- tasks -----------------------------------------------------------------------------

  const taskRows = new Map(); // id -> {tr, ...cells}
  const taskWaiters = new Map(); // id -> Set<fn>

  function normTask(t) {
    return {
      id: t.id,
      kind: t.kind || '?',
      status: t.status || 'queued',
      progress: t.status === 'completed' ? 100 : clampPct(t.progress),
      attempts: Number(t.attempts) || 0,
      created: toMs(t.created_at),
      updated: toMs(t.updated_at) || toMs(t.created_at),
      error: t.error || null,
      result: t.result || null,
    };
  }

  function clampPct(v) {
    const n = Math.round(Number(v));
    if (!Number.isFinite(n)) return 0;
    return Math.min(100, Math.max(0, n));
  }

  /** A task view from the API: newer facts win, progress never goes back within a try. */
  function mergeTask(t) {
    if (!t || !t.id) return null;
    const incoming = normTask(t);
    const cur = state.tasks.get(t.id);
    if (!cur) {
      state.tasks.set(t.id, incoming);
      taskChanged(t.id, true);
      return incoming;
    }
    const newer =
      incoming.updated > cur.updated ||
      (incoming.updated === cur.updated && STATUS_RANK[incoming.status] >= STATUS_RANK[cur.status]);
    const retried = incoming.attempts > cur.attempts;
    if (newer || retried) {
      cur.status = incoming.status;
      cur.updated = Math.max(cur.updated, incoming.updated);
    }
    if (cur.status === 'completed') cur.progress = 100;
    else if (retried) cur.progress = incoming.progress;
    else cur.progress = Math.max(cur.progress, incoming.progress);
    cur.attempts = Math.max(cur.attempts, incoming.attempts);
    if (incoming.created) cur.created = incoming.created;
    if (incoming.kind !== '?') cur.kind = incoming.kind;
    if (incoming.error) cur.error = incoming.error;
    if (incoming.result) cur.result = incoming.result;
    taskChanged(t.id, false);
    return cur;
  }

  /** A task event from the WebSocket. */
  function taskEvent(id, ev) {
    if (!id) return;
    let cur = state.tasks.get(id);
    const isNew = !cur;
    if (!cur) {
      cur = { id, kind: ev.kind || '?', status: 'queued', progress: 0, attempts: 0, created: ev.at, updated: 0, error: null, result: null };
      state.tasks.set(id, cur);
      refreshTasksSoon(); // learn the rest of it
    }
    if (ev.kind) cur.kind = ev.kind;
    if (ev.status) {
      cur.status = ev.status;
      if (ev.status === 'completed') cur.progress = 100;
      if (ev.error) cur.error = ev.error;
      if (ev.result) cur.result = ev.result;
    } else if (ev.progress !== undefined) {
      const attempt = Number(ev.attempt) || 0;
      if (attempt > cur.attempts) {
        // a new try starts over
        cur.attempts = attempt;
        cur.status = 'running';
        cur.progress = clampPct(ev.progress);
        cur.error = null;
      } else if (!TERMINAL.has(cur.status)) {
        cur.status = 'running';
        cur.progress = Math.max(cur.progress, clampPct(ev.progress));
      }
    }
    cur.updated = Math.max(cur.updated, ev.at || 0);
    taskChanged(id, isNew);
  }

  function taskChanged(id, isNew) {
    const t = state.tasks.get(id);
    if (!t) return;
    if (isNew || !taskRows.has(id)) renderTaskList();
    else updateTaskRow(t);
    const waiters = taskWaiters.get(id);
    if (waiters && TERMINAL.has(t.status)) {
      taskWaiters.delete(id);
      for (const fn of waiters) fn(t);
    }
    if (id === state.trainTaskId) trainProgress(t);
  }

  /** Resolves with the task once it is completed, failed or cancelled. */
  function waitTask(id) {
    return new Promise((resolve) => {
      const t = state.tasks.get(id);
      if (t && TERMINAL.has(t.status)) {
        resolve(t);
        return;
      }
      let done = false;
      let timer = null;
      const finish = (task) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(task);
      };
      if (!taskWaiters.has(id)) taskWaiters.set(id, new Set());
      taskWaiters.get(id).add(finish);
      // Fallback in case an event is missed: poll, slowly while the live feed is up.
      const poll = async () => {
        if (done) return;
        try {
          mergeTask(await api(`/v1/tasks/${enc(id)}`));
        } catch (e) {
          if (e.status === 404) {
            finish({ id, status: 'failed', error: messageOf(e) });
            return;
          }
        }
        if (!done) timer = setTimeout(poll, live.subscribed ? 3000 : 1000);
      };
      timer = setTimeout(poll, live.subscribed ? 3000 : 1000);
    });
  }

  function sortedTasks() {
    return Array.from(state.tasks.values())
      .sort((a, b) => (b.created || b.updated) - (a.created || a.updated) || (a.id < b.id ? 1 : -1))
      .slice(0, MAX_TASK_ROWS);
  }

  function renderTaskList() {
    const body = $('tasks-body');
    const list = sortedTasks();
    const keep = new Set(list.map((t) => t.id));
    for (const [id, row] of taskRows) {
      if (!keep.has(id)) {
        row.tr.remove();
        taskRows.delete(id);
      }
    }
    for (const t of list) {
      let row = taskRows.get(t.id);
      if (!row) {
        row = makeTaskRow(t);
        taskRows.set(t.id, row);
      }
      body.appendChild(row.tr); // moves it into order
      updateTaskRow(t);
    }
    $('tasks-empty').hidden = list.length > 0;
  }

  function makeTaskRow(t) {
    const tr = h('tr', { 'data-task-id': t.id });
    const kind = h('td', { class: 'kind', title: t.id });
    const status = h('span', { class: 'badge', 'data-testid': 'task-status' });
    const attempts = h('td', { class: 'num' });
    const fill = h('div', { class: 'progress-fill' });
    const bar = h(
      'div',
      {
        class: 'progress',
        role: 'progressbar',
        'aria-valuemin': '0',
        'aria-valuemax': '100',
        'aria-label': `progress of task ${t.id}`,
        'data-task-id': t.id,
        'data-testid': 'task-progress',
      },
      fill,
    );
    const pct = h('span', { class: 'progress-text' });
    const updated = h('td', { class: 'time' });
    const result = h('td', { class: 'result' });
    const cancel = h('button', { type: 'button', class: 'btn ghost small', 'data-action': 'cancel', 'data-task-id': t.id, text: 'Cancel' });
    tr.append(kind, h('td', null, status), attempts, h('td', { class: 'w-progress' }, h('div', { class: 'progress-cell' }, bar, pct)), updated, result, h('td', { class: 'act' }, cancel));
    return { tr, kind, status, attempts, bar, fill, pct, updated, result, cancel };
  }

  function updateTaskRow(t) {
    const row = taskRows.get(t.id);
    if (!row) return;
    row.tr.dataset.status = t.status;
    row.kind.textContent = `${t.kind} `;
    const idSpan = row.kind.querySelector('.id') || h('span', { class: 'id' });
    idSpan.textContent = shortId(t.id);
    row.kind.appendChild(idSpan);
    row.status.textContent = t.status;
    row.status.className = `badge st-${t.status}`;
    row.attempts.textContent = String(t.attempts || 0);
    const p = t.status === 'completed' ? 100 : t.progress;
    row.bar.setAttribute('aria-valuenow', String(p));
    row.bar.dataset.progress = String(p);
    row.bar.dataset.status = t.status;
    row.fill.style.width = `${p}%`;
    row.pct.textContent = `${p}%`;
    row.updated.textContent = fmtTime(t.updated || t.created);
    clear(row.result);
    if (t.status === 'failed' && t.error) {
      row.result.appendChild(h('span', { class: 'err', 'data-testid': 'task-error', title: String(t.error), text: String(t.error) }));
    } else if (t.result) {
      row.result.appendChild(h('code', { title: String(t.result), text: shortId(String(t.result)) }));
    }
    row.cancel.hidden = TERMINAL.has(t.status);
  }

  async function refreshTasks() {
    const data = await api('/v1/tasks?limit=100');
    for (const t of (data && data.items) || []) mergeTask(t);
    renderTaskList();
  }

  const refreshTasksSoon = debounce(refreshTasks, 400);

  async function cancelTask(id) {
    const t = await api(`/v1/tasks/${enc(id)}/cancel`, { method: 'POST' });
    mergeTask(t);
  }

  // ---- models ---------------------------------------------------------------------------

  async function refreshModels() {
    const data = await api('/v1/models?limit=100');
    state.models = ((data && data.items) || []).slice().sort((a, b) => toMs(b.created_at) - toMs(a.created_at));
    renderModels();
  }

  const refreshModelsSoon = debounce(refreshModels, 200);

  function modelById(id) {
    return state.models.find((m) => m.id === id) || null;
  }

  function modelLabel(m) {
    const tr = m.training || {};
    return `${m.algorithm} · ${(m.feature_names || []).length} features · ${fmtInt(tr.rows)} rows · ${shortId(m.id)}`;
  }

  function renderModels() {
    const body = $('models-body');
    clear(body);
    for (const m of state.models) {
      const tr = m.training || {};
      const row = h('tr', { 'data-model-id': m.id });
      const detectBtn = h('button', { type: 'button', class: 'btn small', 'data-action': 'use-model', 'data-model-id': m.id, text: 'Detect' });
      const reportBtn = h('button', { type: 'button', class: 'btn ghost small', 'data-action': 'report', 'data-model-id': m.id, 'data-testid': 'report-btn', text: 'Report' });
      row.append(
        h('td', { title: m.id, class: 'model-cell' }, h('span', { class: 'algo', text: m.algorithm }), ' ', h('span', { class: 'id', text: shortId(m.id) })),
        h('td', { class: 'num', title: (m.feature_names || []).join(', '), text: String((m.feature_names || []).length) }),
        h('td', { class: 'num', text: fmtInt(tr.rows) }),
        h('td', { class: 'num', text: fmtNum(tr.threshold) }),
        h('td', { class: 'time', text: fmtTime(toMs(m.created_at)) }),
        h('td', { class: 'act' }, detectBtn, reportBtn),
      );
      body.appendChild(row);
    }
    $('models-empty').hidden = state.models.length > 0;

    const select = $('detect-model');
    const previous = select.value;
    clear(select);
    for (const m of state.models) select.appendChild(h('option', { value: m.id, text: modelLabel(m) }));
    if (state.preferredModel && modelById(state.preferredModel)) {
      select.value = state.preferredModel;
      state.preferredModel = null;
    } else if (previous && modelById(previous)) select.value = previous;
    if (select.value !== previous) guard(prefillDetectExclude)();
    updateControls();
  }

  // ---- datasets and profile ---------------------------------------------------------------

  async function refreshDatasets() {
    const data = await api('/v1/datasets?limit=100');
    for (const d of (data && data.items) || []) {
      const cur = state.datasets.get(d.id);
      // keep a profile fetched earlier if the listing leaves it out
      state.datasets.set(d.id, cur && cur.profile && !d.profile ? { ...d, profile: cur.profile } : d);
    }
    renderDatasetSelect();
  }

  const refreshDatasetsSoon = debounce(refreshDatasets, 300);

  function renderDatasetSelect() {
    const select = $('train-dataset');
    const previous = select.value;
    const list = Array.from(state.datasets.values())
      .filter((d) => d.status === 'profiled')
      .sort((a, b) => toMs(b.created_at) - toMs(a.created_at));
    clear(select);
    for (const d of list) {
      const p = d.profile || {};
      const dims = p.rows !== undefined ? ` · ${fmtInt(p.rows)} × ${fmtInt(p.columns)}` : '';
      select.appendChild(h('option', { value: d.id, text: `${d.name || d.id}${dims} · ${shortId(d.id)}` }));
    }
    if (state.currentDatasetId && list.some((d) => d.id === state.currentDatasetId)) select.value = state.currentDatasetId;
    else if (previous && list.some((d) => d.id === previous)) select.value = previous;
    updateControls();
  }

  function datasetEvent(p) {
    if (!p || !p.dataset_id) return;
    const waiters = datasetWaiters.get(p.dataset_id);
    if (waiters) for (const fn of waiters) fn();
  }

  const datasetWaiters = new Map(); // id -> Set<fn> woken by dataset.profiled

  /** Resolves with the dataset once it is profiled or rejected. */
  function waitDataset(id) {
    return new Promise((resolve, reject) => {
      let done = false;
      let timer = null;
      const started = Date.now();
      const wake = () => {
        clearTimeout(timer);
        timer = setTimeout(check, 0);
      };
      if (!datasetWaiters.has(id)) datasetWaiters.set(id, new Set());
      datasetWaiters.get(id).add(wake);
      const stop = () => {
        done = true;
        clearTimeout(timer);
        const set = datasetWaiters.get(id);
        if (set) {
          set.delete(wake);
          if (set.size === 0) datasetWaiters.delete(id);
        }
      };
      const check = async () => {
        if (done) return;
        try {
          const d = await api(`/v1/datasets/${enc(id)}`);
          if (d && (d.status === 'profiled' || d.status === 'rejected')) {
            stop();
            resolve(d);
            return;
          }
        } catch (e) {
          stop();
          reject(e);
          return;
        }
        if (Date.now() - started > 15 * 60 * 1000) {
          stop();
          reject(new Error(`dataset ${id} was not profiled after 15 minutes`));
          return;
        }
        timer = setTimeout(check, Date.now() - started < 20000 ? 500 : 2000);
      };
      timer = setTimeout(check, 500);
    });
  }

  function showProfile(d) {
    const box = $('profile');
    const body = $('profile-body');
    const issues = $('profile-issues');
    clear(box);
    clear(body);
    clear(issues);
    const p = d && d.profile;
    if (!p) {
      box.removeAttribute('data-rows');
      box.removeAttribute('data-columns');
      $('profile-empty').hidden = false;
      return;
    }
    box.dataset.datasetId = d.id;
    box.dataset.rows = String(p.rows);
    box.dataset.columns = String(p.columns);
    box.append(
      chip('dataset', d.name || d.id),
      chip('rows', fmtInt(p.rows), 'profile-rows'),
      chip('columns', fmtInt(p.columns), 'profile-columns'),
      chip('usable', fmtInt((p.usable_columns || []).length)),
      chip('ragged rows', fmtInt(p.ragged_rows || 0)),
    );
    const usable = new Set(p.usable_columns || []);
    for (const c of p.column_profiles || []) {
      const notes = [];
      if (c.constant) notes.push('constant');
      if (c.duplicate_of) notes.push(`duplicate of ${c.duplicate_of}`);
      if (!usable.has(c.name)) notes.push('not usable');
      const distinct = c.distinct === undefined ? '—' : `${fmtInt(c.distinct)}${c.distinct_capped ? '+' : ''}`;
      body.appendChild(
        h(
          'tr',
          { 'data-column': c.name, class: usable.has(c.name) ? '' : 'unusable' },
          h('td', { class: 'colname', text: c.name }),
          h('td', null, h('span', { class: `type type-${c.type}`, text: c.type })),
          h('td', { class: `num${c.missing > 0 ? ' warn' : ''}`, text: fmtInt(c.missing) }),
          h('td', { class: 'num', text: distinct }),
          h('td', { class: 'num', text: fmtNum(c.min) }),
          h('td', { class: 'num', text: fmtNum(c.mean) }),
          h('td', { class: 'num', text: fmtNum(c.max) }),
          h('td', { class: 'num', text: fmtNum(c.std) }),
          h('td', { class: 'notes', text: notes.join(', ') }),
        ),
      );
    }
    for (const issue of p.issues || []) issues.appendChild(h('li', { text: String(issue) }));
    if ((p.issues || []).length === 0) issues.appendChild(h('li', { class: 'ok', text: 'No issues found.' }));
    $('profile-empty').hidden = true;
  }

  function chip(label, value, id) {
    return h('span', { class: 'chip', id }, h('span', { class: 'chip-label', text: label }), h('span', { class: 'chip-value', text: value }));
  }

  async function selectDataset(id) {
    if (!id) return;
    state.currentDatasetId = id;
    let d = state.datasets.get(id);
    if (!d || !d.profile) {
      d = await api(`/v1/datasets/${enc(id)}`);
      state.datasets.set(id, d);
    }
    showProfile(d);
    prefillTrainExclude(d);
  }

  function prefillTrainExclude(d) {
    const input = $('train-exclude');
    if (!state.excludeAuto && input.value.trim() !== '') return;
    const cols = ((d && d.profile && d.profile.column_profiles) || []).map((c) => c.name);
    const label = cols.find((c) => c.toLowerCase() === 'label');
    input.value = label || '';
    state.excludeAuto = true;
  }

  // ---- upload --------------------------------------------------------------------------

  function uploadHeaders(raw) {
    const out = [];
    const pairs = Array.isArray(raw) ? raw : Object.entries(raw || {});
    for (const pair of pairs) {
      if (!Array.isArray(pair) || pair.length < 2) continue;
      const name = String(pair[0]);
      const lower = name.toLowerCase();
      if (FORBIDDEN_HEADERS.has(lower) || lower.startsWith('proxy-') || lower.startsWith('sec-')) continue;
      out.push([name, String(pair[1])]);
    }
    return out;
  }

  const isLoopback = (host) => host === 'localhost' || host === '[::1]' || /^127\./.test(host);

  /** The presigned URL, resolved against the API; a loopback alias of the API's own host
   * (127.0.0.1 for localhost) is mapped onto the API's origin so the PUT stays same-origin. */
  function uploadUrl(raw) {
    const u = new URL(String(raw), `${cfg.apiBase}/`);
    const base = new URL(cfg.apiBase);
    if (u.origin !== base.origin && isLoopback(u.hostname) && isLoopback(base.hostname) && u.port === base.port && u.protocol === base.protocol) {
      u.host = base.host;
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('the upload URL is not http(s)');
    return u.href;
  }

  function putFile(url, method, headers, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method || 'PUT', url);
      for (const [k, v] of headers) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(Math.round((e.loaded / e.total) * 100));
      };
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          resolve();
          return;
        }
        let detail = `the upload was refused (HTTP ${xhr.status})`;
        try {
          const p = JSON.parse(xhr.responseText);
          if (p && (p.detail || p.title || p.message)) detail = p.detail || p.title || p.message;
        } catch (_) {
          /* S3 answers XML; keep the status */
        }
        reject(new ApiError(xhr.status, 'Upload failed', detail));
      };
      xhr.onerror = () => reject(new ApiError(0, 'Upload failed', 'the upload did not reach storage (network or CORS)'));
      xhr.send(file);
    });
  }

  async function uploadDataset() {
    const file = $('upload-file').files[0];
    if (!file) throw new Error('choose a CSV file first');
    const status = $('upload-status');
    state.busy.upload = true;
    updateControls();
    try {
      state.uploadFile = file;
      if (state.detectFileIsUpload || !state.detectFile) setDetectFile(file, true);
      status.dataset.state = 'registering';
      status.textContent = `Registering ${file.name} (${fmtBytes(file.size)})…`;
      const grant = await api('/v1/datasets', { method: 'POST', json: { name: file.name, size: file.size } });
      const ds = grant.dataset;
      state.datasets.set(ds.id, ds);
      status.dataset.datasetId = ds.id;
      status.dataset.state = 'uploading';
      status.textContent = `Uploading ${fmtBytes(file.size)}…`;
      const up = grant.upload || {};
      await putFile(uploadUrl(up.url), up.method, uploadHeaders(up.headers), file, (pct) => {
        status.textContent = `Uploading ${fmtBytes(file.size)}… ${pct}%`;
      });
      status.dataset.state = 'profiling';
      status.textContent = `Uploaded; profiling ${file.name}…`;
      const d = await waitDataset(ds.id);
      state.datasets.set(d.id, d);
      if (d.status === 'rejected') {
        status.dataset.state = 'rejected';
        status.textContent = `${file.name} was rejected.`;
        showProfile(d);
        throw new Error(`dataset ${file.name} was rejected: ${d.error || 'no reason given'}`);
      }
      status.dataset.state = 'profiled';
      const p = d.profile || {};
      status.textContent = `${file.name}: ${fmtInt(p.rows)} rows × ${fmtInt(p.columns)} columns profiled.`;
      state.currentDatasetId = d.id;
      state.excludeAuto = true;
      renderDatasetSelect();
      showProfile(d);
      prefillTrainExclude(d);
      $('train-status').textContent = 'Ready to train on the uploaded dataset.';
      refreshDatasetsSoon();
    } catch (e) {
      if (status.dataset.state !== 'rejected') {
        status.dataset.state = 'failed';
        status.textContent = `Upload failed: ${messageOf(e)}`;
      }
      throw e;
    } finally {
      state.busy.upload = false;
      updateControls();
    }
  }

  // ---- training ------------------------------------------------------------------------------

  async function train() {
    const datasetId = $('train-dataset').value;
    if (!datasetId) throw new Error('choose a profiled dataset first');
    const body = {
      algorithm: $('train-algorithm').value,
      dataset_id: datasetId,
      exclude_columns: parseList($('train-exclude').value),
    };
    const c = $('train-contamination').value.trim();
    if (c !== '') {
      const n = Number(c);
      if (!Number.isFinite(n) || n <= 0 || n >= 0.5) throw new Error('contamination must be a number between 0 and 0.5');
      body.contamination = n;
    }
    const params = $('train-params').value.trim();
    if (params !== '' && params !== '{}') {
      let parsed;
      try {
        parsed = JSON.parse(params);
      } catch (e) {
        throw new Error(`params is not valid JSON: ${messageOf(e)}`);
      }
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('params must be a JSON object');
      body.params = parsed;
    }
    const status = $('train-status');
    state.busy.train = true;
    updateControls();
    let r;
    try {
      status.textContent = `Submitting ${body.algorithm}…`;
      r = await api('/v1/models', { method: 'POST', json: body, headers: { 'Idempotency-Key': `dash-${randomId()}` } });
    } catch (e) {
      status.textContent = `Training not started: ${messageOf(e)}`;
      throw e;
    } finally {
      state.busy.train = false;
      updateControls();
    }
    const taskId = r.task && r.task.id;
    state.trainTaskId = taskId;
    state.preferredModel = r.model_id || null;
    status.dataset.taskId = taskId || '';
    status.dataset.modelId = r.model_id || '';
    status.dataset.state = 'running';
    status.textContent = `Training ${body.algorithm} (task ${shortId(taskId)})…`;
    if (r.task) mergeTask(r.task);
    if (!taskId) return;
    const t = await waitTask(taskId);
    if (t.status === 'completed') {
      await refreshModels();
      const m = modelById(r.model_id);
      status.dataset.state = 'completed';
      const tr = (m && m.training) || {};
      status.textContent = m
        ? `Model ${shortId(m.id)} trained on ${fmtInt(tr.rows)} rows: ${fmtInt(tr.anomalies)} anomalies, threshold ${fmtNum(tr.threshold)}.`
        : `Training completed (model ${shortId(r.model_id)}).`;
      if (m) {
        $('detect-model').value = m.id;
        await prefillDetectExclude();
      }
    } else {
      status.dataset.state = t.status;
      status.textContent = `Training ${t.status}${t.error ? `: ${t.error}` : ''}`;
      if (t.status === 'failed') throw new Error(`training failed: ${t.error || 'no reason given'}`);
    }
  }

  function trainProgress(t) {
    const status = $('train-status');
    if (!TERMINAL.has(t.status)) status.textContent = `Training (task ${shortId(t.id)}): ${t.status} · ${t.progress}%`;
  }

  // ---- detection ---------------------------------------------------------------------------

  function setDetectFile(file, isUpload) {
    state.detectFile = file;
    state.detectFileIsUpload = isUpload;
    const name = $('detect-file-name');
    name.textContent = file ? `${file.name} · ${fmtBytes(file.size)}${isUpload ? ' (uploaded file)' : ''}` : 'no file yet';
    name.classList.toggle('muted', !file);
    guard(prefillDetectExclude)();
    updateControls();
  }

  async function csvHeader(file) {
    const text = await file.slice(0, 65536).text();
    const line = text.split(/\r?\n/, 1)[0].replace(/^\uFEFF/, '');
    return line.split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1').replace(/""/g, '"'));
  }

  /** Columns of the file the selected model was not trained on. */
  async function prefillDetectExclude() {
    const m = modelById($('detect-model').value);
    const file = state.detectFile;
    const input = $('detect-exclude');
    if (!m || !file) return;
    const header = await csvHeader(file);
    const features = new Set(m.feature_names || []);
    if (features.size === 0 || !Array.from(features).every((f) => header.includes(f))) {
      input.dataset.auto = 'false';
      return; // positional features or another schema: leave it to the user
    }
    input.value = header.filter((c) => !features.has(c)).join(', ');
    input.dataset.auto = 'true';
  }

  async function detect() {
    const modelId = $('detect-model').value;
    const m = modelById(modelId);
    const file = state.detectFile;
    if (!modelId) throw new Error('choose a model first');
    if (!file) throw new Error('choose a CSV file first');
    if (file.size > MAX_BODY) {
      throw new Error(`${file.name} is ${fmtBytes(file.size)}; a detection request carries at most 6 MB. Split the file, or use a smaller sample.`);
    }
    const q = new URLSearchParams({ model_id: modelId });
    if ($('detect-explain').checked) q.set('explain', 'true');
    const exclude = parseList($('detect-exclude').value);
    if (exclude.length) q.set('exclude_columns', exclude.join(','));
    const status = $('detect-status');
    state.busy.detect = true;
    updateControls();
    const started = performance.now();
    try {
      status.dataset.state = 'running';
      status.textContent = `Scoring ${file.name} with ${m ? m.algorithm : 'the model'}…`;
      const { data, res } = await api(`/v1/detect?${q}`, {
        method: 'POST',
        body: file,
        headers: { 'Content-Type': 'text/csv' },
        withResponse: true,
      });
      let result = data;
      const correlation = res.headers.get('x-correlation-id');
      if (res.status === 202) {
        const taskId = data.task && data.task.id;
        mergeTask(data.task);
        status.textContent = `Large input: scoring in the background (task ${shortId(taskId)})…`;
        const t = await waitTask(taskId);
        if (t.status !== 'completed') throw new Error(`detection ${t.status}${t.error ? `: ${t.error}` : ''}`);
        result = await api(`/v1/tasks/${enc(taskId)}/result`);
      }
      status.dataset.state = 'completed';
      status.textContent = `Scored ${fmtInt(result.rows)} rows in ${Math.round(performance.now() - started)} ms: ${fmtInt(result.anomalies)} anomalies.`;
      showResult(result);
      addRecent(result, m, file, correlation);
    } catch (e) {
      status.dataset.state = 'failed';
      status.textContent = `Detection failed: ${messageOf(e)}`;
      throw e;
    } finally {
      state.busy.detect = false;
      updateControls();
    }
  }

  // ---- scores plot -------------------------------------------------------------------------

  const PLOT = { w: 900, h: 360, left: 58, right: 78, top: 18, bottom: 40 };

  function niceTicks(min, max, count) {
    if (!(max > min)) return [min];
    const raw = (max - min) / Math.max(1, count);
    const mag = 10 ** Math.floor(Math.log10(raw));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  }

  function showResult(r) {
    const scores = Array.isArray(r.scores) ? r.scores.map(Number) : [];
    const labels = Array.isArray(r.labels) ? r.labels : [];
    state.result = { ...r, scores, labels };
    state.selectedRow = null;
    renderSummary(state.result);
    drawPlot(state.result);
    renderAnomalyList(state.result);
    const anomalies = anomalyRows(state.result);
    if (anomalies.length) selectRow(anomalies[0]);
    else renderExplanation(null);
  }

  /** Anomalous rows, highest score first. */
  function anomalyRows(r) {
    const rows = [];
    for (let i = 0; i < r.scores.length; i += 1) if (Number(r.labels[i]) === 1) rows.push(i);
    rows.sort((a, b) => r.scores[b] - r.scores[a]);
    return rows;
  }

  function renderSummary(r) {
    const box = $('scores-summary');
    clear(box);
    const n = r.scores.length;
    const anomalies = Number(r.anomalies ?? anomalyRows(r).length);
    box.dataset.rows = String(n);
    box.dataset.anomalies = String(anomalies);
    box.append(
      chip('model', `${r.algorithm || '?'} ${shortId(r.model_id)}`),
      chip('rows', fmtInt(r.rows ?? n)),
      chip('anomalies', `${fmtInt(anomalies)} (${n ? ((anomalies / n) * 100).toFixed(1) : 0}%)`),
      chip('threshold', fmtNum(r.threshold)),
      chip('compute', `${fmtNum(r.compute_ms, 3)} ms`),
      chip('cached', r.cached ? 'yes' : 'no'),
    );
  }

  function drawPlot(r) {
    const svg = $('scores-plot');
    clear(svg);
    const { w, h: ht, left, right, top, bottom } = PLOT;
    const n = r.scores.length;
    const finite = r.scores.filter(Number.isFinite);
    const thr = Number(r.threshold);
    $('scores-empty').hidden = n > 0;
    svg.dataset.rows = String(n);
    if (n === 0) {
      svg.dataset.points = '0';
      svg.dataset.anomalies = '0';
      return;
    }
    let lo = Number.isFinite(thr) ? thr : Infinity;
    let hi = Number.isFinite(thr) ? thr : -Infinity;
    for (const v of finite) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
      lo = 0;
      hi = 1;
    }
    if (!(hi > lo)) {
      hi = lo + 1;
      lo -= 1;
    }
    const padY = (hi - lo) * 0.06;
    lo -= padY;
    hi += padY;
    const pw = w - left - right;
    const ph = ht - top - bottom;
    const X = (i) => left + (n === 1 ? pw / 2 : (i / (n - 1)) * pw);
    const Y = (v) => top + (1 - (v - lo) / (hi - lo)) * ph;
    const r2 = (v) => Math.round(v * 100) / 100;

    // grid and axes
    const grid = s('g', { class: 'grid-lines' });
    const axes = s('g', { class: 'axes' });
    for (const t of niceTicks(lo, hi, 5)) {
      const y = r2(Y(t));
      grid.appendChild(s('line', { x1: left, x2: w - right, y1: y, y2: y }));
      axes.appendChild(s('text', { x: left - 8, y: y + 4, class: 'tick y' }, fmtNum(t, 3)));
    }
    for (const t of niceTicks(0, n - 1, 6)) {
      if (!Number.isInteger(t)) continue;
      const x = r2(X(t));
      grid.appendChild(s('line', { x1: x, x2: x, y1: top, y2: top + ph, class: 'v' }));
      axes.appendChild(s('text', { x, y: top + ph + 18, class: 'tick x' }, fmtInt(t)));
    }
    axes.appendChild(s('line', { x1: left, x2: w - right, y1: top + ph, y2: top + ph, class: 'axis' }));
    axes.appendChild(s('line', { x1: left, x2: left, y1: top, y2: top + ph, class: 'axis' }));
    axes.appendChild(s('text', { x: left + pw / 2, y: ht - 4, class: 'axis-label' }, 'row'));
    axes.appendChild(s('text', { x: 14, y: top + ph / 2, class: 'axis-label', transform: `rotate(-90 14 ${top + ph / 2})` }, 'score'));
    svg.append(grid, axes);

    // points
    const normal = s('g', { class: 'normals' });
    const anomalous = s('g', { class: 'anomalies' });
    let points = 0;
    let marked = 0;
    const dense = n > DENSE_ROWS;
    if (dense) {
      // one polyline through the min and max of each pixel-wide bucket
      const buckets = Math.min(n, Math.round(pw * 2));
      const pts = [];
      for (let b = 0; b < buckets; b += 1) {
        const from = Math.floor((b * n) / buckets);
        const to = Math.max(from + 1, Math.floor(((b + 1) * n) / buckets));
        let mi = -1;
        let ma = -1;
        for (let i = from; i < to; i += 1) {
          const v = r.scores[i];
          if (!Number.isFinite(v) || Number(r.labels[i]) === 1) continue; // normal rows only
          if (mi < 0 || v < r.scores[mi]) mi = i;
          if (ma < 0 || v > r.scores[ma]) ma = i;
        }
        if (mi < 0) continue;
        for (const i of mi <= ma ? [mi, ma] : [ma, mi]) pts.push(`${r2(X(i))},${r2(Y(r.scores[i]))}`);
      }
      normal.appendChild(s('polyline', { points: pts.join(' '), class: 'series' }));
    }
    const focusable = n <= 2000;
    for (let i = 0; i < n; i += 1) {
      const v = r.scores[i];
      if (!Number.isFinite(v)) continue;
      const isAnomaly = Number(r.labels[i]) === 1;
      if (!isAnomaly && dense) continue;
      const c = s('circle', {
        cx: r2(X(i)),
        cy: r2(Y(v)),
        r: isAnomaly ? (dense ? 2.4 : 3.6) : 2.2,
        class: isAnomaly ? `pt anomaly${dense ? ' dense' : ''}` : 'pt',
        'data-row': i,
      });
      if (isAnomaly) {
        c.appendChild(s('title', null, `row ${i} · score ${fmtNum(v)}`));
        if (focusable) c.setAttribute('tabindex', '0');
        anomalous.appendChild(c);
        marked += 1;
      } else {
        normal.appendChild(c);
      }
      points += 1;
    }
    svg.append(normal);

    // threshold
    if (Number.isFinite(thr)) {
      const y = r2(Y(thr));
      svg.appendChild(s('line', { id: 'threshold-line', 'data-testid': 'threshold-line', class: 'threshold', x1: left, x2: w - right, y1: y, y2: y, 'data-threshold': thr }));
      const label = s('text', { x: w - right + 6, y: y - 3, class: 'threshold-label' });
      label.appendChild(s('tspan', { x: w - right + 6 }, 'threshold'));
      label.appendChild(s('tspan', { x: w - right + 6, dy: 13 }, fmtNum(thr)));
      svg.appendChild(label);
    }
    svg.append(anomalous);
    svg.appendChild(s('g', { id: 'selection', class: 'selection' }));
    svg.dataset.points = String(points);
    svg.dataset.anomalies = String(marked);
    svg.dataset.dense = dense ? 'true' : 'false';
    svg.setAttribute('aria-label', `Anomaly scores of ${n} rows, ${marked} anomalies above the threshold ${fmtNum(thr)}`);
  }

  function drawSelection(row) {
    const g = $('selection');
    if (!g) return;
    clear(g);
    const svg = $('scores-plot');
    for (const c of svg.querySelectorAll('circle.selected')) c.classList.remove('selected');
    if (row === null) return;
    const c = svg.querySelector(`circle[data-row="${row}"]`);
    if (!c) return;
    c.classList.add('selected');
    const cx = c.getAttribute('cx');
    const cy = c.getAttribute('cy');
    g.appendChild(s('line', { x1: cx, x2: cx, y1: PLOT.top, y2: PLOT.h - PLOT.bottom, class: 'crosshair' }));
    g.appendChild(s('circle', { cx, cy, r: 8, class: 'ring' }));
  }

  function renderAnomalyList(r) {
    const list = $('anomaly-list');
    clear(list);
    const rows = anomalyRows(r).slice(0, 10);
    for (const i of rows) {
      const top = (r.explanations && r.explanations[i] && r.explanations[i][0]) || null;
      list.appendChild(
        h(
          'li',
          null,
          h(
            'button',
            { type: 'button', class: 'anomaly-item', 'data-row': i, 'data-testid': 'anomaly-item' },
            h('span', { class: 'row-no', text: `row ${i}` }),
            h('span', { class: 'score', text: fmtNum(r.scores[i]) }),
            h('span', { class: 'top-feature', text: top ? `${top.feature}` : '' }),
          ),
        ),
      );
    }
    if (rows.length === 0) list.appendChild(h('li', { class: 'muted', text: 'No anomalies in this result.' }));
  }

  function selectRow(row) {
    const r = state.result;
    if (!r || !Number.isInteger(row) || row < 0 || row >= r.scores.length) return;
    state.selectedRow = row;
    drawSelection(row);
    for (const b of $('anomaly-list').querySelectorAll('button[data-row]')) b.classList.toggle('active', Number(b.dataset.row) === row);
    renderExplanation(row);
  }

  function renderExplanation(row) {
    const chart = $('explain-chart');
    const title = $('explain-title');
    const method = $('explain-method');
    clear(chart);
    method.textContent = '';
    const r = state.result;
    if (row === null || !r) {
      chart.removeAttribute('data-row');
      chart.dataset.features = '0';
      title.textContent = r ? 'No anomaly to explain in this result.' : 'Select an anomaly in the plot or in the list below.';
      return;
    }
    chart.dataset.row = String(row);
    const isAnomaly = Number(r.labels[row]) === 1;
    title.textContent = '';
    title.append(
      h('strong', { text: `Row ${row}` }),
      ` · score ${fmtNum(r.scores[row])} vs threshold ${fmtNum(r.threshold)} · `,
      h('span', { class: isAnomaly ? 'tag anomaly' : 'tag normal', text: isAnomaly ? 'anomaly' : 'normal' }),
    );
    const items = (r.explanations && Array.isArray(r.explanations[row]) && r.explanations[row]) || [];
    chart.dataset.features = String(items.length);
    if (items.length === 0) {
      chart.appendChild(h('p', { class: 'muted', text: r.explanations ? 'No explanation for this row.' : 'This result has no explanations: run the detection with “Explain each row”.' }));
      return;
    }
    const max = Math.max(...items.map((x) => Math.abs(Number(x.contribution)) || 0), 1e-12);
    for (const item of items) {
      const v = Number(item.contribution);
      const fill = h('div', { class: `bar-fill${v < 0 ? ' neg' : ''}` });
      fill.style.width = `${Math.max(1.5, (Math.abs(v) / max) * 100).toFixed(1)}%`;
      chart.appendChild(
        h(
          'div',
          { class: 'bar-row', 'data-testid': 'explain-bar', 'data-feature': String(item.feature), 'data-value': String(v) },
          h('span', { class: 'bar-label', title: String(item.feature), text: String(item.feature) }),
          h('div', { class: 'bar-track' }, fill),
          h('span', { class: 'bar-value', text: fmtNum(v, 3) }),
        ),
      );
    }
    method.textContent = r.explanation_method ? `Method: ${r.explanation_method}` : '';
  }

  // ---- live feed and recent detections -------------------------------------------------------

  function feedSummary(ev) {
    const p = ev.payload || {};
    switch (ev.type) {
      case 'anomaly.detected':
        return [
          `${fmtInt(p.anomalies)} / ${fmtInt(p.rows_scored)} rows anomalous`,
          `max ${fmtNum(p.max_score)} · threshold ${fmtNum(p.threshold)} · ${p.algorithm || ''} ${shortId(p.model_id)}`,
        ];
      case 'task.progress':
        return [`${p.kind || 'task'} ${shortId(p.task_id)} · ${clampPct(p.progress)}%${p.attempt ? ` (try ${p.attempt})` : ''}`];
      case 'task.completed': {
        if (p.kind === 'train') return [`train ${shortId(p.task_id)} completed → ${p.algorithm || 'model'} ${shortId(p.model_id)}`];
        if (p.kind === 'detect') return [`detect ${shortId(p.task_id)} completed: ${fmtInt(p.anomalies)} anomalies in ${fmtInt(p.rows)} rows`];
        return [`${p.kind || 'task'} ${shortId(p.task_id)} completed`];
      }
      case 'task.failed':
        return [`${p.kind || 'task'} ${shortId(p.task_id)} failed: ${p.error || 'no reason given'}`];
      case 'task.cancelled':
        return [`${p.kind || 'task'} ${shortId(p.task_id)} cancelled`];
      case 'dataset.profiled':
        return p.status === 'rejected'
          ? [`dataset ${shortId(p.dataset_id)} rejected: ${p.error || ''}`]
          : [`dataset ${shortId(p.dataset_id)} profiled: ${fmtInt(p.rows)} rows × ${fmtInt(p.columns)} columns`];
      default:
        return [ev.type];
    }
  }

  function addFeed(ev) {
    const feed = $('feed');
    const p = ev.payload || {};
    const at = toMs(ev.at) || Date.now();
    // successive progress of one task share an entry
    const first = feed.firstElementChild;
    if (ev.type === 'task.progress' && first && first.dataset.type === 'task.progress' && first.dataset.taskId === String(p.task_id)) {
      first.querySelector('.feed-text').textContent = feedSummary(ev)[0];
      first.querySelector('.feed-time').textContent = fmtTime(at);
      first.dataset.eventId = ev.event_id;
      return;
    }
    const lines = feedSummary(ev);
    const prominent = ev.type === 'anomaly.detected';
    const kindClass = ev.type.replace(/[^a-z]/g, '-');
    const li = h(
      'li',
      { class: `feed-item ev-${kindClass}${prominent ? ' prominent' : ''}`, 'data-type': ev.type, 'data-event-id': ev.event_id, 'data-task-id': p.task_id || undefined, 'data-correlation': ev.correlation_id || undefined, 'data-testid': 'feed-item' },
      h('div', { class: 'feed-head' }, h('span', { class: 'feed-type', text: ev.type }), h('span', { class: 'feed-time', text: fmtTime(at) })),
      h('div', { class: 'feed-text', text: lines[0] }),
      lines[1] ? h('div', { class: 'feed-sub', text: lines[1] }) : null,
    );
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > MAX_FEED) feed.removeChild(feed.lastChild);
    state.feedCount += 1;
    $('feed-empty').hidden = true;
    const count = $('feed-count');
    count.textContent = `${fmtInt(state.feedCount)} event${state.feedCount === 1 ? '' : 's'}`;
    count.dataset.count = String(state.feedCount);
  }

  function addRecent(r, m, file, correlation) {
    state.recent.unshift({
      at: Date.now(),
      model: r.model_id,
      algorithm: r.algorithm || (m && m.algorithm) || '?',
      rows: r.rows ?? r.scores.length,
      anomalies: r.anomalies,
      ms: r.compute_ms,
      cached: !!r.cached,
      file: file.name,
      correlation,
      event: false,
    });
    state.recent = state.recent.slice(0, MAX_RECENT);
    // the event may have come before the answer
    for (const li of $('feed').querySelectorAll('li[data-type="anomaly.detected"]')) {
      if (correlation && li.dataset.correlation === correlation) state.recent[0].event = true;
    }
    renderRecent();
  }

  function matchRecent(ev) {
    const hit = state.recent.find((x) => x.correlation && x.correlation === ev.correlation_id);
    if (hit) {
      hit.event = true;
      renderRecent();
    }
  }

  function renderRecent() {
    const list = $('recent-detections');
    clear(list);
    for (const x of state.recent) {
      list.appendChild(
        h(
          'li',
          { 'data-testid': 'recent-detection', 'data-model-id': x.model },
          h('div', { class: 'recent-head' }, h('span', { class: 'recent-time', text: fmtTime(x.at) }), h('span', { class: 'algo', text: x.algorithm }), h('span', { class: 'id', text: shortId(x.model) })),
          h(
            'div',
            { class: 'recent-body' },
            h('span', { class: x.anomalies > 0 ? 'count hot' : 'count', text: `${fmtInt(x.anomalies)} anomalies` }),
            ` in ${fmtInt(x.rows)} rows · ${fmtNum(x.ms, 3)} ms${x.cached ? ' · cached' : ''}`,
            x.event ? h('span', { class: 'tick-ok', title: 'the anomaly.detected event arrived', text: ' · live ✓' }) : null,
          ),
          h('div', { class: 'recent-file', text: x.file }),
        ),
      );
    }
    $('recent-empty').hidden = state.recent.length > 0;
  }

  // ---- reports ---------------------------------------------------------------------------

  function safeHttpUrl(raw) {
    const u = new URL(String(raw), `${cfg.apiBase}/`);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('the report URL is not http(s)');
    return u.href;
  }

  async function report(modelId, button) {
    const m = modelById(modelId);
    const datasetId = $('train-dataset').value || state.currentDatasetId;
    const status = $('report-status');
    if (!datasetId) throw new Error('a report needs a dataset: upload or choose one in “Train a model” first');
    const ds = state.datasets.get(datasetId);
    let exclude = parseList($('train-exclude').value);
    const cols = ((ds && ds.profile && ds.profile.column_profiles) || []).map((c) => c.name);
    if (m && cols.length && (m.feature_names || []).every((f) => cols.includes(f))) {
      exclude = cols.filter((c) => !(m.feature_names || []).includes(c));
    }
    button.disabled = true;
    clear(status);
    status.textContent = `Building a report of ${shortId(modelId)} on ${ds ? ds.name : shortId(datasetId)}…`;
    try {
      const r = await api(`/v1/models/${enc(modelId)}/reports`, { method: 'POST', json: { dataset_id: datasetId, exclude_columns: exclude } });
      const taskId = r.task && r.task.id;
      if (r.task) mergeTask(r.task);
      const t = await waitTask(taskId);
      if (t.status !== 'completed') throw new Error(`the report task ${t.status}${t.error ? `: ${t.error}` : ''}`);
      const link = await api(`/v1/tasks/${enc(taskId)}/report`);
      const url = safeHttpUrl(link.url);
      window.open(url, '_blank', 'noopener');
      clear(status);
      status.append(
        'Report ready: ',
        h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: 'open the report' }),
        link.expires_at ? ` (link valid until ${fmtTime(toMs(link.expires_at))})` : '',
      );
    } catch (e) {
      status.textContent = `Report failed: ${messageOf(e)}`;
      throw e;
    } finally {
      button.disabled = false;
    }
  }

  // ---- connect / controls ----------------------------------------------------------------

  function updateControls() {
    const k = !!state.key;
    $('upload-btn').disabled = !k || state.busy.upload || !$('upload-file').files.length;
    $('train-btn').disabled = !k || state.busy.train || !$('train-dataset').value;
    $('detect-btn').disabled = !k || state.busy.detect || !$('detect-model').value || !state.detectFile;
  }

  async function refreshAll() {
    const results = await Promise.allSettled([refreshModels(), refreshTasks(), refreshDatasets()]);
    const failed = results.find((x) => x.status === 'rejected');
    if (failed) showError(messageOf(failed.reason));
  }

  async function connect(key) {
    const clean = String(key || '').trim();
    if (!clean) throw new Error('paste an API key first');
    closeSocket();
    if (state.key !== clean && (state.key || state.tasks.size || state.models.length)) resetData();
    live.failures = 0;
    state.key = clean;
    setConn('connecting');
    try {
      await refreshModels();
    } catch (e) {
      state.key = null;
      setConn('disconnected');
      if (e.status === 401 || e.status === 403) {
        sessionStorage.removeItem(KEY_STORE);
        throw new Error(`The key was refused: ${messageOf(e)}`);
      }
      throw e;
    }
    sessionStorage.setItem(KEY_STORE, clean);
    hideError();
    const input = $('api-key');
    input.value = '';
    input.placeholder = 'key stored for this tab';
    $('forget').hidden = false;
    $('connect').textContent = 'Reconnect';
    updateControls();
    await Promise.allSettled([refreshTasks(), refreshDatasets()]).then((rs) => {
      const failed = rs.find((x) => x.status === 'rejected');
      if (failed) showError(messageOf(failed.reason));
    });
    openSocket();
  }

  /** Forgets everything shown for the previous key (another key may be another tenant). */
  function resetData() {
    state.tasks.clear();
    for (const row of taskRows.values()) row.tr.remove();
    taskRows.clear();
    renderTaskList();
    state.models = [];
    renderModels();
    state.datasets.clear();
    state.currentDatasetId = null;
    renderDatasetSelect();
    showProfile(null);
    state.result = null;
    state.selectedRow = null;
    clear($('scores-plot'));
    clear($('scores-summary'));
    clear($('anomaly-list'));
    $('scores-empty').hidden = false;
    renderExplanation(null);
    state.recent = [];
    renderRecent();
    clear($('feed'));
    state.feedCount = 0;
    $('feed-count').textContent = '0 events';
    $('feed-empty').hidden = false;
    live.lastEventId = null;
    live.seen.clear();
    live.seenOrder = [];
  }

  function forget() {
    closeSocket();
    resetData();
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    $('api-key').placeholder = 'Paste API key (nmk_…)';
    $('forget').hidden = true;
    $('connect').textContent = 'Connect';
    setConn('disconnected');
    updateControls();
  }

  function wire() {
    $('api-base').textContent = cfg.apiBase;
    $('key-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const typed = $('api-key').value;
      guard(connect)(typed || state.key || sessionStorage.getItem(KEY_STORE));
    });
    $('forget').addEventListener('click', forget);
    $('error-close').addEventListener('click', hideError);
    $('upload-file').addEventListener('change', () => {
      const f = $('upload-file').files[0];
      $('upload-status').textContent = f ? `${f.name} · ${fmtBytes(f.size)} — ready to upload.` : 'Choose a CSV file.';
      updateControls();
    });
    $('upload-btn').addEventListener('click', guard(uploadDataset));
    $('train-dataset').addEventListener('change', guard(() => selectDataset($('train-dataset').value)));
    $('train-exclude').addEventListener('input', () => {
      state.excludeAuto = false;
    });
    $('train-btn').addEventListener('click', guard(train));
    $('detect-model').addEventListener('change', guard(prefillDetectExclude));
    $('detect-file').addEventListener('change', () => {
      const f = $('detect-file').files[0];
      if (f) setDetectFile(f, false);
    });
    $('detect-btn').addEventListener('click', guard(detect));
    $('tasks-refresh').addEventListener('click', guard(refreshTasks));
    $('models-refresh').addEventListener('click', guard(refreshModels));
    $('tasks-body').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action="cancel"]');
      if (b) guard(cancelTask)(b.dataset.taskId);
    });
    $('models-body').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action]');
      if (!b) return;
      const id = b.dataset.modelId;
      if (b.dataset.action === 'use-model') {
        $('detect-model').value = id;
        guard(prefillDetectExclude)();
        updateControls();
        $('detect-card').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
      } else if (b.dataset.action === 'report') {
        guard(report)(id, b);
      }
    });
    const plot = $('scores-plot');
    plot.addEventListener('click', (e) => {
      const c = e.target.closest('circle[data-row]');
      if (c) selectRow(Number(c.dataset.row));
    });
    plot.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      const c = e.target.closest('circle[data-row]');
      if (c) {
        e.preventDefault();
        selectRow(Number(c.dataset.row));
      }
    });
    $('anomaly-list').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-row]');
      if (b) selectRow(Number(b.dataset.row));
    });
    window.addEventListener('error', (e) => showError(`Unexpected error: ${e.message || 'see the console'}`));
    window.addEventListener('unhandledrejection', (e) => {
      e.preventDefault();
      showError(`Unexpected error: ${messageOf(e.reason)}`);
    });
    setInterval(() => {
      if (state.key && document.visibilityState !== 'hidden') guard(refreshTasks)();
    }, TASK_REFRESH_MS);
    document.addEventListener('visibilitychange', () => {
      if (state.key && document.visibilityState === 'visible' && !live.ws && live.wanted) openSocket();
    });

    // version, and the key of this tab if there is one
    fetch(`${cfg.apiBase}/healthz`, { cache: 'no-store', credentials: 'omit' })
      .then((r) => (r.ok ? r.json() : null))
      .then((j) => {
        if (j && j.version) $('version').textContent = `API ${j.version}`;
      })
      .catch(() => {
        $('version').textContent = 'API unreachable';
      });
    updateControls();
    renderTaskList();
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) guard(connect)(saved);
  }

  async function start() {
    Object.assign(cfg, await loadConfig());
    wire();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
