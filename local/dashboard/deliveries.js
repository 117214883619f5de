// The delivery log of one alert rule: each alert it sent (or is sending), its status,
// attempts, latency and last error; read again while a delivery is under way.

import { $, clear, h } from './dom.js';
import { fmtInt, fmtTime, shortId, toMs } from './format.js';
import { messageOf, showError } from './errors.js';
import { state } from './state.js';
import { api, enc } from './api.js';

const BUSY_MS = 2000; // while a delivery is pending or its next attempt is due
const IDLE_MS = 15000; // otherwise, while the log is shown

const log = {
  shown: false,
  rule: null, // { id, name } whose log is shown
  items: [], // newest first
  more: false,
  gen: 0, // bumped by each rule picked: answers about an earlier one are dropped
  reading: null, // the gen whose log is being read: a rule picked meanwhile reads its own
  readAt: 0,
  failure: null, // the last read's error, shown once
  timer: null,
};

const STATUS_TEXT = { pending: 'pending', retrying: 'retrying', delivered: 'delivered', dead_lettered: 'dead-lettered' };

/** Shows the log of `rule` (`{id, name}`), or none. */
export async function showDeliveries(rule) {
  const same = rule && log.rule && rule.id === log.rule.id;
  log.rule = rule ? { id: rule.id, name: rule.name } : null;
  if (!same) {
    log.gen += 1;
    log.items = [];
    log.more = false;
    log.readAt = 0;
    log.failure = null;
  }
  render();
  if (log.rule) await refreshDeliveries();
}

/** The rule whose log is shown, if any. */
export const deliveriesRule = () => (log.rule ? log.rule.id : null);

/** A delivery just made (a test alert): shown at once, then followed. */
export function addDelivery(d) {
  if (!d || !log.rule || d.rule_id !== log.rule.id) return;
  log.items = [d, ...log.items.filter((x) => x.id !== d.id)];
  render();
}

export async function refreshDeliveries() {
  if (!log.rule || !state.key || log.reading === log.gen) return;
  const gen = log.gen;
  const id = log.rule.id;
  log.reading = gen;
  try {
    const data = await api(`/v1/alerts/${enc(id)}/deliveries?limit=50`);
    if (gen !== log.gen) return;
    log.items = (data && Array.isArray(data.items) && data.items) || [];
    log.more = !!(data && data.next_token);
    log.readAt = Date.now();
    log.failure = null;
    render();
  } catch (e) {
    if (gen !== log.gen) return;
    if (e.status === 404) {
      // the rule is gone
      log.rule = null;
      log.items = [];
      render();
      return;
    }
    const msg = `Delivery log not read: ${messageOf(e)}`;
    if (msg !== log.failure) showError(msg); // once, not every poll
    log.failure = msg;
    renderStatus();
  } finally {
    if (log.reading === gen) log.reading = null;
  }
}

/** Whether a delivery of the log is moving: pending, or retrying with its attempt due. */
function busy() {
  const now = Date.now();
  return log.items.some((d) => d.status === 'pending' || (d.status === 'retrying' && toMs(d.next_attempt_at) <= now + 1000));
}

function tick() {
  if (!log.shown || !log.rule || !state.key || document.visibilityState === 'hidden') return;
  if (busy() || Date.now() - log.readAt >= IDLE_MS) refreshDeliveries();
}

/** The Alerts view shown (true) or hidden: the log is read only while it is shown. */
export function setDeliveriesShown(shown) {
  log.shown = shown;
  clearInterval(log.timer);
  log.timer = shown ? setInterval(tick, BUSY_MS) : null;
}

/** Forgets the log shown for the previous key. */
export function resetDeliveries() {
  log.gen += 1;
  Object.assign(log, { rule: null, items: [], more: false, readAt: 0, failure: null });
  render();
}

function latency(ms) {
  if (ms === null || ms === undefined) return '—';
  return Number(ms) < 1000 ? `${fmtInt(ms)} ms` : `${(Number(ms) / 1000).toFixed(1)} s`;
}

function render() {
  const head = $('deliveries-h');
  const body = $('deliveries-body');
  clear(body);
  head.textContent = '';
  head.append('Delivery log', log.rule ? h('span', { class: 'log-rule', text: ` · ${log.rule.name}` }) : '');
  $('deliveries-refresh').disabled = !log.rule;
  const table = $('deliveries-table');
  table.dataset.ruleId = log.rule ? log.rule.id : '';
  table.dataset.count = String(log.items.length);
  for (const d of log.items) {
    const status = String(d.status || '');
    const kind = d.test ? 'test' : d.event_type || 'event';
    body.appendChild(
      h(
        'tr',
        { 'data-delivery-id': d.id, 'data-status': status, 'data-testid': 'delivery-row' },
        h('td', { class: 'time', title: String(d.created_at || ''), text: fmtTime(toMs(d.created_at)) }),
        h('td', { class: 'kind' }, h('span', { text: kind }), h('span', { class: 'id', title: d.id, text: shortId(d.id) })),
        h('td', null, h('span', { class: `badge st-${status.replace(/[^a-z_]/g, '')}`, 'data-testid': 'delivery-status', text: STATUS_TEXT[status] || status })),
        h('td', { class: 'num', text: fmtInt(d.attempts) }),
        h('td', { class: 'num', text: latency(d.latency_ms) }),
        h('td', { class: 'num', text: d.last_status === null || d.last_status === undefined ? '—' : String(d.last_status) }),
        h('td', { class: 'result' }, d.last_error ? h('span', { class: 'err', title: String(d.last_error), text: String(d.last_error) }) : '—'),
        h('td', { class: 'num', title: 'anomalies (or matching events) it stands for', text: fmtInt(d.count) }),
        h('td', { class: 'time', text: d.next_attempt_at && status === 'retrying' ? fmtTime(toMs(d.next_attempt_at)) : '—' }),
      ),
    );
  }
  const empty = $('deliveries-empty');
  empty.hidden = log.items.length > 0;
  empty.textContent = log.rule ? 'No deliveries yet: test-fire the rule, or wait for an event it matches.' : 'Pick a rule’s “Log” to see what it sent.';
  renderStatus();
}

function renderStatus() {
  const line = $('deliveries-status');
  if (!log.rule) {
    line.textContent = '';
    line.dataset.state = 'idle';
    return;
  }
  const parts = [];
  if (log.failure) parts.push('not read lately');
  else if (log.readAt) parts.push(`read ${fmtTime(log.readAt)}`);
  if (log.more) parts.push(`the newest ${fmtInt(log.items.length)} are listed`);
  if (busy()) parts.push('following the delivery under way…');
  line.textContent = parts.join(' · ');
  line.dataset.state = log.failure ? 'stale' : 'live';
}

export function wireDeliveries() {
  $('deliveries-refresh').addEventListener('click', () => {
    refreshDeliveries().catch((e) => showError(messageOf(e)));
  });
  render();
}
