// Drives the nomaly dashboard in headless Chromium, as an operator would: connect with a
// key, upload a CSV, read its profile, train an iforest model while watching its progress
// bar, detect with the new model, read the scores plot, the live feed and an anomaly's
// explanation. Then the Streams view: a stream made and fed through the API is charted
// with its band, a spike appended while the page is open is marked in red and explained,
// and the entities of a stream split by host are listed latest anomaly first; the spike
// is marked "not an anomaly" in its explanation and in the live feed, and the stream's
// threshold rises. Then the Alerts view: a webhook rule made in the page fires a test
// alert at a receiver inside this script, whose signature checks with the secret the
// page showed once, and the delivery log shows it delivered; a rule aimed at the
// instance metadata address is refused. Exits 0 with a one-line JSON summary on stdout,
// or 1 with the reason.
//
// Environment: NOMALY_URL, NOMALY_API_KEY, DASHBOARD_CSV, DASHBOARD_EXCLUDE (may be
// empty), DASHBOARD_SCREENSHOT (the Streams and Alerts views' screenshots go beside it,
// as <name>-streams.png and <name>-alerts.png, or to DASHBOARD_STREAMS_SCREENSHOT and
// DASHBOARD_ALERTS_SCREENSHOT). The server must run with --allow-loopback-webhooks (the
// receiver is on 127.0.0.1); DASHBOARD_SKIP_ALERTS=1 leaves the Alerts view out.
// Uses the system Chromium at
// /usr/bin/chromium (override with CHROMIUM_PATH); `npx playwright install` is never
// needed. DASHBOARD_VIEWPORT (e.g. 800x1000) changes the window size, 1600x1000 by
// default. DASHBOARD_SKIP_STREAMS=1 leaves the Streams view out. DASHBOARD_ASSETS=<dir>
// (local/dashboard) serves the page's files from that folder instead of the copy built
// into the server, with the server's own headers: to try the page's changes without
// rebuilding the binary.

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

const WAIT = 60_000;
const OVERALL = 5 * 60_000;

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

function required(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`dashboard test: set ${name}\n`);
    process.exit(2);
  }
  return v;
}

const baseUrl = required('NOMALY_URL').replace(/\/+$/, '');
const apiKey = required('NOMALY_API_KEY');
const csvPath = path.resolve(required('DASHBOARD_CSV'));
const exclude = (process.env.DASHBOARD_EXCLUDE || '').trim();
const screenshotPath = path.resolve(required('DASHBOARD_SCREENSHOT'));
const streamsShotPath = path.resolve(
  process.env.DASHBOARD_STREAMS_SCREENSHOT || path.join(path.dirname(screenshotPath), `${path.basename(screenshotPath, path.extname(screenshotPath))}-streams.png`),
);
const alertsShotPath = path.resolve(
  process.env.DASHBOARD_ALERTS_SCREENSHOT || path.join(path.dirname(screenshotPath), `${path.basename(screenshotPath, path.extname(screenshotPath))}-alerts.png`),
);
const flag = (name) => ['1', 'true', 'yes'].includes((process.env[name] || '').toLowerCase());
const skipStreams = flag('DASHBOARD_SKIP_STREAMS');
const skipAlerts = flag('DASHBOARD_SKIP_ALERTS');
const assetsDir = process.env.DASHBOARD_ASSETS ? path.resolve(process.env.DASHBOARD_ASSETS) : null;
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const [viewWidth, viewHeight] = (process.env.DASHBOARD_VIEWPORT || '1600x1000').split('x').map(Number);

/** Data rows and columns of the CSV, as the profile should count them. */
function csvShape(file) {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length < 2) fail(`${file} has no data rows`);
  const header = lines[0].replace(/^\uFEFF/, '').split(',');
  return { rows: lines.length - 1, columns: header.length, header: header.map((h) => h.trim().replace(/^"(.*)"$/, '$1')) };
}

const step = (msg) => process.stderr.write(`[dashboard] ${msg}\n`);

