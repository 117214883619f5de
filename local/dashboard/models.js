// Models: the table and the model choice of the detection card.

import { $, clear, h } from './dom.js';
import { fmtInt, fmtNum, fmtTime, shortId, toMs } from './format.js';
import { debounce, guard } from './errors.js';
import { state } from './state.js';
import { api } from './api.js';
import { prefillDetectExclude } from './detect.js';
import { updateControls } from './session.js';

export async function refreshModels() {
  const data = await api('/v1/models?limit=100');
  state.models = ((data && data.items) || []).slice().sort((a, b) => toMs(b.created_at) - toMs(a.created_at));
  renderModels();
}

export const refreshModelsSoon = debounce(refreshModels, 200);

export function modelById(id) {
  return state.models.find((m) => m.id === id) || null;
}

function modelLabel(m) {
  const tr = m.training || {};
  return `${m.algorithm} · ${(m.feature_names || []).length} features · ${fmtInt(tr.rows)} rows · ${shortId(m.id)}`;
}

export function renderModels() {
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
