// Tasks: the table, merging what the API and the events say, and waiting for one to
// finish.

import { $, clear, h } from './dom.js';
import { clampPct, fmtTime, shortId, toMs } from './format.js';
import { debounce, messageOf } from './errors.js';
import { state } from './state.js';
import { api, enc } from './api.js';
import { live } from './live.js';
import { trainProgress } from './train.js';

const MAX_TASK_ROWS = 50;
export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const STATUS_RANK = { queued: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };

export const taskRows = new Map(); // id -> {tr, ...cells}
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

/** A task view from the API: newer facts win, progress never goes back within a try. */
export function mergeTask(t) {
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
export function taskEvent(id, ev) {
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
export function waitTask(id) {
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

export function renderTaskList() {
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

export async function refreshTasks() {
  const data = await api('/v1/tasks?limit=100');
  for (const t of (data && data.items) || []) mergeTask(t);
  renderTaskList();
}

const refreshTasksSoon = debounce(refreshTasks, 400);

export async function cancelTask(id) {
  const t = await api(`/v1/tasks/${enc(id)}/cancel`, { method: 'POST' });
  mergeTask(t);
}