async function main(page, problems, frames) {
  const shape = csvShape(csvPath);
  if (exclude && !shape.header.includes(exclude)) fail(`DASHBOARD_EXCLUDE=${exclude} is not a column of ${csvPath}`);
  const summary = { ok: false, csv_rows: shape.rows, csv_columns: shape.columns };

  // ---- open and connect ------------------------------------------------------------
  // A link that tries to point the page elsewhere: the page ignores it.
  const lure = '/?api=http%3A%2F%2F127.0.0.1%3A9&ws=ws%3A%2F%2F127.0.0.1%3A9%2Fsteal';
  step(`open ${baseUrl}${lure}`);
  const response = await page.goto(`${baseUrl}${lure}`, { waitUntil: 'domcontentloaded', timeout: WAIT });
  if (!response || !response.ok()) fail(`GET / answered ${response ? response.status() : 'nothing'}`);
  const csp = response.headers()['content-security-policy'] || '';
  if (!csp.includes("script-src 'self'") || !/connect-src 'self'(;|$)/.test(csp)) {
    fail(`the page has no strict Content-Security-Policy (got "${csp}")`);
  }

  // Every value each progress bar takes, seen by a MutationObserver and a 50 ms poll.
  await page.evaluate(() => {
    window.__progress = {};
    const push = (id, raw) => {
      if (raw === null || raw === undefined || !id) return;
      const v = Number(raw);
      const list = (window.__progress[id] ||= []);
      if (list[list.length - 1] !== v) list.push(v);
    };
    const rec = (bar) => push(bar.dataset.taskId, bar.getAttribute('aria-valuenow'));
    // oldValue gives every value a bar held, even several between two callbacks
    new MutationObserver((muts) => {
      for (const m of muts) {
        if (m.type === 'attributes' && m.target.matches('[role="progressbar"]')) push(m.target.dataset.taskId, m.oldValue);
        else if (m.type === 'childList') for (const n of m.addedNodes) if (n.querySelectorAll) n.querySelectorAll('[role="progressbar"]').forEach(rec);
      }
      document.querySelectorAll('[role="progressbar"][data-task-id]').forEach(rec);
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeOldValue: true, attributeFilter: ['aria-valuenow'] });
    setInterval(() => document.querySelectorAll('[role="progressbar"][data-task-id]').forEach(rec), 50);
  });

  step('connect');
  await page.fill('#api-key', apiKey);
  await page.click('#connect');
  await page
    .waitForFunction(() => document.getElementById('conn-state').dataset.state === 'connected' || !document.getElementById('error').hidden, null, { timeout: WAIT })
    .catch(() => {});
  if ((await page.getAttribute('#conn-state', 'data-state')) !== 'connected') {
    fail(`the page did not connect: state "${await page.textContent('#conn-state')}" ${await bannerText(page)}`);
  }
  if (page.url().includes(apiKey)) fail('the API key is in the page URL');
  const stored = await page.evaluate(() => ({ session: Object.keys(sessionStorage), local: localStorage.length }));
  if (stored.local !== 0) fail('the page wrote to localStorage (the key must stay in sessionStorage)');
  if (stored.session.length === 0) fail('the key was not kept in sessionStorage');

  // ---- upload and profile ----------------------------------------------------------
  step(`upload ${csvPath} (${shape.rows} rows, ${shape.columns} columns)`);
  await page.setInputFiles('#upload-file', csvPath);
  await page.click('#upload-btn', { timeout: WAIT });
  await page
    .waitForFunction(() => {
      const p = document.getElementById('profile');
      const s = document.getElementById('upload-status');
      return (p && p.dataset.rows) || (s && ['failed', 'rejected'].includes(s.dataset.state));
    }, null, { timeout: WAIT })
    .catch(async () => fail(`no profile after ${WAIT / 1000} s: "${await page.textContent('#upload-status')}" ${await bannerText(page)}`));
  const profile = await page.evaluate(() => {
    const p = document.getElementById('profile');
    return {
      rows: Number(p.dataset.rows),
      columns: Number(p.dataset.columns),
      datasetId: p.dataset.datasetId,
      tableRows: document.querySelectorAll('#profile-body tr').length,
      status: document.getElementById('upload-status').dataset.state,
    };
  });
  if (profile.status !== 'profiled') fail(`upload ended as "${profile.status}": ${await bannerText(page)}`);
  if (profile.rows !== shape.rows) fail(`the profile shows ${profile.rows} rows; the file has ${shape.rows}`);
  if (profile.columns !== shape.columns) fail(`the profile shows ${profile.columns} columns; the file has ${shape.columns}`);
  if (profile.tableRows !== shape.columns) fail(`the profile table has ${profile.tableRows} rows, one per column expected (${shape.columns})`);
  summary.dataset_id = profile.datasetId;

  // ---- train ----------------------------------------------------------------------
  step('train iforest');
  await page.selectOption('#train-dataset', profile.datasetId, { timeout: WAIT });
  await page.selectOption('#train-algorithm', 'iforest');
  await page.fill('#train-exclude', exclude);
  await page.click('#train-btn', { timeout: WAIT });
  const statusHandle = await page
    .waitForSelector('#train-status[data-task-id]:not([data-task-id=""])', { timeout: WAIT })
    .catch(async () => fail(`training did not start: "${await page.textContent('#train-status')}" ${await bannerText(page)}`));
  const taskId = await statusHandle.getAttribute('data-task-id');
  const modelId = await statusHandle.getAttribute('data-model-id');
  summary.task_id = taskId;
  summary.model_id = modelId;

  const polled = [];
  const deadline = Date.now() + WAIT;
  let last = null;
  for (;;) {
    last = await page.evaluate((id) => {
      const bar = document.querySelector(`[role="progressbar"][data-task-id="${id}"]`);
      const row = document.querySelector(`#tasks-body tr[data-task-id="${id}"]`);
      const status = row && row.querySelector('[data-testid="task-status"]');
      return {
        present: !!bar,
        value: bar ? Number(bar.getAttribute('aria-valuenow')) : null,
        width: bar ? bar.querySelector('.progress-fill').style.width : null,
        status: status ? status.textContent.trim() : null,
        error: row && row.querySelector('[data-testid="task-error"]') ? row.querySelector('[data-testid="task-error"]').textContent : null,
      };
    }, taskId);
    if (last.present && (polled.length === 0 || polled[polled.length - 1] !== last.value)) polled.push(last.value);
    if (last.status === 'failed' || last.status === 'cancelled') fail(`the training task ${last.status}: ${last.error || ''}`);
    if (last.value === 100 && last.status === 'completed') break;
    if (Date.now() > deadline) fail(`the training task did not complete in ${WAIT / 1000} s (bar ${last.value}, status ${last.status})`);
    await page.waitForTimeout(50);
  }
  if (last.width !== '100%') fail(`the completed task's bar is ${last.width} wide, not 100%`);
  const observed = (await page.evaluate((id) => window.__progress[id] || [], taskId)) || [];
  const values = observed.length ? observed : polled;
  const distinct = values.filter((v, i) => i === 0 || v !== values[i - 1]);
  for (let i = 1; i < distinct.length; i += 1) {
    if (distinct[i] < distinct[i - 1]) fail(`the progress bar went backwards: ${distinct.join(' → ')}`);
  }
  if (distinct[distinct.length - 1] !== 100) fail(`the progress bar ended at ${distinct[distinct.length - 1]}, not 100`);
  summary.progress_values = distinct;
  summary.progress_polled = polled;

  step(`wait for model ${modelId} in the models list`);
  await page
    .waitForSelector(`#models-body tr[data-model-id="${modelId}"]`, { timeout: WAIT })
    .catch(() => fail(`model ${modelId} never appeared in the models list`));

  // ---- detect -------------------------------------------------------------------------
  step('detect with the new model');
  await page.selectOption('#detect-model', modelId, { timeout: WAIT });
  const fileName = await page.textContent('#detect-file-name');
  if (!fileName.includes(path.basename(csvPath))) fail(`the detect card does not use the uploaded file (shows "${fileName}")`);
  if (exclude) {
    await page
      .waitForFunction((col) => document.getElementById('detect-exclude').value.split(',').map((x) => x.trim()).includes(col), exclude, { timeout: 10_000 })
      .catch(async () => fail(`the detect card did not pre-fill the excluded column ${exclude} (has "${await page.inputValue('#detect-exclude')}")`));
  }
  if (!(await page.isChecked('#detect-explain'))) fail('"explain" is not on by default');
  await page.click('#detect-btn', { timeout: WAIT });
  await page
    .waitForFunction(
      (rows) => {
        const svg = document.getElementById('scores-plot');
        const st = document.getElementById('detect-status');
        return (svg && svg.dataset.rows === String(rows)) || (st && st.dataset.state === 'failed');
      },
      shape.rows,
      { timeout: WAIT },
    )
    .catch(async () => fail(`no scores plot of ${shape.rows} rows: "${await page.textContent('#detect-status')}" ${await bannerText(page)}`));
  const plot = await page.evaluate(() => {
    const svg = document.getElementById('scores-plot');
    return {
      state: document.getElementById('detect-status').dataset.state,
      rows: Number(svg.dataset.rows),
      dense: svg.dataset.dense === 'true',
      points: svg.querySelectorAll('circle.pt').length,
      anomalies: svg.querySelectorAll('circle.pt.anomaly[data-row]').length,
      threshold: !!svg.querySelector('#threshold-line'),
      summaryAnomalies: Number(document.getElementById('scores-summary').dataset.anomalies),
    };
  });
  if (plot.state === 'failed') fail(`detection failed: ${await page.textContent('#detect-status')}`);
  if (!plot.dense && plot.points !== shape.rows) fail(`the plot has ${plot.points} points for ${shape.rows} rows`);
  if (!plot.threshold) fail('the plot has no threshold line');
  if (plot.anomalies === 0) fail('the plot marks no anomalies');
  if (plot.anomalies !== plot.summaryAnomalies) fail(`the plot marks ${plot.anomalies} anomalies; the summary says ${plot.summaryAnomalies}`);
  summary.rows_plotted = plot.dense ? plot.rows : plot.points;
  summary.anomalies_marked = plot.anomalies;

  step('wait for the anomaly.detected event in the live feed');
  await page
    .waitForSelector('#feed li[data-type="anomaly.detected"]', { timeout: WAIT })
    .catch(() => fail('no anomaly.detected event in the live feed'));
  await page.waitForSelector('#recent-detections li', { timeout: WAIT }).catch(() => fail('the detection is not in "recent detections"'));

  // ---- explanation --------------------------------------------------------------------
  step('click an anomaly and read its explanation');
  const row = await page.evaluate(() => {
    const svg = document.getElementById('scores-plot');
    svg.scrollIntoView({ block: 'center' });
    const selected = document.getElementById('explain-chart').dataset.row;
    const circles = Array.from(svg.querySelectorAll('circle.pt.anomaly[data-row]')).reverse();
    // one that is on top at its own centre, so a click lands on it
    for (const c of circles) {
      if (c.dataset.row === selected) continue;
      const b = c.getBoundingClientRect();
      if (document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2) === c) return c.dataset.row;
    }
    return null;
  });
  if (row === null) {
    // no free anomaly point: use the list of top anomalies instead
    await page.click('#anomaly-list button[data-row]:not(.active)', { timeout: WAIT });
  } else {
    await page.click(`#scores-plot circle.pt.anomaly[data-row="${row}"]`, { timeout: WAIT });
  }
  const chosen = row ?? (await page.getAttribute('#anomaly-list button.active', 'data-row'));
  await page
    .waitForSelector(`#explain-chart[data-row="${chosen}"] [data-testid="explain-bar"]`, { timeout: WAIT })
    .catch(async () => fail(`no explanation bars for row ${chosen}: "${await page.textContent('#explain-chart')}"`));
  summary.explained_row = Number(chosen);
  summary.features_explained = await page.$$eval('#explain-chart [data-testid="explain-bar"]', (bars) => bars.length);
  summary.top_feature = await page.getAttribute('#explain-chart [data-testid="explain-bar"]', 'data-feature');
  summary.model_feedback = await modelFeedbackStep(page, { row: Number(chosen), modelId, datasetId: profile.datasetId });

  summary.feed_entries = await page.$$eval('#feed li', (items) => items.length);
  summary.anomaly_events = await page.$$eval('#feed li[data-type="anomaly.detected"]', (items) => items.length);
  summary.recent_detections = await page.$$eval('#recent-detections li', (items) => items.length);

  // ---- no errors anywhere ------------------------------------------------------------
  if (await page.isVisible('#error')) fail(`the error banner shows: ${await bannerText(page)}`);
  if (problems.length) fail(`the browser reported errors:\n  ${problems.join('\n  ')}`);

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: screenshotPath, fullPage: true });
  summary.screenshot = screenshotPath;

  if (!skipStreams) {
    await streamsScenario(page, summary, frames);
    await entityScenario(page, summary, frames);
    if (await page.isVisible('#error')) fail(`the error banner shows: ${await bannerText(page)}`);
    if (problems.length) fail(`the browser reported errors:\n  ${problems.join('\n  ')}`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: streamsShotPath, fullPage: true });
    summary.streams_screenshot = streamsShotPath;
    step(`screenshot of the Streams view: ${streamsShotPath}`);
  }
  if (!skipAlerts) {
    await alertsScenario(page, summary, problems);
    if (await page.isVisible('#error')) fail(`the error banner shows: ${await bannerText(page)}`);
    if (problems.length) fail(`the browser reported errors:\n  ${problems.join('\n  ')}`);
  }
  summary.ok = true;
  return summary;
}

