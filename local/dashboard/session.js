// The session: connecting with a key, forgetting it, and which controls are enabled.

import { $, clear } from './dom.js';
import { hideError, messageOf, showError } from './errors.js';
import { state } from './state.js';
import { closeSocket, live, openSocket, setConn } from './live.js';
import { renderRecent } from './feed.js';
import { refreshTasks, renderTaskList, taskRows } from './tasks.js';
import { refreshModels, renderModels } from './models.js';
import { refreshDatasets, renderDatasetSelect, showProfile } from './datasets.js';
import { renderExplanation } from './plot.js';
import { resetStreams, streamsConnected } from './streams.js';
import { alertsConnected, resetAlerts } from './alerts.js';
import { resetFeedback } from './feedback.js';

export const KEY_STORE = 'nomaly.apiKey';

export function updateControls() {
  const k = !!state.key;
  $('upload-btn').disabled = !k || state.busy.upload || !$('upload-file').files.length;
  $('train-btn').disabled = !k || state.busy.train || !$('train-dataset').value;
  $('detect-btn').disabled = !k || state.busy.detect || !$('detect-model').value || !state.detectFile;
}

export async function refreshAll() {
  const results = await Promise.allSettled([refreshModels(), refreshTasks(), refreshDatasets(), streamsConnected(), alertsConnected()]);
  const failed = results.find((x) => x.status === 'rejected');
  if (failed) showError(messageOf(failed.reason));
}

export async function connect(key) {
  const clean = String(key || '').trim();
  if (!clean) throw new Error('paste an API key first');
  closeSocket();
  if (state.key !== clean && (state.key || state.tasks.size || state.models.length)) resetData();
  live.failures = 0;
  state.key = clean;
  setConn('connecting');
  try {
    await refreshModels();
  } catch (e) {
    state.key = null;
    setConn('disconnected');
    if (e.status === 401 || e.status === 403) {
      sessionStorage.removeItem(KEY_STORE);
      throw new Error(`The key was refused: ${messageOf(e)}`);
    }
    throw e;
  }
  sessionStorage.setItem(KEY_STORE, clean);
  hideError();
  const input = $('api-key');
  input.value = '';
  input.placeholder = 'key stored for this tab';
  $('forget').hidden = false;
  $('connect').textContent = 'Reconnect';
  updateControls();
  await Promise.allSettled([refreshTasks(), refreshDatasets(), streamsConnected(), alertsConnected()]).then((rs) => {
    const failed = rs.find((x) => x.status === 'rejected');
    if (failed) showError(messageOf(failed.reason));
  });
  openSocket();
}

/** Forgets everything shown for the previous key (another key may be another tenant). */
function resetData() {
  state.tasks.clear();
  for (const row of taskRows.values()) row.tr.remove();
  taskRows.clear();
  renderTaskList();
  state.models = [];
  renderModels();
  state.datasets.clear();
  state.currentDatasetId = null;
  state.uploadDatasetId = null;
  renderDatasetSelect();
  showProfile(null);
  state.result = null;
  state.selectedRow = null;
  clear($('scores-plot'));
  clear($('scores-summary'));
  clear($('anomaly-list'));
  $('scores-empty').hidden = false;
  renderExplanation(null);
  state.recent = [];
  renderRecent();
  clear($('feed'));
  state.feedCount = 0;
  $('feed-count').textContent = '0 events';
  $('feed-empty').hidden = false;
  live.lastEventId = null;
  live.seen.clear();
  live.seenOrder = [];
  resetStreams();
  resetAlerts();
  resetFeedback();
}

export function forget() {
  closeSocket();
  resetData();
  state.key = null;
  sessionStorage.removeItem(KEY_STORE);
  $('api-key').placeholder = 'Paste API key (nmk_…)';
  $('forget').hidden = true;
  $('connect').textContent = 'Connect';
  setConn('disconnected');
  updateControls();
}
