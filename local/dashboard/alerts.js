// Alerts: the tenant's alert rules (what they match, where they send, their cooldown),
// the form that makes one, its webhook secret shown the once the API gives it, and each
// rule's test-fire, enable/disable and delete. Its delivery log is deliveries.js's.

import { $, clear, h } from './dom.js';
import { fmtInt, fmtNum, shortId } from './format.js';
import { messageOf, showError } from './errors.js';
import { state } from './state.js';
import { api, enc, listAll } from './api.js';
import { addDelivery, deliveriesRule, refreshDeliveries, resetDeliveries, setDeliveriesShown, showDeliveries, wireDeliveries } from './deliveries.js';

const RULES_MS = 30000; // the list of rules, while the view is shown
const MAX_PAGES = 5; // of 100 rules or streams

const al = {
  shown: false,
  rules: [], // newest first, as listed
  rulesMore: false, // the listing went on past MAX_PAGES
  loaded: false, // the rules were read once for this key
  streams: [], // the tenant's streams, for the form's choice
  streamsMore: false,
  busy: new Set(), // rule ids with a request under way
  gen: 0, // bumped by resetAlerts: answers for the previous key are dropped
  changes: 0, // bumped by each rule made, changed or deleted: lists read before are stale
  reads: 0, // list reads started
  listed: 0, // the newest list read shown: an older one answering later is dropped
  timer: null,
};

// ---- the rules --------------------------------------------------------------------------

export async function refreshRules() {
  if (!state.key) return;
  const gen = al.gen;
  const changes = al.changes;
  const read = ++al.reads;
  const { items, more } = await listAll('/v1/alerts?limit=100', MAX_PAGES);
  // another key meanwhile, a rule changed since the read began (the read after that
  // change shows it), or a newer read already shown
  if (gen !== al.gen || changes !== al.changes || read < al.listed) return;
  al.listed = read;
  al.rules = items;
  al.rulesMore = more;
  al.loaded = true;
  renderRules();
  const shown = deliveriesRule();
  // a rule past the pages read may still exist: its log stays
  if (shown && !more && !al.rules.some((r) => r.id === shown)) await showDeliveries(null);
}

/** After a rule was made, changed or deleted here: lists read before it are dropped, and
 * the list is read again. */
function ruleChanged() {
  al.changes += 1;
  refreshRules().catch((e) => showError(`Alert rules not read: ${messageOf(e)}`));
}

function fmtCooldown(secs) {
  const n = Number(secs);
  if (!Number.isFinite(n)) return '—';
  if (n === 0) return 'none';
  if (n % 3600 === 0) return `${fmtInt(n / 3600)} h`;
  if (n % 60 === 0) return `${fmtInt(n / 60)} min`;
  return `${fmtInt(n)} s`;
}

function destinationText(d) {
  if (d && d.webhook) return String(d.webhook.url);
  if (d && d.eventbridge) return `EventBridge bus ${d.eventbridge.bus}`;
  return '?';
}

function matchText(m) {
  const parts = [];
  if (m.stream_id) {
    const s = al.streams.find((x) => x.stream_id === m.stream_id);
    parts.push(`stream ${s ? s.name : shortId(m.stream_id)}`);
  }
  if (m.model_id) parts.push(`model ${shortId(m.model_id)}`);
  if (m.entity !== null && m.entity !== undefined) parts.push(`entity ${m.entity}`);
  if (m.min_score !== null && m.min_score !== undefined) parts.push(`score ≥ ${fmtNum(m.min_score)}`);
  return parts.length ? parts.join(' · ') : 'any stream or model';
}