// ---- streams ------------------------------------------------------------------------------

/** One API call with the key, as the page makes them; fails the test on an error. */
async function apiCall(method, p, body) {
  const headers = { Authorization: `Bearer ${apiKey}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  for (let attempt = 0; ; attempt += 1) {
    res = await fetch(`${baseUrl}${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status !== 429 || attempt >= 5) break;
    await new Promise((r) => setTimeout(r, 1000 * (Number(res.headers.get('retry-after')) || 1)));
  }
  const text = await res.text();
  if (!res.ok) fail(`${method} ${p} answered ${res.status}: ${text.slice(0, 400)}`);
  try {
    return text ? JSON.parse(text) : null;
  } catch (_) {
    return fail(`${method} ${p} answered something that is not JSON: ${text.slice(0, 200)}`);
  }
}

/** A quiet series: a slow wave and a little fixed noise around `base`. */
const quiet = (i, base) => Number((base + Math.sin(i / 3) + (((i * 7919) % 13) - 6) / 20).toFixed(4));

/** How the page writes a number (format.js fmtNum with 4 digits). */
function fmtNum(x) {
  const n = Number(x);
  if (!Number.isFinite(n)) return String(x);
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a >= 1e6 || a < 1e-3) return n.toExponential(2);
  if (Number.isInteger(n)) return String(n);
  return String(Number(n.toPrecision(4)));
}

/** Latest anomaly first, those without one last, then by name: the picker's order. */
function entityOrder(items) {
  const at = (e) => (e.last_anomaly === null || e.last_anomaly === undefined ? null : typeof e.last_anomaly === 'number' ? e.last_anomaly : Date.parse(e.last_anomaly) / 1000);
  return items
    .slice()
    .sort((a, b) => {
      const la = at(a);
      const lb = at(b);
      if (la !== lb) {
        if (la === null) return 1;
        if (lb === null) return -1;
        return lb - la;
      }
      return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
    })
    .map((e) => e.name);
}

/** Waits for the page to have asked the WebSocket for `channel` and been answered. */
async function waitSubscribed(page, frames, channel) {
  const deadline = Date.now() + WAIT;
  while (!frames.subscribedTo.has(channel)) {
    if (Date.now() > deadline) {
      const asked = frames.sent.some((m) => m.action === 'subscribe' && m.channel === channel);
      fail(asked ? `the server never confirmed the subscription to ${channel}${frames.errors.length ? `: ${JSON.stringify(frames.errors.slice(-1)[0])}` : ''}` : `the page never subscribed to ${channel} (sent: ${JSON.stringify(frames.sent.slice(-5))})`);
    }
    await page.waitForTimeout(50);
  }
}

/** What the chart of the Streams view shows. */
function readChart(page) {
  return page.evaluate(() => {
    const svg = document.getElementById('stream-chart');
    return {
      streamId: svg.dataset.streamId,
      entity: svg.dataset.entity,
      points: Number(svg.dataset.points),
      band: Number(svg.dataset.band),
      anomalies: Number(svg.dataset.anomalies),
      dots: svg.querySelectorAll('circle.vpt').length,
      bandPaths: svg.querySelectorAll('path.band').length,
      expectedLines: svg.querySelectorAll('polyline.expected').length,
      valueLine: svg.querySelector('polyline.value-line') ? svg.querySelector('polyline.value-line').getAttribute('points').trim().split(/\s+/).length : 0,
      marks: Array.from(svg.querySelectorAll('circle.anomaly[data-t]')).map((c) => Number(c.dataset.t)),
    };
  });
}

/** Clicks the anomaly mark of time `t` on the chart (or its entry in the list, should
 * another element lie over the mark) and reads the explanation. */
