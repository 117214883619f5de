// The scores: summary, the SVG plot, the list of top anomalies and a row's explanation,
// with a person's verdict on the row.

import { $, chip, clear, h, s } from './dom.js';
import { fmtInt, fmtNum, padRange, shortId } from './format.js';
import { state } from './state.js';
import { feedbackControls } from './feedback.js';

const DENSE_ROWS = 5000;

const PLOT = { w: 900, h: 360, left: 58, right: 78, top: 18, bottom: 40 };

function niceTicks(min, max, count) {
  if (!(max > min)) return [min];
  const raw = (max - min) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const out = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Shows a detection's result; `datasetId` is the stored dataset it scored, if it scored
 * one (the uploaded file) rather than a file chosen for it. */
export function showResult(r, datasetId = null) {
  const scores = Array.isArray(r.scores) ? r.scores.map(Number) : [];
  const labels = Array.isArray(r.labels) ? r.labels : [];
  state.result = { ...r, scores, labels, scoredDatasetId: datasetId };
  state.selectedRow = null;
  renderSummary(state.result);
  drawPlot(state.result);
  renderAnomalyList(state.result);
  const anomalies = anomalyRows(state.result);
  if (anomalies.length) selectRow(anomalies[0]);
  else renderExplanation(null);
}

/** Anomalous rows, highest score first. */
function anomalyRows(r) {
  const rows = [];
  for (let i = 0; i < r.scores.length; i += 1) if (Number(r.labels[i]) === 1) rows.push(i);
  rows.sort((a, b) => r.scores[b] - r.scores[a]);
  return rows;
}

function renderSummary(r) {
  const box = $('scores-summary');
  clear(box);
  const n = r.scores.length;
  const anomalies = Number(r.anomalies ?? anomalyRows(r).length);
  box.dataset.rows = String(n);
  box.dataset.anomalies = String(anomalies);
  box.append(
    chip('model', `${r.algorithm || '?'} ${shortId(r.model_id)}`),
    chip('rows', fmtInt(r.rows ?? n)),
    chip('anomalies', `${fmtInt(anomalies)} (${n ? ((anomalies / n) * 100).toFixed(1) : 0}%)`),
    chip('threshold', fmtNum(r.threshold)),
    chip('compute', `${fmtNum(r.compute_ms, 3)} ms`),
    chip('cached', r.cached ? 'yes' : 'no'),
  );
}

function drawPlot(r) {
  const svg = $('scores-plot');
  clear(svg);
  const { w, h: ht, left, right, top, bottom } = PLOT;
  const n = r.scores.length;
  const finite = r.scores.filter(Number.isFinite);
  const thr = Number(r.threshold);
  $('scores-empty').hidden = n > 0;
  svg.dataset.rows = String(n);
  if (n === 0) {
    svg.dataset.points = '0';
    svg.dataset.anomalies = '0';
    return;
  }
  let lo = Number.isFinite(thr) ? thr : Infinity;
  let hi = Number.isFinite(thr) ? thr : -Infinity;
  for (const v of finite) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  [lo, hi] = padRange(lo, hi, 0.06);
  const pw = w - left - right;
  const ph = ht - top - bottom;
  const X = (i) => left + (n === 1 ? pw / 2 : (i / (n - 1)) * pw);
  const Y = (v) => top + (1 - (v - lo) / (hi - lo)) * ph;
  const r2 = (v) => Math.round(v * 100) / 100;

  // grid and axes
  const grid = s('g', { class: 'grid-lines' });
  const axes = s('g', { class: 'axes' });
  for (const t of niceTicks(lo, hi, 5)) {
    const y = r2(Y(t));
    grid.appendChild(s('line', { x1: left, x2: w - right, y1: y, y2: y }));
    axes.appendChild(s('text', { x: left - 8, y: y + 4, class: 'tick y' }, fmtNum(t, 3)));
  }
  for (const t of niceTicks(0, n - 1, 6)) {
    if (!Number.isInteger(t)) continue;
    const x = r2(X(t));
    grid.appendChild(s('line', { x1: x, x2: x, y1: top, y2: top + ph, class: 'v' }));
    axes.appendChild(s('text', { x, y: top + ph + 18, class: 'tick x' }, fmtInt(t)));
  }
  axes.appendChild(s('line', { x1: left, x2: w - right, y1: top + ph, y2: top + ph, class: 'axis' }));
  axes.appendChild(s('line', { x1: left, x2: left, y1: top, y2: top + ph, class: 'axis' }));
  axes.appendChild(s('text', { x: left + pw / 2, y: ht - 4, class: 'axis-label' }, 'row'));
  axes.appendChild(s('text', { x: 14, y: top + ph / 2, class: 'axis-label', transform: `rotate(-90 14 ${top + ph / 2})` }, 'score'));
  svg.append(grid, axes);

  // points
  const normal = s('g', { class: 'normals' });
  const anomalous = s('g', { class: 'anomalies' });
  let points = 0;
  let marked = 0;
  const dense = n > DENSE_ROWS;
  if (dense) {
    // one polyline through the min and max of each pixel-wide bucket
    const buckets = Math.min(n, Math.round(pw * 2));
    const pts = [];
    for (let b = 0; b < buckets; b += 1) {
      const from = Math.floor((b * n) / buckets);
      const to = Math.max(from + 1, Math.floor(((b + 1) * n) / buckets));
      let mi = -1;
      let ma = -1;
      for (let i = from; i < to; i += 1) {
        const v = r.scores[i];
        if (!Number.isFinite(v) || Number(r.labels[i]) === 1) continue; // normal rows only
        if (mi < 0 || v < r.scores[mi]) mi = i;
        if (ma < 0 || v > r.scores[ma]) ma = i;
      }
      if (mi < 0) continue;
      for (const i of mi <= ma ? [mi, ma] : [ma, mi]) pts.push(`${r2(X(i))},${r2(Y(r.scores[i]))}`);
    }
    normal.appendChild(s('polyline', { points: pts.join(' '), class: 'series' }));
  }
  const focusable = n <= 2000;
  for (let i = 0; i < n; i += 1) {
    const v = r.scores[i];
    if (!Number.isFinite(v)) continue;
    const isAnomaly = Number(r.labels[i]) === 1;
    if (!isAnomaly && dense) continue;
    const c = s('circle', {
      cx: r2(X(i)),
      cy: r2(Y(v)),
      r: isAnomaly ? (dense ? 2.4 : 3.6) : 2.2,
      class: isAnomaly ? `pt anomaly${dense ? ' dense' : ''}` : 'pt',
      'data-row': i,
    });
    if (isAnomaly) {
      c.appendChild(s('title', null, `row ${i} · score ${fmtNum(v)}`));
      if (focusable) c.setAttribute('tabindex', '0');
      anomalous.appendChild(c);
      marked += 1;
    } else {
      normal.appendChild(c);
    }
    points += 1;
  }
  svg.append(normal);

  // threshold
  if (Number.isFinite(thr)) {
    const y = r2(Y(thr));
    svg.appendChild(s('line', { id: 'threshold-line', 'data-testid': 'threshold-line', class: 'threshold', x1: left, x2: w - right, y1: y, y2: y, 'data-threshold': thr }));
    const label = s('text', { x: w - right + 6, y: y - 3, class: 'threshold-label' });
    label.appendChild(s('tspan', { x: w - right + 6 }, 'threshold'));
    label.appendChild(s('tspan', { x: w - right + 6, dy: 13 }, fmtNum(thr)));
    svg.appendChild(label);
  }
  svg.append(anomalous);
  svg.appendChild(s('g', { id: 'selection', class: 'selection' }));
  svg.dataset.points = String(points);
  svg.dataset.anomalies = String(marked);
  svg.dataset.dense = dense ? 'true' : 'false';
  svg.setAttribute('aria-label', `Anomaly scores of ${n} rows, ${marked} anomalies above the threshold ${fmtNum(thr)}`);
}

function drawSelection(row) {
  const g = $('selection');
  if (!g) return;
  clear(g);
  const svg = $('scores-plot');
  for (const c of svg.querySelectorAll('circle.selected')) c.classList.remove('selected');
  if (row === null) return;
  const c = svg.querySelector(`circle[data-row="${row}"]`);
  if (!c) return;
  c.classList.add('selected');
  const cx = c.getAttribute('cx');
  const cy = c.getAttribute('cy');
  g.appendChild(s('line', { x1: cx, x2: cx, y1: PLOT.top, y2: PLOT.h - PLOT.bottom, class: 'crosshair' }));
  g.appendChild(s('circle', { cx, cy, r: 8, class: 'ring' }));
}

function renderAnomalyList(r) {
  const list = $('anomaly-list');
  clear(list);
  const rows = anomalyRows(r).slice(0, 10);
  for (const i of rows) {
    const top = (r.explanations && r.explanations[i] && r.explanations[i][0]) || null;
    list.appendChild(
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: 'anomaly-item', 'data-row': i, 'data-testid': 'anomaly-item' },
          h('span', { class: 'row-no', text: `row ${i}` }),
          h('span', { class: 'score', text: fmtNum(r.scores[i]) }),
          h('span', { class: 'top-feature', text: top ? `${top.feature}` : '' }),
        ),
      ),
    );
  }
  if (rows.length === 0) list.appendChild(h('li', { class: 'muted', text: 'No anomalies in this result.' }));
}

