// The WebSocket: the live connection, its reconnects with backoff, and the events it
// brings.

import { $ } from './dom.js';
import { toMs } from './format.js';
import { guard, messageOf, showError } from './errors.js';
import { cfg } from './config.js';
import { state } from './state.js';
import { enc } from './api.js';
import { addFeed, matchRecent } from './feed.js';
import { taskEvent } from './tasks.js';
import { refreshModelsSoon } from './models.js';
import { datasetEvent, refreshDatasetsSoon } from './datasets.js';
import { refreshAll } from './session.js';

const PING_MS = 5 * 60 * 1000;

const CONN_TEXT = {
  disconnected: 'not connected',
  connecting: 'connecting…',
  connected: 'connected · live',
  reconnecting: 'reconnecting…',
  offline: 'API only (no live feed)',
};

export function setConn(st, detail) {
  const pill = $('conn-state');
  pill.dataset.state = st;
  pill.textContent = CONN_TEXT[st] || st;
  pill.title = detail || '';
}

export const live = {
  ws: null,
  wanted: false,
  failures: 0,
  reconnectTimer: null,
  pingTimer: null,
  lastEventId: null,
  seen: new Set(),
  seenOrder: [],
  subscribed: false,
  channels: new Set(), // channels listened to besides `tenant` (a stream, an entity)
  listeners: new Set(), // functions called with every new event
};

/** Calls `fn` with every event the socket brings (each once); returns its removal. */
export function onLiveEvent(fn) {
  live.listeners.add(fn);
  return () => live.listeners.delete(fn);
}

function send(msg) {
  const ws = live.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

/**
 * Listens to `channel` too (`stream:<id>`, `stream:<id>:<entity>`), now if the socket is
 * up and again after each reconnect. The `tenant` channel already brings its events; a
 * channel of its own says what the page is watching, and keeps it coming should the
 * page ever listen to less than the tenant.
 */
export function subscribeChannel(channel) {
  if (!channel || channel === 'tenant' || live.channels.has(channel)) return;
  live.channels.add(channel);
  if (live.subscribed) send({ action: 'subscribe', channel });
}

export function unsubscribeChannel(channel) {
  if (!channel || !live.channels.delete(channel)) return;
  if (live.subscribed) send({ action: 'unsubscribe', channel });
}

export function openSocket() {
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
    for (const fn of live.listeners) guard(fn)({ type: 'live.closed' });
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

export function closeSocket() {
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
      if (msg.channel && msg.channel !== 'tenant') {
        for (const fn of live.listeners) guard(fn)({ type: 'live.subscribed', channel: msg.channel });
        return;
      }
      const wasReconnect = live.failures > 0;
      live.failures = 0;
      live.subscribed = true;
      setConn('connected', `subscribed to ${msg.channel || 'tenant'}`);
      for (const channel of live.channels) send({ action: 'subscribe', channel });
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
  for (const fn of live.listeners) guard(fn)(ev);
}