async function explain(page, t) {
  const sel = `#stream-chart circle.anomaly[data-t="${t}"]`;
  const onTop = await page.evaluate((s) => {
    const c = document.querySelector(s);
    if (!c) return false;
    c.scrollIntoView({ block: 'center' });
    const b = c.getBoundingClientRect();
    const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
    return hit === c || (hit && c.contains(hit));
  }, sel);
  if (onTop) await page.click(sel, { timeout: WAIT });
  else await page.click(`#stream-anomalies button[data-t="${t}"]`, { timeout: WAIT });
  await page.waitForSelector(`#stream-explain[data-t="${t}"]`, { timeout: WAIT }).catch(async () => fail(`clicking the anomaly at ${t} showed no explanation: "${await page.textContent('#stream-explain')}"`));
  return page.evaluate(() => {
    const box = document.getElementById('stream-explain');
    return {
      how: 'chart',
      text: box.textContent.replace(/\s+/g, ' ').trim(),
      score: Number(box.dataset.score),
      columns: Array.from(box.querySelectorAll('[data-testid="stream-explain-column"]')).map((r) => ({ column: r.dataset.column, direction: r.dataset.direction })),
    };
  }).then((r) => ({ ...r, how: onTop ? 'chart' : 'list' }));
}

async function openStreamsView(page) {
  if ((await page.getAttribute('#tab-streams', 'aria-selected')) !== 'true') await page.click('#tab-streams');
  await page.waitForSelector('#view-streams:not([hidden])', { timeout: WAIT });
}

async function pickStream(page, id) {
  const item = `#streams-list button[data-stream-id="${id}"]`;
  await page.waitForSelector(item, { timeout: 5_000 }).catch(async () => {
    await page.click('#streams-refresh');
    await page.waitForSelector(item, { timeout: WAIT }).catch(() => fail(`stream ${id} is not in the Streams list`));
  });
  await page.click(item);
}

async function streamsScenario(page, summary, frames) {
  step('streams: make a rolling_mean stream (window 20) and append 60 quiet points, a spike and 30 more');
  const made = await apiCall('POST', '/v1/streams', { name: 'cpu', detector: 'rolling_mean', params: { window: 20 } });
  const id = made.stream_id;
  if (!id) fail(`POST /v1/streams gave no stream_id: ${JSON.stringify(made)}`);
  const t0 = Math.floor(Date.now() / 60_000) * 60 - 3 * 3600;
  const at = (i) => t0 + 60 * i;
  const points = [];
  for (let i = 0; i <= 90; i += 1) points.push({ timestamp: at(i), value: i === 60 ? 40 : quiet(i, 10) });
  const first = await apiCall('POST', `/v1/streams/${id}/points`, { points });
  if (!(first.anomalies || []).some((a) => a.timestamp === at(60))) fail(`the server did not flag the first spike (anomalies: ${JSON.stringify(first.anomalies)})`);
  summary.stream_id = id;

  step('streams: open the view and pick the stream');
  await openStreamsView(page);
  await pickStream(page, id);
  const view = await apiCall('GET', `/v1/streams/${id}`);
  const recent = Array.isArray(view.recent) ? view.recent : fail(`GET /v1/streams/{id} has no \`recent\` array: ${JSON.stringify(view).slice(0, 300)}`);
  if (recent.length === 0) fail('GET /v1/streams/{id} lists no recent points after 91 were appended');
  if (recent[recent.length - 1].t !== at(90)) fail(`the stream's last recent point is at ${recent[recent.length - 1].t}, not ${at(90)}`);
  const banded = recent.filter((p) => Number.isFinite(p.e) && Number.isFinite(p.b)).length;
  if (banded === 0) fail('no recent point of the rolling_mean stream has an expected value and a band (e, b)');
  await page
    .waitForFunction(([sid, n]) => {
      const svg = document.getElementById('stream-chart');
      return svg.dataset.streamId === sid && Number(svg.dataset.points) >= n;
    }, [id, recent.length], { timeout: WAIT })
    .catch(async () => fail(`the chart never showed the stream's ${recent.length} recent points (shows ${JSON.stringify(await readChart(page))}; "${await page.textContent('#stream-empty')}")`));
  let chart = await readChart(page);
  if (chart.dots !== chart.points || chart.points !== recent.length) fail(`the chart draws ${chart.dots} points (says ${chart.points}); the stream has ${recent.length} recent points`);
  if (chart.valueLine !== recent.length) fail(`the value line has ${chart.valueLine} vertices for ${recent.length} points`);
  if (chart.bandPaths === 0 || chart.band !== banded) fail(`the band covers ${chart.band} points in ${chart.bandPaths} pieces; ${banded} points have one`);
  if (chart.expectedLines === 0) fail('no expected line');
  const firstInView = recent.some((p) => p.t === at(60));
  if (firstInView && !chart.marks.includes(at(60))) fail(`the first spike (${at(60)}) is not marked red on the chart (marks: ${chart.marks.join(', ')})`);
  summary.stream_points_charted = chart.points;
  summary.stream_band_points = chart.band;

  step('streams: wait for the page to listen to the stream on the WebSocket');
  await waitSubscribed(page, frames, `stream:${id}`);
  await page.waitForSelector('#stream-status[data-channel-live="true"]', { timeout: WAIT }).catch(() => fail('the page does not say it listens to the stream'));

  step('streams: append a spike while the page is open');
  const spikeT = at(91);
  const sent = Date.now();
  const spike = await apiCall('POST', `/v1/streams/${id}/points`, { points: [{ timestamp: spikeT, value: 40 }] });
  const found = (spike.anomalies || []).find((a) => a.timestamp === spikeT);
  if (!found) fail(`the server did not flag the spike at ${spikeT}: ${JSON.stringify(spike)}`);
  const mark = `#stream-chart circle.anomaly[data-t="${spikeT}"]`;
  await page.waitForSelector(mark, { timeout: WAIT }).catch(async () => fail(`no red mark for the spike at ${spikeT} (marks: ${(await readChart(page)).marks.join(', ')})`));
  summary.spike_marked_ms = Date.now() - sent;
  summary.spike_marked_by = await page.getAttribute(mark, 'data-source');
  await page.waitForSelector(`#stream-anomalies button[data-t="${spikeT}"]`, { timeout: WAIT }).catch(() => fail('the spike is not in the list under the chart'));

  step('streams: click the spike and read its explanation');
  const ex = await explain(page, spikeT);
  const wantScore = `score ${fmtNum(found.score)} vs threshold ${fmtNum(view.threshold)}`;
  if (!ex.text.includes(wantScore)) fail(`the explanation does not say "${wantScore}": "${ex.text}"`);
  if (Math.abs(ex.score - found.score) > 1e-9) fail(`the explanation's score is ${ex.score}; the API said ${found.score}`);
  if (!ex.text.includes(`raw score ${fmtNum(found.raw_score)}`)) fail(`the explanation does not give the raw score ${fmtNum(found.raw_score)}: "${ex.text}"`);
  const col = ex.columns.find((c) => c.column === 'value');
  if (!col || col.direction !== 'above') fail(`the explanation does not say the value is above what was expected: ${JSON.stringify(ex.columns)}`);
  summary.spike_explained = { t: spikeT, score: ex.score, clicked: ex.how, text: ex.text.slice(0, 200) };

  step('streams: the next poll brings the spike among the recent points');
  await page
    .waitForSelector(`#stream-chart circle.vpt[data-t="${spikeT}"]`, { timeout: WAIT })
    .catch(() => fail('the spike never came among the charted points (is GET /v1/streams/{id} polled?)'));
  chart = await readChart(page);
  if (!chart.marks.includes(spikeT)) fail('the spike lost its red mark after the poll');
  if (!(await page.isVisible(`#stream-explain[data-t="${spikeT}"]`))) fail('the explanation did not survive the poll');

  await streamFeedback(page, summary, { id, spikeT, spike, found });
}

