// Reports: building one for a model and a dataset, and opening its signed link.

import { $, clear, h } from './dom.js';
import { fmtTime, parseList, shortId, toMs } from './format.js';
import { messageOf } from './errors.js';
import { cfg } from './config.js';
import { state } from './state.js';
import { api, enc } from './api.js';
import { mergeTask, waitTask } from './tasks.js';
import { modelById } from './models.js';

function safeHttpUrl(raw) {
  const u = new URL(String(raw), `${cfg.apiBase}/`);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('the report URL is not http(s)');
  return u.href;
}

export async function report(modelId, button) {
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