function renderRules() {
  const list = $('alert-rules');
  clear(list);
  const logged = deliveriesRule();
  for (const r of al.rules) {
    const m = r.match || {};
    const busy = al.busy.has(r.id);
    const dest = r.destination || {};
    list.appendChild(
      h(
        'li',
        { class: `rule${r.id === logged ? ' active' : ''}${r.enabled ? '' : ' off'}`, 'data-rule-id': r.id, 'data-enabled': r.enabled ? 'true' : 'false', 'data-testid': 'alert-rule' },
        h(
          'div',
          { class: 'rule-main' },
          h('div', { class: 'rule-head' }, h('span', { class: 'rule-name', text: r.name }), h('span', { class: `badge ${r.enabled ? 'st-completed' : 'st-cancelled'}`, 'data-testid': 'alert-enabled', text: r.enabled ? 'enabled' : 'disabled' }), h('span', { class: 'id', title: r.id, text: shortId(r.id) })),
          h('div', { class: 'rule-line' }, h('span', { class: 'rule-key', text: 'on' }), h('span', { class: 'rule-events', text: (m.events || []).join(', ') }), h('span', { class: 'muted', text: ` · ${matchText(m)}` })),
          h('div', { class: 'rule-line' }, h('span', { class: 'rule-key', text: dest.eventbridge ? 'bus' : 'to' }), h('code', { class: 'rule-dest', 'data-testid': 'alert-destination', text: destinationText(dest) })),
          h(
            'div',
            { class: 'rule-line muted' },
            h('span', { class: 'rule-key', text: 'cooldown' }),
            h('span', { text: fmtCooldown(r.cooldown) }),
            h('span', { class: 'rule-key sep', text: 'group by' }),
            h('span', { text: r.group_by && r.group_by.length ? r.group_by.join(', ') : 'one group' }),
          ),
        ),
        h(
          'div',
          { class: 'rule-actions' },
          h('button', { type: 'button', class: 'btn small', 'data-action': 'test', 'data-testid': 'alert-test', disabled: busy, title: 'Send a test alert now, whatever the match and cooldown', text: 'Test fire' }),
          h('button', { type: 'button', class: 'btn small', 'data-action': 'toggle', 'data-testid': 'alert-toggle', disabled: busy, text: r.enabled ? 'Disable' : 'Enable' }),
          h('button', { type: 'button', class: 'btn small', 'data-action': 'log', 'data-testid': 'alert-log', 'aria-pressed': r.id === logged ? 'true' : 'false', text: 'Log' }),
          h('button', { type: 'button', class: 'btn small danger', 'data-action': 'delete', 'data-testid': 'alert-delete', disabled: busy, text: 'Delete' }),
        ),
      ),
    );
  }
  if (al.rulesMore) list.appendChild(h('li', { class: 'muted small', 'data-testid': 'alerts-more', text: `The first ${fmtInt(al.rules.length)} rules are listed.` }));
  list.dataset.count = String(al.rules.length);
  list.dataset.loaded = al.loaded ? 'true' : 'false';
  $('alerts-empty').hidden = al.rules.length > 0;
  const count = $('alerts-count');
  count.textContent = `${fmtInt(al.rules.length)}${al.rulesMore ? '+' : ''} rule${al.rules.length === 1 && !al.rulesMore ? '' : 's'}`;
}

/** Runs `fn` for rule `id`, its buttons off meanwhile. */
async function withRule(id, fn) {
  const r = al.rules.find((x) => x.id === id);
  if (!r || al.busy.has(id)) return;
  al.busy.add(id);
  renderRules();
  try {
    await fn(r);
  } finally {
    al.busy.delete(id);
    renderRules();
  }
}

async function testFire(r) {
  const gen = al.gen;
  const d = await api(`/v1/alerts/${enc(r.id)}/test`, { method: 'POST' });
  if (gen !== al.gen) return; // forgotten meanwhile
  await showDeliveries(r);
  addDelivery(d);
  setStatus(`Test alert ${shortId(d && d.id)} queued for “${r.name}”: follow it in the delivery log.`);
  renderRules();
}

async function toggle(r) {
  // PUT takes the whole rule; the secret and the log stay
  const body = { name: r.name, match: r.match, destination: r.destination, cooldown: r.cooldown, group_by: r.group_by || [], enabled: !r.enabled };
  const gen = al.gen;
  const now = await api(`/v1/alerts/${enc(r.id)}`, { method: 'PUT', json: body });
  if (gen !== al.gen) return;
  const i = al.rules.findIndex((x) => x.id === r.id);
  if (i >= 0 && now) al.rules[i] = now;
  setStatus(`“${r.name}” ${now && now.enabled ? 'enabled' : 'disabled'}.`);
  ruleChanged();
}

async function remove(r) {
  if (!window.confirm(`Delete the alert rule “${r.name}” and its delivery log?`)) return;
  const gen = al.gen;
  let already = false;
  try {
    await api(`/v1/alerts/${enc(r.id)}`, { method: 'DELETE' });
  } catch (e) {
    if (e.status !== 404) throw e;
    already = true; // deleted elsewhere: the list catches up, no error
  }
  if (gen !== al.gen) return;
  al.rules = al.rules.filter((x) => x.id !== r.id);
  if (deliveriesRule() === r.id) await showDeliveries(null);
  if ($('alert-secret-box').dataset.ruleId === r.id) hideSecret();
  setStatus(already ? `“${r.name}” was already deleted.` : `“${r.name}” deleted.`);
  ruleChanged();
}