/** Waits for the verdict box `box` (a selector) to show what its verdict did; fails on
 * the banner or a refusal. Returns the text. */
async function verdictShown(page, box, what) {
  await page
    .waitForFunction((sel) => {
      const b = document.querySelector(sel);
      const st = b && b.querySelector('.feedback-result');
      return (st && (st.dataset.state === 'done' || st.dataset.state === 'failed')) || !document.getElementById('error').hidden;
    }, box, { timeout: WAIT })
    .catch(async () => fail(`${what}: no effect shown after "Not an anomaly" (${JSON.stringify(await page.textContent(box).catch(() => null))})`));
  const shown = await page.evaluate((sel) => {
    const b = document.querySelector(sel);
    const st = b.querySelector('.feedback-result');
    return {
      state: st.dataset.state,
      text: st.textContent.trim(),
      disabled: Array.from(b.querySelectorAll('button[data-label]')).map((x) => x.disabled),
      chosen: (b.querySelector('button.chosen') || {}).dataset?.label || null,
    };
  }, box);
  if (shown.state !== 'done') fail(`${what}: the verdict was not recorded: ${shown.text} ${await bannerText(page)}`);
  if (!shown.disabled.every(Boolean)) fail(`${what}: the buttons are still enabled after the verdict`);
  if (shown.chosen !== 'false_positive') fail(`${what}: the page does not show "Not an anomaly" as chosen (${shown.chosen})`);
  return shown.text;
}

async function streamFeedback(page, summary, { id, spikeT, spike, found }) {
  step('feedback: "Not an anomaly" on the spike in its explanation');
  const before = Number((await apiCall('GET', `/v1/streams/${id}`)).threshold);
  const box = '#stream-explain [data-testid="stream-feedback"]';
  await page.waitForSelector(`${box} button[data-label="false_positive"]:not([disabled])`, { timeout: WAIT }).catch(async () => fail(`the explanation has no enabled "Not an anomaly" button: "${await page.textContent('#stream-explain')}"`));
  if (!(await page.isVisible(`${box} button[data-label="true_positive"]`))) fail('the explanation has no "Confirm" button');
  await page.click(`${box} button[data-label="false_positive"]`);
  const text = await verdictShown(page, box, 'the explanation');
  if (!/threshold raised/.test(text)) fail(`the explanation's verdict does not say the threshold was raised: "${text}"`);
  const after = Number((await apiCall('GET', `/v1/streams/${id}`)).threshold);
  if (!(after > before)) fail(`the stream's threshold is ${after} after the verdict; it was ${before}`);
  const verdicts = (await apiCall('GET', '/v1/feedback?limit=100')).items || [];
  const v = verdicts.find((f) => f.stream_id === id && f.label === 'false_positive' && Number(f.from) === spikeT && Number(f.to) === spikeT);
  if (!v) fail(`GET /v1/feedback does not list the verdict on ${spikeT}: ${JSON.stringify(verdicts).slice(0, 600)}`);
  if (v.effect && !text.includes(v.effect)) fail(`the page shows "${text}"; the verdict's effect is "${v.effect}"`);
  // the page reads the stream again: its threshold chip follows
  await page
    .waitForFunction((want) => Array.from(document.querySelectorAll('#stream-summary .chip')).some((c) => c.textContent.includes('threshold') && c.textContent.includes(want)), fmtNum(after), { timeout: WAIT })
    .catch(async () => fail(`the stream's summary does not show the new threshold ${fmtNum(after)}: "${await page.textContent('#stream-summary')}"`));
  summary.stream_feedback = { feedback_id: v.id, threshold_before: before, threshold_after: after, effect: text };

  step('feedback: "Not an anomaly" on the spike\'s anomaly.detected event in the live feed');
  if (!spike.event_id) fail(`the append answer gives no event_id for the spike's anomaly.detected event: ${JSON.stringify(spike).slice(0, 400)}`);
  const item = `#feed li[data-type="anomaly.detected"][data-event-id="${spike.event_id}"]`;
  const feedBox = `${item} [data-testid="feed-feedback"]`;
  await page.waitForSelector(`${feedBox} button[data-label="false_positive"]`, { timeout: WAIT }).catch(async () => {
    const there = !!(await page.$(item));
    fail(there ? `the live feed's entry for event ${spike.event_id} has no verdict buttons` : `the spike's anomaly.detected event ${spike.event_id} never reached the live feed`);
  });
  const index = Number(await page.getAttribute(feedBox, 'data-index'));
  if (Number.isInteger(found.index) && index !== found.index) fail(`the feed's verdict names point ${index} of the event; the spike is point ${found.index}`);
  await page.click(`${feedBox} button[data-label="false_positive"]`);
  const feedText = await verdictShown(page, feedBox, 'the live feed');
  const listed = (await apiCall('GET', '/v1/feedback?limit=100')).items || [];
  const fv = listed.find((f) => f.stream_id === id && f.event_id === spike.event_id && Number(f.index) === index);
  if (!fv) fail(`GET /v1/feedback does not list the feed's verdict on event ${spike.event_id} point ${index}`);
  summary.feed_feedback = { feedback_id: fv.id, index, effect: feedText };
}

/** The verdict buttons of the Models view's explanation: there and enabled (the
 * detection scored the uploaded dataset); "Not an anomaly" clicked and the verdict read
 * back from GET /v1/feedback. */
async function modelFeedbackStep(page, { row, modelId, datasetId }) {
  step(`feedback: the verdict buttons of row ${row} in the Models view`);
  const box = '#explain-feedback [data-testid="model-feedback"]';
  await page.waitForSelector(`${box}[data-row="${row}"]`, { timeout: WAIT }).catch(() => fail(`the explanation of row ${row} has no verdict buttons`));
  const buttons = await page.$$eval(`${box} button[data-label]`, (bs) => bs.map((b) => ({ label: b.dataset.label, disabled: b.disabled, title: b.title })));
  const fp = buttons.find((b) => b.label === 'false_positive');
  if (!fp || !buttons.some((b) => b.label === 'true_positive')) fail(`row ${row} is an anomaly but has no "Not an anomaly" and "Confirm" buttons: ${JSON.stringify(buttons)}`);
  if (fp.disabled) fail(`the verdict buttons are disabled though the detection scored the uploaded dataset: ${fp.title}`);
  step(`feedback: "Not an anomaly" on row ${row} of model ${modelId}`);
  await page.click(`${box} button[data-label="false_positive"]`);
  const text = await verdictShown(page, box, 'the Models view');
  const listed = (await apiCall('GET', '/v1/feedback?limit=100')).items || [];
  const v = listed.find((f) => f.model_id === modelId && f.dataset_id === datasetId && Number(f.row) === row);
  if (!v) fail(`GET /v1/feedback does not list a verdict on model ${modelId}, dataset ${datasetId}, row ${row}: ${JSON.stringify(listed).slice(0, 600)}`);
  if (v.label !== 'false_positive') fail(`the verdict on row ${row} is ${v.label}, not false_positive`);
  return { row, feedback_id: v.id, effect: text };
}