export function selectRow(row) {
  const r = state.result;
  if (!r || !Number.isInteger(row) || row < 0 || row >= r.scores.length) return;
  state.selectedRow = row;
  drawSelection(row);
  for (const b of $('anomaly-list').querySelectorAll('button[data-row]')) b.classList.toggle('active', Number(b.dataset.row) === row);
  renderExplanation(row);
}

/** Why a verdict cannot name this result's rows, or null when it can. */
function verdictRefused(r) {
  if (!r.scoredDatasetId) {
    return 'Verdicts name a row of a stored dataset: detect on the uploaded file (not a file picked for the detection) to give one.';
  }
  const d = state.datasets.get(r.scoredDatasetId);
  const rows = d && d.profile ? Number(d.profile.rows) : null;
  if (rows !== null && Number.isFinite(rows) && rows !== r.scores.length) {
    return `The detection scored ${fmtInt(r.scores.length)} rows; the dataset has ${fmtInt(rows)}: its rows cannot be named.`;
  }
  return null;
}

/** "Not an anomaly" / "Confirm" on an anomalous row, "Should be an anomaly" on another:
 * the label the next training on the dataset uses. */
function rowVerdict(r, row, isAnomaly) {
  const box = feedbackControls({
    key: `model:${r.model_id}:${r.scoredDatasetId || '-'}:${row}`,
    body: { model_id: r.model_id, dataset_id: r.scoredDatasetId, row },
    labels: isAnomaly ? ['false_positive', 'true_positive'] : ['missed'],
    disabled: verdictRefused(r),
    testid: 'model-feedback',
  });
  box.dataset.row = String(row);
  return box;
}