function setStatus(text) {
  $('alerts-status').textContent = text;
}

// ---- the form ------------------------------------------------------------------------------

async function refreshStreamChoices() {
  if (!state.key) return;
  const gen = al.gen;
  const { items, more } = await listAll('/v1/streams?limit=100', MAX_PAGES);
  if (gen !== al.gen) return; // another key meanwhile
  al.streams = items.sort((a, b) => String(a.name).localeCompare(String(b.name)));
  al.streamsMore = more;
  renderChoices();
}

/** Fills `select` with "any" and `items` ([value, text]); `moreText`, if given, says
 * the list was cut. */
function fillSelect(select, anyText, items, moreText = null) {
  const keep = select.value;
  clear(select);
  select.appendChild(h('option', { value: '', text: anyText }));
  for (const [value, text] of items) select.appendChild(h('option', { value, text }));
  if (moreText) select.appendChild(h('option', { value: '', disabled: true, text: moreText }));
  select.value = items.some(([v]) => v === keep) ? keep : '';
}

function renderChoices() {
  const more = al.streamsMore ? `(the first ${fmtInt(al.streams.length)} streams are listed)` : null;
  fillSelect($('alert-stream'), 'any stream', al.streams.map((x) => [x.stream_id, `${x.name} · ${shortId(x.stream_id)}`]), more);
  fillSelect($('alert-model'), 'any model', state.models.map((m) => [m.id, `${m.algorithm} · ${shortId(m.id)}`]));
}

function checked(name) {
  return Array.from(document.querySelectorAll(`#alert-form input[name="${name}"]:checked`)).map((i) => i.value);
}

/** The form as a rule for POST /v1/alerts; throws what is missing. */
function ruleFromForm() {
  const events = checked('alert-event');
  if (events.length === 0) throw new Error('choose at least one event type for the rule');
  const match = { events };
  const stream = $('alert-stream').value;
  const model = $('alert-model').value;
  const entity = $('alert-entity').value.trim();
  // a number field holding what is not a number (`abc`, `0,9`) reads as empty: say so
  // rather than drop it
  if ($('alert-min-score').validity.badInput) throw new Error('the minimum score is not a number: write it like 0.9 (with a dot), or leave it empty for any score');
  const minScore = $('alert-min-score').value.trim();
  if (stream) match.stream_id = stream;
  if (model) match.model_id = model;
  if (entity) match.entity = entity;
  if (minScore !== '') {
    const n = Number(minScore);
    if (!Number.isFinite(n)) throw new Error('the minimum score is not a number');
    match.min_score = n;
  }
  let destination;
  if ($('alert-dest-eventbridge').checked) {
    const bus = $('alert-bus').value.trim();
    if (!bus) throw new Error('give the EventBridge bus name');
    destination = { eventbridge: { bus } };
  } else {
    const url = $('alert-url').value.trim();
    if (!url) throw new Error('give the webhook URL (https://…)');
    destination = { webhook: { url } };
  }
  if ($('alert-cooldown').validity.badInput) throw new Error('the cooldown is not a number: give a whole number of seconds, 0 or more');
  const cooldownText = $('alert-cooldown').value.trim();
  const cooldown = cooldownText === '' ? 300 : Number(cooldownText);
  if (!Number.isInteger(cooldown) || cooldown < 0) throw new Error('the cooldown is a whole number of seconds, 0 or more');
  const name = $('alert-name').value.trim() || defaultName(events, destination);
  return { name: name.slice(0, 200), match, destination, cooldown, group_by: checked('alert-group'), enabled: $('alert-enabled').checked };
}

function defaultName(events, destination) {
  let where = 'EventBridge';
  if (destination.webhook) {
    try {
      where = new URL(destination.webhook.url).host || 'webhook';
    } catch (_) {
      where = 'webhook';
    }
  }
  return `${events[0]}${events.length > 1 ? ` +${events.length - 1}` : ''} → ${where}`;
}