// ---- alerts -------------------------------------------------------------------------------

/** A webhook receiver on 127.0.0.1: records each request (headers and raw body) and
 * answers 200. */
async function startReceiver() {
  const got = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { got, port: server.address().port, close: () => new Promise((r) => server.close(() => r())) };
}

/** Whether `header` (`t=<unix>,v1=<hex>`) signs `body` with `secret`. */
function signatureOk(secret, header, body) {
  const parts = Object.fromEntries(String(header || '').split(',').map((p) => p.split('=', 2)).filter((p) => p.length === 2));
  if (!/^\d+$/.test(parts.t || '') || !/^[0-9a-f]{64}$/.test(parts.v1 || '')) return { ok: false, why: `malformed header "${header}"` };
  if (Math.abs(Date.now() / 1000 - Number(parts.t)) > 300) return { ok: false, why: `t=${parts.t} is more than 5 minutes from now` };
  const want = crypto.createHmac('sha256', secret).update(`${parts.t}.`).update(body).digest();
  const ok = crypto.timingSafeEqual(want, Buffer.from(parts.v1, 'hex'));
  return { ok, why: ok ? '' : 'the HMAC does not match', t: Number(parts.t) };
}

async function alertsScenario(page, summary, problems) {
  const receiver = await startReceiver();
  try {
    await alertsSteps(page, summary, problems, receiver);
  } finally {
    await receiver.close();
  }
}

async function alertsSteps(page, summary, problems, receiver) {
  step('alerts: open the view with the keyboard (End on the tabs)');
  await page.focus('#tab-models');
  await page.keyboard.press('End');
  await page.waitForSelector('#view-alerts:not([hidden])', { timeout: WAIT }).catch(() => fail('End on the tabs did not open the Alerts view'));
  if ((await page.getAttribute('#tab-alerts', 'aria-selected')) !== 'true') fail('the Alerts tab is not shown as selected');
  if (!(await page.evaluate(() => document.activeElement && document.activeElement.id === 'tab-alerts' && location.hash === '#alerts'))) fail('the Alerts tab does not have the focus, or the address is not #alerts');
  await page
    .waitForSelector('#alert-rules[data-loaded="true"]', { state: 'attached', timeout: WAIT })
    .catch(async () => fail(`the alert rules were never read ${await bannerText(page)}`));
  const rulesBefore = ((await apiCall('GET', '/v1/alerts?limit=100')).items || []).length;

  const hook = `http://127.0.0.1:${receiver.port}/hook`;
  step(`alerts: make a webhook rule for anomaly.detected to ${hook}`);
  await page.fill('#alert-name', 'browser hook');
  if (!(await page.isChecked('#alert-form input[name="alert-event"][value="anomaly.detected"]'))) fail('anomaly.detected is not checked by default');
  await page.check('#alert-dest-webhook');
  await page.fill('#alert-url', hook);
  await page.fill('#alert-cooldown', '60');
  await page.check('#alert-form input[name="alert-group"][value="stream"]');
  await page.click('#alert-create');
  await page
    .waitForSelector('#alert-secret-box:not([hidden])', { timeout: WAIT })
    .catch(async () => fail(`no secret shown after making the rule ${await bannerText(page)}`));
  const secret = await page.inputValue('#alert-secret');
  const ruleId = await page.getAttribute('#alert-secret-box', 'data-rule-id');
  if (!/^whsec_[0-9a-f]{16,}$/.test(secret)) fail(`the page shows "${secret.slice(0, 12)}…" as the secret, not a whsec_ secret`);
  const warning = await page.textContent('#alert-secret-box');
  if (!/only this once/i.test(warning) || !/never shows it again/i.test(warning)) fail(`the secret box does not warn it is shown once: "${warning}"`);
  const rule = `#alert-rules li[data-rule-id="${ruleId}"]`;
  await page.waitForSelector(rule, { timeout: WAIT }).catch(() => fail(`rule ${ruleId} is not in the list`));
  const stored = await apiCall('GET', `/v1/alerts/${ruleId}`);
  if (stored.secret) fail('GET /v1/alerts/{id} shows the secret again');
  if (!stored.destination || !stored.destination.webhook || stored.destination.webhook.url !== hook) fail(`the rule's destination is ${JSON.stringify(stored.destination)}`);
  if (JSON.stringify(stored.match.events) !== '["anomaly.detected"]' || stored.cooldown !== 60 || JSON.stringify(stored.group_by) !== '["stream"]' || stored.enabled !== true) {
    fail(`the rule is not what the form said: ${JSON.stringify(stored)}`);
  }
  const listedText = await page.textContent(rule);
  for (const want of ['browser hook', 'anomaly.detected', hook, '1 min', 'stream', 'enabled']) if (!listedText.includes(want)) fail(`the rule's entry does not show "${want}": "${listedText}"`);
  await page.click('#alert-secret-copy');
  await page.waitForFunction(() => document.getElementById('alert-secret-status').textContent.trim() !== '', null, { timeout: WAIT }).catch(() => fail('"Copy" said nothing'));
  summary.alert_rule_id = ruleId;

  step('alerts: test-fire the rule and wait for the receiver');
  const sent = Date.now();
  await page.click(`${rule} button[data-action="test"]`);
  const deadline = Date.now() + WAIT;
  const isTest = (r) => {
    try {
      return JSON.parse(r.body.toString('utf8')).test === true;
    } catch (_) {
      return false;
    }
  };
  let req;
  while (!(req = receiver.got.find(isTest))) {
    if (Date.now() > deadline) fail(`the receiver got no test alert in ${WAIT / 1000} s after the test fire (${receiver.got.length} other requests) ${await bannerText(page)}`);
    await page.waitForTimeout(50);
  }
  if (req.method !== 'POST' || req.url !== '/hook') fail(`the receiver got ${req.method} ${req.url}`);
  const sig = signatureOk(secret, req.headers['nomaly-signature'], req.body);
  if (!sig.ok) fail(`the alert's Nomaly-Signature does not check with the secret the page showed: ${sig.why}`);
  const body = JSON.parse(req.body.toString('utf8'));
  if (body.test !== true || !body.rule || body.rule.id !== ruleId) fail(`the receiver did not get a test alert of rule ${ruleId}: ${req.body.toString('utf8').slice(0, 400)}`);
  if (req.headers['nomaly-delivery-id'] !== body.id) fail(`Nomaly-Delivery-Id ${req.headers['nomaly-delivery-id']} is not the body's id ${body.id}`);
  summary.alert_received_ms = Date.now() - sent;
  summary.alert_signature_verified = true;

  step('alerts: the delivery log shows the test alert delivered');
  const row = `#deliveries-table[data-rule-id="${ruleId}"] tr[data-delivery-id="${body.id}"]`;
  await page.waitForSelector(row, { timeout: WAIT }).catch(async () => fail(`the delivery log does not list ${body.id}: "${await page.textContent('#deliveries-card')}"`));
  await page
    .waitForSelector(`${row}[data-status="delivered"]`, { timeout: WAIT })
    .catch(async () => fail(`the delivery log never showed ${body.id} delivered (shows "${await page.textContent(row)}")`));
  const cells = await page.$$eval(`${row} td`, (tds) => tds.map((t) => t.textContent.trim()));
  const d = await apiCall('GET', `/v1/alerts/${ruleId}/deliveries/${body.id}`);
  if (d.status !== 'delivered' || d.last_status !== 200 || d.attempts !== 1) fail(`GET the delivery: ${JSON.stringify(d)}`);
  if (!cells.includes('delivered') || !cells.includes('200') || cells[3] !== '1' || !cells[1].startsWith('test')) fail(`the log's row says ${JSON.stringify(cells)}`);
  summary.alert_delivery = { id: body.id, status: d.status, attempts: d.attempts, latency_ms: d.latency_ms, shown: cells };

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: alertsShotPath, fullPage: true });
  summary.alerts_screenshot = alertsShotPath;
  step(`screenshot of the Alerts view: ${alertsShotPath}`);

  step('alerts: dismiss the secret; disable and enable the rule');
  await page.click('#alert-secret-dismiss');
  if (await page.isVisible('#alert-secret-box')) fail('the secret box is still shown after "I have stored it"');
  if ((await page.inputValue('#alert-secret')) !== '') fail('the page kept the secret after it was dismissed');
  if ((await page.evaluate(() => document.documentElement.outerHTML)).includes(secret)) fail('the secret is still somewhere in the page after it was dismissed');
  for (const enabled of [false, true]) {
    await page.click(`${rule} button[data-action="toggle"]`);
    await page.waitForSelector(`${rule}[data-enabled="${enabled}"]`, { timeout: WAIT }).catch(async () => fail(`the rule is not shown ${enabled ? 'enabled' : 'disabled'} ${await bannerText(page)}`));
    const now = await apiCall('GET', `/v1/alerts/${ruleId}`);
    if (now.enabled !== enabled || now.destination.webhook.url !== hook || now.cooldown !== 60) fail(`after the toggle the rule is ${JSON.stringify(now)}`);
  }

  step('alerts: a rule aimed at the instance metadata address is refused');
  const count = async () => Number(await page.getAttribute('#alert-rules', 'data-count'));
  const shownBefore = await count();
  const problemsBefore = problems.length;
  await page.fill('#alert-name', 'metadata');
  await page.fill('#alert-url', 'https://169.254.169.254/x');
  await page.click('#alert-create');
  await page.waitForSelector('#error:not([hidden])', { timeout: WAIT }).catch(() => fail('no error shown for a webhook to 169.254.169.254'));
  const refusal = (await page.textContent('#error-text')).trim();
  if (!refusal.includes('169.254.169.254') || !/link-local|may not/.test(refusal)) fail(`the banner does not give the refusal: "${refusal}"`);
  if ((await count()) !== shownBefore) fail(`the rule list grew to ${await count()} after a refused rule`);
  if (await page.isVisible('#alert-secret-box')) fail('a secret is shown for a refused rule');
  const rulesAfter = ((await apiCall('GET', '/v1/alerts?limit=100')).items || []).length;
  if (rulesAfter !== rulesBefore + 1) fail(`the API lists ${rulesAfter} rules; ${rulesBefore + 1} expected`);
  // the browser logs the 422 answer to the console: that one is expected
  problems.splice(problemsBefore, problems.length - problemsBefore, ...problems.slice(problemsBefore).filter((p) => !/status of 422/.test(p)));
  await page.click('#error-close');
  summary.alert_refused = refusal;

  step('alerts: delete the rule (cancelled once, then confirmed)');
  let asked = 0;
  let answer = false;
  const onDialog = (dlg) => {
    asked += 1;
    if (answer) dlg.accept();
    else dlg.dismiss();
  };
  page.on('dialog', onDialog);
  try {
    await Promise.all([
      page.waitForEvent('dialog', { timeout: WAIT }).catch(() => fail('"Delete" did not ask first')),
      page.click(`${rule} button[data-action="delete"]`),
    ]);
    const kept = await fetch(`${baseUrl}/v1/alerts/${ruleId}`, { headers: { Authorization: `Bearer ${apiKey}` } });
    if (kept.status !== 200) fail(`GET the rule answered ${kept.status} after its deletion was cancelled`);
    if (asked !== 1 || !(await page.$(rule))) fail('"Delete" did not ask first, or deleted without a yes');
    answer = true;
    await page.click(`${rule} button[data-action="delete"]`);
    await page.waitForSelector(rule, { state: 'detached', timeout: WAIT }).catch(() => fail('the rule is still listed after its deletion was confirmed'));
  } finally {
    page.off('dialog', onDialog);
  }
  const gone = await fetch(`${baseUrl}/v1/alerts/${ruleId}`, { headers: { Authorization: `Bearer ${apiKey}` } });
  if (gone.status !== 404) fail(`GET the deleted rule answered ${gone.status}`);
  summary.alert_deleted = true;
  summary.alert_requests_received = receiver.got.length;
}