export function renderExplanation(row) {
  const chart = $('explain-chart');
  const title = $('explain-title');
  const method = $('explain-method');
  clear(chart);
  clear($('explain-feedback'));
  method.textContent = '';
  const r = state.result;
  if (row === null || !r) {
    chart.removeAttribute('data-row');
    chart.dataset.features = '0';
    title.textContent = r ? 'No anomaly to explain in this result.' : 'Select an anomaly in the plot or in the list below.';
    return;
  }
  chart.dataset.row = String(row);
  const isAnomaly = Number(r.labels[row]) === 1;
  title.textContent = '';
  title.append(
    h('strong', { text: `Row ${row}` }),
    ` · score ${fmtNum(r.scores[row])} vs threshold ${fmtNum(r.threshold)} · `,
    h('span', { class: isAnomaly ? 'tag anomaly' : 'tag normal', text: isAnomaly ? 'anomaly' : 'normal' }),
  );
  $('explain-feedback').appendChild(rowVerdict(r, row, isAnomaly));
  const items = (r.explanations && Array.isArray(r.explanations[row]) && r.explanations[row]) || [];
  chart.dataset.features = String(items.length);
  if (items.length === 0) {
    chart.appendChild(h('p', { class: 'muted', text: r.explanations ? 'No explanation for this row.' : 'This result has no explanations: run the detection with “Explain each row”.' }));
    return;
  }
  const max = Math.max(...items.map((x) => Math.abs(Number(x.contribution)) || 0), 1e-12);
  for (const item of items) {
    const v = Number(item.contribution);
    const fill = h('div', { class: `bar-fill${v < 0 ? ' neg' : ''}` });
    fill.style.width = `${Math.max(1.5, (Math.abs(v) / max) * 100).toFixed(1)}%`;
    chart.appendChild(
      h(
        'div',
        { class: 'bar-row', 'data-testid': 'explain-bar', 'data-feature': String(item.feature), 'data-value': String(v) },
        h('span', { class: 'bar-label', title: String(item.feature), text: String(item.feature) }),
        h('div', { class: 'bar-track' }, fill),
        h('span', { class: 'bar-value', text: fmtNum(v, 3) }),
      ),
    );
  }
  method.textContent = r.explanation_method ? `Method: ${r.explanation_method}` : '';
}