async function createRule() {
  const secretBox = $('alert-secret-box');
  if (!secretBox.hidden && secretBox.dataset.ruleId) {
    // a new rule's secret would take the place of the one not yet stored
    throw new Error(`Store the signing secret shown for “${$('alert-secret-rule').textContent}” first, then press “I have stored it”: the API never shows it again.`);
  }
  const body = ruleFromForm();
  const button = $('alert-create');
  const gen = al.gen;
  button.disabled = true;
  try {
    const made = await api('/v1/alerts', { method: 'POST', json: body });
    if (gen !== al.gen) return; // forgotten (or another key) meanwhile: its secret is not shown
    // the list without the secret: GET never shows it again
    const kept = { ...made };
    delete kept.secret;
    al.rules = [kept, ...al.rules.filter((x) => x.id !== made.id)];
    if (made.secret) showSecret(made);
    else hideSecret();
    $('alert-name').value = '';
    $('alert-url').value = '';
    setStatus(`Rule “${made.name}” created.`);
    renderRules();
    ruleChanged();
    await showDeliveries(kept);
  } finally {
    button.disabled = false;
  }
}

// ---- the secret, shown once ------------------------------------------------------------------

function showSecret(rule) {
  const box = $('alert-secret-box');
  box.dataset.ruleId = rule.id;
  $('alert-secret-rule').textContent = rule.name;
  $('alert-secret').value = rule.secret;
  $('alert-secret-status').textContent = '';
  box.hidden = false;
  box.scrollIntoView({ block: 'nearest' });
}

function hideSecret() {
  const box = $('alert-secret-box');
  $('alert-secret').value = ''; // the page keeps it no longer than it shows it
  box.dataset.ruleId = '';
  box.hidden = true;
}

async function copySecret() {
  const input = $('alert-secret');
  const status = $('alert-secret-status');
  try {
    await navigator.clipboard.writeText(input.value);
    status.textContent = 'Copied to the clipboard.';
  } catch (_) {
    input.focus();
    input.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch (__) {
      ok = false;
    }
    status.textContent = ok ? 'Copied to the clipboard.' : 'Selected: press Ctrl+C (⌘C) to copy it.';
  }
}

// ---- the view --------------------------------------------------------------------------------

/** The Alerts view shown (true) or hidden: it reads only while it is shown. */
export async function showAlerts(shown) {
  al.shown = shown;
  clearInterval(al.timer);
  al.timer = null;
  setDeliveriesShown(shown);
  if (!shown) return;
  al.timer = setInterval(() => {
    if (!al.shown || !state.key || document.visibilityState === 'hidden') return;
    refreshRules().catch(() => {}); // an error shows at the next action
  }, RULES_MS);
  renderChoices();
  if (!state.key) return;
  const rs = await Promise.allSettled([refreshRules(), refreshStreamChoices(), refreshDeliveries()]);
  const failed = rs.find((x) => x.status === 'rejected');
  if (failed) throw failed.reason;
}

/** After (re)connecting: what is shown is read again. */
export async function alertsConnected() {
  if (al.shown) await showAlerts(true);
}

/** Forgets what was shown for the previous key, the secret above all. */
export function resetAlerts() {
  al.gen += 1;
  Object.assign(al, { rules: [], rulesMore: false, loaded: false, streams: [], streamsMore: false });
  al.busy.clear();
  hideSecret();
  setStatus('');
  renderRules();
  renderChoices();
  resetDeliveries();
}

export function wireAlerts() {
  wireDeliveries();
  $('alert-form').addEventListener('submit', (e) => {
    e.preventDefault();
    createRule().catch((err) => showError(messageOf(err)));
  });
  for (const radio of document.querySelectorAll('#alert-form input[name="alert-dest"]')) {
    radio.addEventListener('change', () => {
      const bus = $('alert-dest-eventbridge').checked;
      $('alert-url-field').hidden = bus;
      $('alert-bus-field').hidden = !bus;
    });
  }
  $('alert-secret-copy').addEventListener('click', () => {
    copySecret().catch((e) => showError(messageOf(e)));
  });
  $('alert-secret-dismiss').addEventListener('click', hideSecret);
  $('alerts-refresh').addEventListener('click', () => {
    Promise.all([refreshRules(), refreshStreamChoices()]).catch((e) => showError(messageOf(e)));
  });
  $('alert-rules').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    const li = b && b.closest('li[data-rule-id]');
    if (!li) return;
    const id = li.dataset.ruleId;
    const act = { test: testFire, toggle, delete: remove }[b.dataset.action];
    const run = act
      ? withRule(id, act)
      : showDeliveries(al.rules.find((x) => x.id === id) || null).then(() => {
          renderRules();
          $('deliveries-card').scrollIntoView({ block: 'nearest' });
        });
    run.catch((err) => showError(messageOf(err)));
  });
  renderRules();
}