async function entityScenario(page, summary, frames) {
  step('entities: make a stream split by host and append 60 points for each of 3 hosts, a spike on web-2');
  const made = await apiCall('POST', '/v1/streams', { name: 'fleet', entity: 'host', detector: 'rolling_mean', params: { window: 20 } });
  const id = made.stream_id;
  if (!made.entity || made.entity.field !== 'host') fail(`the new stream is not split by host: ${JSON.stringify(made).slice(0, 400)}`);
  const hosts = ['web-1', 'web-2', 'web-3'];
  const bases = { 'web-1': 20, 'web-2': 35, 'web-3': 50 };
  const t0 = Math.floor(Date.now() / 60_000) * 60 - 2 * 3600;
  const points = [];
  for (let i = 0; i < 60; i += 1) hosts.forEach((host, k) => points.push({ timestamp: t0 + 60 * i + k, value: quiet(i + 7 * k, bases[host]), host }));
  const spikeT = t0 + 60 * 60 + 1;
  points.push({ timestamp: spikeT, value: bases['web-2'] + 30, host: 'web-2' });
  const appended = await apiCall('POST', `/v1/streams/${id}/points`, { points });
  if (!(appended.anomalies || []).some((a) => a.timestamp === spikeT)) fail(`the server did not flag web-2's spike: ${JSON.stringify(appended.anomalies)}`);

  step('entities: pick the stream and read the entity picker');
  await pickStream(page, id);
  await page
    .waitForFunction(() => document.querySelectorAll('#entity-list button[data-entity]').length >= 3, null, { timeout: WAIT })
    .catch(async () => fail(`the entity picker does not list 3 hosts: "${await page.textContent('#entities-box')}" ${await bannerText(page)}`));
  const shown = await page.$$eval('#entity-list button[data-entity]', (bs) => bs.map((b) => b.dataset.entity));
  const listed = await apiCall('GET', `/v1/streams/${id}/entities?limit=100`);
  const want = entityOrder(listed.items || []);
  if (shown.length !== 3) fail(`the picker lists ${shown.length} entities: ${shown.join(', ')}`);
  if (shown[0] !== 'web-2') fail(`the picker does not list the spiking host first: ${shown.join(', ')}`);
  if (shown.join() !== want.join()) fail(`the picker lists ${shown.join(', ')}; by latest anomaly it is ${want.join(', ')}`);
  summary.entities_listed = shown;

  step('entities: pick web-2 and chart it');
  await page.click('#entity-list button[data-entity="web-2"]');
  await page
    .waitForFunction((t) => {
      const svg = document.getElementById('stream-chart');
      return svg.dataset.entity === 'web-2' && Number(svg.dataset.points) > 0 && !!svg.querySelector(`circle.anomaly[data-t="${t}"]`);
    }, spikeT, { timeout: WAIT })
    .catch(async () => fail(`web-2's chart never showed its points and the spike (shows ${JSON.stringify(await readChart(page))})`));
  const one = await apiCall('GET', `/v1/streams/${id}/entities/web-2`);
  const chart = await readChart(page);
  if (!Array.isArray(one.recent) || chart.points !== one.recent.length) fail(`web-2's chart draws ${chart.points} points; GET /v1/streams/{id}/entities/web-2 has ${Array.isArray(one.recent) ? one.recent.length : 'no'} recent points`);
  if (chart.bandPaths === 0) fail("web-2's chart has no band");
  await waitSubscribed(page, frames, `stream:${id}:web-2`);
  if ((await page.getAttribute('#entity-list button[data-entity="web-2"]', 'aria-pressed')) !== 'true') fail('web-2 is not shown as picked');
  const ex = await explain(page, spikeT);
  if (!ex.text.includes('score ')) fail(`web-2's spike has no score in its explanation: "${ex.text}"`);
  summary.entity_charted = { entity: 'web-2', points: chart.points, band: chart.band, anomalies: chart.anomalies };

  step("entities: \"Not an anomaly\" on web-2's spike moves web-2's own threshold, not the stream's");
  const box = '#stream-explain [data-testid="stream-feedback"]';
  await page.click(`${box} button[data-label="false_positive"]`);
  const effect = await verdictShown(page, box, "web-2's spike");
  const two = await apiCall('GET', `/v1/streams/${id}/entities/web-2`);
  const other = await apiCall('GET', `/v1/streams/${id}/entities/web-1`);
  const stream = await apiCall('GET', `/v1/streams/${id}`);
  if (!(Number(two.threshold) > Number(stream.threshold))) fail(`web-2's own threshold is ${two.threshold}, not above the stream's ${stream.threshold}`);
  if (other.threshold !== undefined) fail(`web-1 got a threshold of its own (${other.threshold}) from a verdict on web-2`);
  await page
    .waitForFunction((want) => Array.from(document.querySelectorAll('#stream-summary .chip')).some((c) => c.textContent.includes('own threshold') && c.textContent.includes(want)), fmtNum(Number(two.threshold)), { timeout: WAIT })
    .catch(async () => fail(`the page does not show web-2's own threshold ${two.threshold}: "${await page.textContent('#stream-summary')}"`));
  summary.entity_feedback = { entity: 'web-2', threshold: two.threshold, stream_threshold: stream.threshold, effect };
}

