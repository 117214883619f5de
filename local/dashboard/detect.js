// Detection: the file to score, the columns to leave out, and the request.

import { $ } from './dom.js';
import { fmtBytes, fmtInt, parseList, shortId } from './format.js';
import { guard, messageOf } from './errors.js';
import { state } from './state.js';
import { api, enc } from './api.js';
import { addRecent } from './feed.js';
import { mergeTask, waitTask } from './tasks.js';
import { modelById } from './models.js';
import { showResult } from './plot.js';
import { updateControls } from './session.js';

const MAX_BODY = 6 * 1024 * 1024;

export function setDetectFile(file, isUpload) {
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
export async function prefillDetectExclude() {
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

export async function detect() {
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
  // a verdict on a row names a row of a stored dataset: the uploaded file's, if it is the
  // one scored
  const datasetId = state.detectFileIsUpload && state.uploadFile === file ? state.uploadDatasetId : null;
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
    showResult(result, datasetId);
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
