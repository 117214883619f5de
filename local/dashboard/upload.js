// Upload: registering a dataset and putting the file to storage with the presigned URL.

import { $ } from './dom.js';
import { fmtBytes, fmtInt } from './format.js';
import { messageOf } from './errors.js';
import { cfg } from './config.js';
import { state } from './state.js';
import { api, ApiError } from './api.js';
import {
  prefillTrainExclude,
  refreshDatasetsSoon,
  renderDatasetSelect,
  showProfile,
  waitDataset,
} from './datasets.js';
import { setDetectFile } from './detect.js';
import { updateControls } from './session.js';

const FORBIDDEN_HEADERS = new Set([
  'accept-charset', 'accept-encoding', 'access-control-request-headers',
  'access-control-request-method', 'connection', 'content-length', 'cookie', 'cookie2',
  'date', 'dnt', 'expect', 'host', 'keep-alive', 'origin', 'referer', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'via',
]);

function uploadHeaders(raw) {
  const out = [];
  const pairs = Array.isArray(raw) ? raw : Object.entries(raw || {});
  for (const pair of pairs) {
    if (!Array.isArray(pair) || pair.length < 2) continue;
    const name = String(pair[0]);
    const lower = name.toLowerCase();
    if (FORBIDDEN_HEADERS.has(lower) || lower.startsWith('proxy-') || lower.startsWith('sec-')) continue;
    out.push([name, String(pair[1])]);
  }
  return out;
}

const isLoopback = (host) => host === 'localhost' || host === '[::1]' || /^127\./.test(host);

/** The presigned URL, resolved against the API; a loopback alias of the API's own host
 * (127.0.0.1 for localhost) is mapped onto the API's origin so the PUT stays same-origin. */
function uploadUrl(raw) {
  const u = new URL(String(raw), `${cfg.apiBase}/`);
  const base = new URL(cfg.apiBase);
  if (u.origin !== base.origin && isLoopback(u.hostname) && isLoopback(base.hostname) && u.port === base.port && u.protocol === base.protocol) {
    u.host = base.host;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error('the upload URL is not http(s)');
  return u.href;
}

function putFile(url, method, headers, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method || 'PUT', url);
    for (const [k, v] of headers) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(Math.round((e.loaded / e.total) * 100));
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        resolve();
        return;
      }
      let detail = `the upload was refused (HTTP ${xhr.status})`;
      try {
        const p = JSON.parse(xhr.responseText);
        if (p && (p.detail || p.title || p.message)) detail = p.detail || p.title || p.message;
      } catch (_) {
        /* S3 answers XML; keep the status */
      }
      reject(new ApiError(xhr.status, 'Upload failed', detail));
    };
    xhr.onerror = () => reject(new ApiError(0, 'Upload failed', 'the upload did not reach storage (network or CORS)'));
    xhr.send(file);
  });
}

export async function uploadDataset() {
  const file = $('upload-file').files[0];
  if (!file) throw new Error('choose a CSV file first');
  const status = $('upload-status');
  state.busy.upload = true;
  updateControls();
  try {
    state.uploadFile = file;
    state.uploadDatasetId = null;
    if (state.detectFileIsUpload || !state.detectFile) setDetectFile(file, true);
    status.dataset.state = 'registering';
    status.textContent = `Registering ${file.name} (${fmtBytes(file.size)})…`;
    const grant = await api('/v1/datasets', { method: 'POST', json: { name: file.name, size: file.size } });
    const ds = grant.dataset;
    state.datasets.set(ds.id, ds);
    status.dataset.datasetId = ds.id;
    status.dataset.state = 'uploading';
    status.textContent = `Uploading ${fmtBytes(file.size)}…`;
    const up = grant.upload || {};
    await putFile(uploadUrl(up.url), up.method, uploadHeaders(up.headers), file, (pct) => {
      status.textContent = `Uploading ${fmtBytes(file.size)}… ${pct}%`;
    });
    status.dataset.state = 'profiling';
    status.textContent = `Uploaded; profiling ${file.name}…`;
    const d = await waitDataset(ds.id);
    state.datasets.set(d.id, d);
    if (d.status === 'rejected') {
      status.dataset.state = 'rejected';
      status.textContent = `${file.name} was rejected.`;
      showProfile(d);
      throw new Error(`dataset ${file.name} was rejected: ${d.error || 'no reason given'}`);
    }
    status.dataset.state = 'profiled';
    const p = d.profile || {};
    status.textContent = `${file.name}: ${fmtInt(p.rows)} rows × ${fmtInt(p.columns)} columns profiled.`;
    state.currentDatasetId = d.id;
    state.uploadDatasetId = d.id;
    state.excludeAuto = true;
    renderDatasetSelect();
    showProfile(d);
    prefillTrainExclude(d);
    $('train-status').textContent = 'Ready to train on the uploaded dataset.';
    refreshDatasetsSoon();
  } catch (e) {
    if (status.dataset.state !== 'rejected') {
      status.dataset.state = 'failed';
      status.textContent = `Upload failed: ${messageOf(e)}`;
    }
    throw e;
  } finally {
    state.busy.upload = false;
    updateControls();
  }
}