async function bannerText(page) {
  try {
    return (await page.isVisible('#error')) ? `(banner: ${(await page.textContent('#error-text')).trim()})` : '';
  } catch (_) {
    return '';
  }
}

/** Serves `/` and `/dashboard/<file>` from `dir` instead of the server's built-in copy,
 * with the server's headers (its Content-Security-Policy above all). */
async function serveAssets(context, dir) {
  const own = new URL(baseUrl);
  const types = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' };
  await context.route(
    (u) => u.host === own.host && (u.pathname === '/' || /^\/dashboard\/[A-Za-z0-9_.-]+$/.test(u.pathname)),
    async (route) => {
      const u = new URL(route.request().url());
      const file = path.join(dir, u.pathname === '/' ? 'index.html' : u.pathname.slice('/dashboard/'.length));
      if (!fs.existsSync(file)) return route.continue();
      const res = await route.fetch();
      const headers = { ...res.headers(), 'content-type': types[path.extname(file)] || 'application/octet-stream' };
      delete headers['content-length'];
      return route.fulfill({ status: 200, headers, body: fs.readFileSync(file) });
    },
  );
  step(`the page's files come from ${dir}`);
}

const watchdog = setTimeout(() => {
  process.stderr.write(`dashboard test FAILED: still running after ${OVERALL / 1000} s\n`);
  process.exit(1);
}, OVERALL);

let browser;
let code = 0;
try {
  if (!fs.existsSync(csvPath)) fail(`DASHBOARD_CSV ${csvPath} does not exist`);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      // a page fulfilled by the test has no address of its own: Chromium would take it for
      // a public site and refuse its WebSocket to loopback
      ...(assetsDir ? ['--disable-features=LocalNetworkAccessChecks'] : []),
    ],
  });
  const context = await browser.newContext({ viewport: { width: viewWidth || 1600, height: viewHeight || 1000 }, deviceScaleFactor: 1 });
  if (assetsDir) await serveAssets(context, assetsDir);
  const page = await context.newPage();
  const problems = [];
  // The page's WebSocket messages about channels: what it asked for and what it was told.
  const frames = { sent: [], subscribedTo: new Set(), errors: [] };
  page.on('websocket', (w) => {
    w.on('framesent', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m && (m.action === 'subscribe' || m.action === 'unsubscribe')) frames.sent.push(m);
      } catch (_) {
        /* not JSON */
      }
    });
    w.on('framereceived', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m && m.type === 'subscribed') frames.subscribedTo.add(m.channel);
        if (m && m.type === 'unsubscribed') frames.subscribedTo.delete(m.channel);
        if (m && m.type === 'error') frames.errors.push(m.error);
      } catch (_) {
        /* not JSON */
      }
    });
  });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text().replaceAll(apiKey, '<key>')}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${String(e && e.message).replaceAll(apiKey, '<key>')}`));
  // The key must go nowhere but the page's own server, whatever the page's URL says.
  const own = new URL(baseUrl).host;
  const elsewhere = (url) => {
    try {
      const u = new URL(url);
      return (u.protocol === 'http:' || u.protocol === 'https:' || u.protocol === 'ws:' || u.protocol === 'wss:') && u.host !== own;
    } catch (_) {
      return false;
    }
  };
  page.on('request', (r) => {
    if (elsewhere(r.url())) problems.push(`request to another host: ${r.url().replaceAll(apiKey, '<key>')}`);
  });
  page.on('websocket', (w) => {
    if (elsewhere(w.url())) problems.push(`WebSocket to another host: ${w.url().replaceAll(apiKey, '<key>')}`);
  });
  try {
    const summary = await main(page, problems, frames);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  } catch (e) {
    code = 1;
    const msg = e instanceof Failure ? e.message : `${e && e.stack ? e.stack : e}`;
    process.stderr.write(`dashboard test FAILED: ${msg.replaceAll(apiKey, '<key>')}\n`);
    if (problems.length) process.stderr.write(`browser errors so far:\n  ${problems.join('\n  ')}\n`);
    try {
      await page.screenshot({ path: screenshotPath, fullPage: true });
      process.stderr.write(`screenshot of the failure: ${screenshotPath}\n`);
    } catch (_) {
      /* the page is gone */
    }
  }
} catch (e) {
  code = 1;
  process.stderr.write(`dashboard test FAILED: ${e instanceof Failure ? e.message : e && e.stack ? e.stack : e}\n`);
} finally {
  if (browser) await browser.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(code);
