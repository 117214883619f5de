// nomaly live dashboard: plain JavaScript modules, no build step, no libraries. This is
// the entry point (index.html loads it with type="module"); it wires the page to the
// modules beside it, one concern each.
//
// Security rules every module keeps: everything that comes from the API, the WebSocket or
// a file (dataset names, column and feature names, errors, URLs) reaches the page only
// through textContent, DOM properties or setAttribute on known-safe attributes; never
// innerHTML and friends, never eval. The API key lives in sessionStorage only and is
// never logged nor put in the page's URL.

import { $ } from './dom.js';
import { fmtBytes } from './format.js';
import { guard, hideError, messageOf, showError } from './errors.js';
import { cfg, loadConfig } from './config.js';
import { state } from './state.js';
import { live, openSocket } from './live.js';
import { cancelTask, refreshTasks, renderTaskList } from './tasks.js';
import { refreshModels } from './models.js';
import { selectDataset } from './datasets.js';
import { uploadDataset } from './upload.js';
import { train } from './train.js';
import { detect, prefillDetectExclude, setDetectFile } from './detect.js';
import { selectRow } from './plot.js';
import { report } from './reports.js';
import { connect, forget, KEY_STORE, updateControls } from './session.js';
import { showStreams, wireStreams } from './streams.js';
import { showAlerts, wireAlerts } from './alerts.js';

const TASK_REFRESH_MS = 10000;
const VIEWS = ['models', 'streams', 'alerts'];

/** Shows one view (a tab of the page): `models`, `streams` or `alerts`. */
function showView(name, focus) {
  const view = VIEWS.includes(name) ? name : 'models';
  for (const v of VIEWS) {
    const tab = $(`tab-${v}`);
    const on = v === view;
    tab.setAttribute('aria-selected', on ? 'true' : 'false');
    tab.tabIndex = on ? 0 : -1;
    tab.classList.toggle('active', on);
    $(`view-${v}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  document.body.dataset.view = view;
  // the view is in the address (#streams, #alerts), never anything else
  const hash = view === 'models' ? '' : `#${view}`;
  if (location.hash !== hash) history.replaceState(null, '', `${location.pathname}${location.search}${hash}`);
  guard(showStreams)(view === 'streams');
  guard(showAlerts)(view === 'alerts');
}

function wireTabs() {
  const tabs = VIEWS.map((v) => $(`tab-${v}`));
  for (const tab of tabs) tab.addEventListener('click', () => showView(tab.dataset.view));
  $('tab-models').parentElement.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = tabs.length - 1;
    if (j === null) return;
    e.preventDefault();
    showView(tabs[j].dataset.view, true);
  });
  window.addEventListener('hashchange', () => showView(location.hash.slice(1)));
}

function wire() {
  $('api-base').textContent = cfg.apiBase;
  wireTabs();
  wireStreams();
  wireAlerts();
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const typed = $('api-key').value;
    guard(connect)(typed || state.key || sessionStorage.getItem(KEY_STORE));
  });
  $('forget').addEventListener('click', forget);
  $('error-close').addEventListener('click', hideError);
  $('upload-file').addEventListener('change', () => {
    const f = $('upload-file').files[0];
    $('upload-status').textContent = f ? `${f.name} · ${fmtBytes(f.size)} — ready to upload.` : 'Choose a CSV file.';
    updateControls();
  });
  $('upload-btn').addEventListener('click', guard(uploadDataset));
  $('train-dataset').addEventListener('change', guard(() => selectDataset($('train-dataset').value)));
  $('train-exclude').addEventListener('input', () => {
    state.excludeAuto = false;
  });
  $('train-btn').addEventListener('click', guard(train));
  $('detect-model').addEventListener('change', guard(prefillDetectExclude));
  $('detect-file').addEventListener('change', () => {
    const f = $('detect-file').files[0];
    if (f) setDetectFile(f, false);
  });
  $('detect-btn').addEventListener('click', guard(detect));
  $('tasks-refresh').addEventListener('click', guard(refreshTasks));
  $('models-refresh').addEventListener('click', guard(refreshModels));
  $('tasks-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action="cancel"]');
    if (b) guard(cancelTask)(b.dataset.taskId);
  });
  $('models-body').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (!b) return;
    const id = b.dataset.modelId;
    if (b.dataset.action === 'use-model') {
      $('detect-model').value = id;
      guard(prefillDetectExclude)();
      updateControls();
      $('detect-card').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
    } else if (b.dataset.action === 'report') {
      guard(report)(id, b);
    }
  });
  const plot = $('scores-plot');
  plot.addEventListener('click', (e) => {
    const c = e.target.closest('circle[data-row]');
    if (c) selectRow(Number(c.dataset.row));
  });
  plot.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const c = e.target.closest('circle[data-row]');
    if (c) {
      e.preventDefault();
      selectRow(Number(c.dataset.row));
    }
  });
  $('anomaly-list').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-row]');
    if (b) selectRow(Number(b.dataset.row));
  });
  window.addEventListener('error', (e) => showError(`Unexpected error: ${e.message || 'see the console'}`));
  window.addEventListener('unhandledrejection', (e) => {
    e.preventDefault();
    showError(`Unexpected error: ${messageOf(e.reason)}`);
  });
  setInterval(() => {
    if (state.key && document.visibilityState !== 'hidden') guard(refreshTasks)();
  }, TASK_REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (state.key && document.visibilityState === 'visible' && !live.ws && live.wanted) openSocket();
  });

  // version, and the key of this tab if there is one
  fetch(`${cfg.apiBase}/healthz`, { cache: 'no-store', credentials: 'omit' })
    .then((r) => (r.ok ? r.json() : null))
    .then((j) => {
      if (j && j.version) $('version').textContent = `API ${j.version}`;
    })
    .catch(() => {
      $('version').textContent = 'API unreachable';
    });
  updateControls();
  renderTaskList();
  showView(location.hash.slice(1));
  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) guard(connect)(saved);
}

async function start() {
  Object.assign(cfg, await loadConfig());
  wire();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
