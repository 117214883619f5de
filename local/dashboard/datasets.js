// Datasets: the choice of the training card, waiting for profiling, and the profile
// table.

import { $, chip, clear, h } from './dom.js';
import { fmtInt, fmtNum, shortId, toMs } from './format.js';
import { debounce } from './errors.js';
import { state } from './state.js';
import { api, enc } from './api.js';
import { updateControls } from './session.js';

export async function refreshDatasets() {
  const data = await api('/v1/datasets?limit=100');
  for (const d of (data && data.items) || []) {
    const cur = state.datasets.get(d.id);
    // keep a profile fetched earlier if the listing leaves it out
    state.datasets.set(d.id, cur && cur.profile && !d.profile ? { ...d, profile: cur.profile } : d);
  }
  renderDatasetSelect();
}

export const refreshDatasetsSoon = debounce(refreshDatasets, 300);

export function renderDatasetSelect() {
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

export function datasetEvent(p) {
  if (!p || !p.dataset_id) return;
  const waiters = datasetWaiters.get(p.dataset_id);
  if (waiters) for (const fn of waiters) fn();
}

const datasetWaiters = new Map(); // id -> Set<fn> woken by dataset.profiled

/** Resolves with the dataset once it is profiled or rejected. */
export function waitDataset(id) {
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

export function showProfile(d) {
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

export async function selectDataset(id) {
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

export function prefillTrainExclude(d) {
  const input = $('train-exclude');
  if (!state.excludeAuto && input.value.trim() !== '') return;
  const cols = ((d && d.profile && d.profile.column_profiles) || []).map((c) => c.name);
  const label = cols.find((c) => c.toLowerCase() === 'label');
  input.value = label || '';
  state.excludeAuto = true;
}
