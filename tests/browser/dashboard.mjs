// Drives the nomaly dashboard in headless Chromium, as an operator would: connect with a
// key, upload a CSV, read its profile, train an iforest model while watching its progress
// bar, detect with the new model, read the scores plot, the live feed and an anomaly's
// explanation. Exits 0 with a one-line JSON summary on stdout, or 1 with the reason.
//
// Environment: NOMALY_URL, NOMALY_API_KEY, DASHBOARD_CSV, DASHBOARD_EXCLUDE (may be
// empty), DASHBOARD_SCREENSHOT. Uses the system Chromium at /usr/bin/chromium (override
// with CHROMIUM_PATH); `npx playwright install` is never needed. DASHBOARD_VIEWPORT
// (e.g. 800x1000) changes the window size, 1600x1000 by default.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
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

async function main(page, problems) {
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

  summary.feed_entries = await page.$$eval('#feed li', (items) => items.length);
  summary.anomaly_events = await page.$$eval('#feed li[data-type="anomaly.detected"]', (items) => items.length);
  summary.recent_detections = await page.$$eval('#recent-detections li', (items) => items.length);

  // ---- no errors anywhere ------------------------------------------------------------
  if (await page.isVisible('#error')) fail(`the error banner shows: ${await bannerText(page)}`);
  if (problems.length) fail(`the browser reported errors:\n  ${problems.join('\n  ')}`);

  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: screenshotPath, fullPage: true });
  summary.screenshot = screenshotPath;
  summary.ok = true;
  return summary;
}

async function bannerText(page) {
  try {
    return (await page.isVisible('#error')) ? `(banner: ${(await page.textContent('#error-text')).trim()})` : '';
  } catch (_) {
    return '';
  }
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
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: viewWidth || 1600, height: viewHeight || 1000 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const problems = [];
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
    const summary = await main(page, problems);
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
