// One-click feedback: a person's verdict on a result ("not an anomaly", "confirm"), sent
// to POST /v1/feedback, and what it changed in words. What was said is remembered for
// the page's life, so a result drawn again (the Streams view redraws every poll) shows
// its verdict instead of asking again.

import { h } from './dom.js';
import { messageOf, showError } from './errors.js';
import { api } from './api.js';

export const LABELS = {
  false_positive: { text: 'Not an anomaly', done: 'Not an anomaly', title: 'This was flagged wrongly: say so (false positive)' },
  true_positive: { text: 'Confirm', done: 'Confirmed', title: 'This is a real anomaly: keep it as a label (true positive)' },
  missed: { text: 'Should be an anomaly', done: 'Missed', title: 'This should have been flagged (missed)' },
};

const MAX_KEPT = 1000;
// key -> { status: 'sending' | 'done' | 'failed', label, effect, changed, error }
const given = new Map();
let gen = 0; // bumped by resetFeedback: a verdict answered after it is dropped

/** What this page said about the result named `key`, or null. */
export function verdictOf(key) {
  const v = given.get(key);
  return v && v.status === 'done' ? v : null;
}

/** Whether a verdict on `key` is on its way or stored (not failed, not none). */
export function verdictGiven(key) {
  const v = given.get(key);
  return !!v && (v.status === 'sending' || v.status === 'done');
}

/** Whether a verdict on `key` is on its way. */
export function verdictSending(key) {
  const v = given.get(key);
  return !!v && v.status === 'sending';
}

/** Forgets every verdict shown (another key may be another tenant). */
export function resetFeedback() {
  gen += 1;
  given.clear();
}

/**
 * The verdict buttons of one result, and a line for what the verdict changed.
 * `key` names the result for this page; `body` is the request without its label
 * (`{stream_id, event_id, index}`, `{stream_id, from, to}`, `{model_id, dataset_id, row}`);
 * `labels` the buttons; `disabled` why they cannot be used (their title), or null;
 * `onDone(answer)` runs after the verdict is stored; `testid` names the box for tests.
 */
export function feedbackControls({ key, body, labels = ['false_positive', 'true_positive'], disabled = null, onDone = null, testid = 'feedback' }) {
  const box = h('div', { class: 'feedback', 'data-testid': testid });
  box.dataset.fbKey = key;
  for (const label of labels) {
    const l = LABELS[label];
    const b = h('button', { type: 'button', class: `btn small fb fb-${label.replace(/_/g, '-')}`, 'data-label': label, 'data-testid': 'feedback-btn', title: l.title, text: l.text });
    if (disabled) b.title = disabled;
    b.addEventListener('click', () => send(key, body, label, onDone));
    box.appendChild(b);
  }
  box.appendChild(h('span', { class: 'feedback-result', 'data-testid': 'feedback-result', role: 'status' }));
  box.dataset.disabled = disabled ? 'true' : 'false';
  if (disabled) box.dataset.reason = disabled;
  paint(box);
  return box;
}

async function send(key, body, label, onDone) {
  const now = given.get(key);
  if (now && (now.status === 'sending' || now.status === 'done')) return;
  const sent = gen;
  given.set(key, { status: 'sending', label });
  repaint(key);
  let answer;
  try {
    answer = await api('/v1/feedback', { method: 'POST', json: { ...body, label } });
  } catch (e) {
    if (sent !== gen) return; // forgotten meanwhile: not this key's to show
    given.set(key, { status: 'failed', label, error: messageOf(e) });
    repaint(key);
    showError(`Feedback not recorded: ${messageOf(e)}`);
    return;
  }
  if (sent !== gen) return;
  const f = (answer && answer.feedback) || {};
  const changed = !!(answer && answer.changed);
  given.set(key, { status: 'done', label, effect: f.effect ? String(f.effect) : changed ? 'recorded' : 'recorded; nothing changed', changed, id: f.id || null });
  while (given.size > MAX_KEPT) given.delete(given.keys().next().value);
  repaint(key);
  if (onDone) {
    try {
      await onDone(answer);
    } catch (e) {
      showError(messageOf(e));
    }
  }
}

/** Every box on the page for `key` (the one clicked may have been drawn again since). */
function repaint(key) {
  for (const box of document.querySelectorAll('.feedback')) if (box.dataset.fbKey === key) paint(box);
}

function paint(box) {
  const v = given.get(box.dataset.fbKey) || null;
  const off = box.dataset.disabled === 'true';
  const status = v ? v.status : 'none';
  for (const b of box.querySelectorAll('button[data-label]')) {
    const chosen = !!v && v.label === b.dataset.label && status !== 'failed';
    b.disabled = off || status === 'sending' || status === 'done';
    b.classList.toggle('chosen', chosen);
    b.setAttribute('aria-pressed', chosen ? 'true' : 'false');
  }
  const out = box.querySelector('.feedback-result');
  box.dataset.state = status;
  out.dataset.state = status;
  out.textContent = '';
  if (status === 'none' && off) out.textContent = box.dataset.reason || '';
  else if (status === 'sending') out.textContent = 'sending…';
  else if (status === 'failed') out.textContent = 'not recorded (see the message above)';
  else if (status === 'done') {
    out.append(h('strong', { text: `${LABELS[v.label] ? LABELS[v.label].done : v.label}: ` }), v.effect);
    out.dataset.changed = v.changed ? 'true' : 'false';
  }
}
