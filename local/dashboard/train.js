// Training: submitting a model and following its task.

import { $ } from './dom.js';
import { fmtInt, fmtNum, parseList, shortId } from './format.js';
import { messageOf } from './errors.js';
import { state } from './state.js';
import { api } from './api.js';
import { mergeTask, TERMINAL, waitTask } from './tasks.js';
import { modelById, refreshModels } from './models.js';
import { prefillDetectExclude } from './detect.js';
import { updateControls } from './session.js';

export async function train() {
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

export function trainProgress(t) {
  const status = $('train-status');
  if (!TERMINAL.has(t.status)) status.textContent = `Training (task ${shortId(t.id)}): ${t.status} · ${t.progress}%`;
}

function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
