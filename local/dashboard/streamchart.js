// A stream's chart: its recent values in time on an inline SVG, the band the detector
// expected them in (expected ± b) with the expected line, the anomalies as red dots, and
// under them a lane of the scores against the threshold. No library: lines, a path and
// circles built from numbers.

import { clear, s } from './dom.js';
import { fmtNum, padRange } from './format.js';

const CHART = { w: 900, h: 380, left: 58, right: 70, top: 14, main: 236, gap: 26, lane: 62, bottom: 42 };
// Each point gets its own small dot up to this many points; past it the line alone.
const DOTS_UP_TO = 1500;

const r2 = (v) => Math.round(v * 100) / 100;
const pad = (n) => String(n).padStart(2, '0');

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

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000, 7776000, 31536000];

/** Times (Unix seconds) at round steps between `t0` and `t1`, at most about `count`. */
function timeTicks(t0, t1, count) {
  if (!(t1 > t0)) return { ticks: [t0], step: 60 };
  const want = (t1 - t0) / Math.max(1, count);
  const step = TIME_STEPS.find((x) => x >= want) || TIME_STEPS[TIME_STEPS.length - 1];
  // round in local time for steps of an hour and more, so ticks fall on local midnights
  const offset = step >= 3600 ? -new Date(t0 * 1000).getTimezoneOffset() * 60 : 0;
  const ticks = [];
  for (let t = Math.ceil((t0 + offset) / step) * step - offset; t <= t1; t += step) ticks.push(t);
  return { ticks, step };
}

function timeLabel(t, step, spansDays) {
  const d = new Date(t * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (step < 60) return `${hm}:${pad(d.getSeconds())}`;
  if (step >= 86400) return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return spansDays && d.getHours() === 0 && d.getMinutes() === 0 ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())}` : hm;
}

/** Runs of consecutive points that all have an expected value and a band. */
function bandRuns(points) {
  const runs = [];
  let run = [];
  for (const p of points) {
    if (Number.isFinite(p.e) && Number.isFinite(p.b)) run.push(p);
    else if (run.length) {
      runs.push(run);
      run = [];
    }
  }
  if (run.length) runs.push(run);
  return runs;
}

/**
 * Draws `points` ({t, v, s, e?, b?}, in time order) and `marks` (anomalies: {t, score,
 * value?}) on `svg`. `threshold` is the scores' threshold; `selected` the time of the
 * anomaly picked, if any. Sets data-points, data-band and data-anomalies on the svg for
 * whoever reads it (a test, a person's devtools). Returns what it drew.
 */
export function drawStreamChart(svg, { points, marks, threshold, selected, label }) {
  clear(svg);
  const { w, h: ht, left, right, top, main, gap, lane, bottom } = CHART;
  const pw = w - left - right;
  const laneTop = top + main + gap;
  const pts = (points || []).filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v));
  const byT = new Map(pts.map((p) => [p.t, p]));
  const first = pts.length ? pts[0].t : -Infinity;
  // an anomaly older than the points charted has no place on the chart (it stays listed)
  const shown = (marks || []).filter((m) => Number.isFinite(m.t) && m.t >= first);
  const thr = Number(threshold);
  const drawn = { points: 0, band: 0, anomalies: 0 };
  svg.dataset.points = '0';
  svg.dataset.band = '0';
  svg.dataset.anomalies = '0';
  if (pts.length === 0 && shown.length === 0) return drawn;

  // the time axis: the points, and any anomaly come since they were read
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const p of pts) {
    t0 = Math.min(t0, p.t);
    t1 = Math.max(t1, p.t);
  }
  for (const m of shown) {
    t0 = Math.min(t0, m.t);
    t1 = Math.max(t1, m.t);
  }
  if (!(t1 > t0)) {
    t0 -= 30;
    t1 += 30;
  }
  // the value axis: values, bands, and the values of anomalies not yet among the points
  let lo = Infinity;
  let hi = -Infinity;
  const take = (v) => {
    if (Number.isFinite(v)) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  };
  for (const p of pts) {
    take(p.v);
    if (Number.isFinite(p.e) && Number.isFinite(p.b)) {
      take(p.e - p.b);
      take(p.e + p.b);
    } else take(p.e);
  }
  for (const m of shown) if (!byT.has(m.t)) take(m.value);
  [lo, hi] = padRange(lo, hi, 0.08);
  const X = (t) => left + ((t - t0) / (t1 - t0)) * pw;
  const Y = (v) => top + (1 - (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * main;
  const S = (v) => laneTop + (1 - Math.min(Math.max(Number(v) || 0, 0), 1)) * lane;

  // grid, axes, ticks
  const grid = s('g', { class: 'grid-lines' });
  const axes = s('g', { class: 'axes' });
  for (const t of niceTicks(lo, hi, 5)) {
    const y = r2(Y(t));
    grid.appendChild(s('line', { x1: left, x2: w - right, y1: y, y2: y }));
    axes.appendChild(s('text', { x: left - 8, y: y + 4, class: 'tick y' }, fmtNum(t, 3)));
  }
  const { ticks, step } = timeTicks(t0, t1, 7);
  const spansDays = new Date(t0 * 1000).toDateString() !== new Date(t1 * 1000).toDateString();
  for (const t of ticks) {
    const x = r2(X(t));
    grid.appendChild(s('line', { x1: x, x2: x, y1: top, y2: laneTop + lane, class: 'v' }));
    axes.appendChild(s('text', { x, y: laneTop + lane + 16, class: 'tick x' }, timeLabel(t, step, spansDays)));
  }
  for (const y of [top + main, laneTop + lane]) axes.appendChild(s('line', { x1: left, x2: w - right, y1: y, y2: y, class: 'axis' }));
  axes.appendChild(s('line', { x1: left, x2: left, y1: top, y2: top + main, class: 'axis' }));
  axes.appendChild(s('line', { x1: left, x2: left, y1: laneTop, y2: laneTop + lane, class: 'axis' }));
  for (const v of [0, 1]) axes.appendChild(s('text', { x: left - 8, y: S(v) + 4, class: 'tick y' }, String(v)));
  axes.appendChild(s('text', { x: left + pw / 2, y: ht - 6, class: 'axis-label' }, 'time'));
  axes.appendChild(s('text', { x: 14, y: top + main / 2, class: 'axis-label', transform: `rotate(-90 14 ${top + main / 2})` }, label || 'value'));
  axes.appendChild(s('text', { x: 14, y: laneTop + lane / 2, class: 'axis-label', transform: `rotate(-90 14 ${laneTop + lane / 2})` }, 'score'));
  svg.append(grid, axes);

  // the band and the expected line, one piece per run of points that have them
  const band = s('g', { class: 'band-layer' });
  for (const run of bandRuns(pts)) {
    const upper = run.map((p) => `${r2(X(p.t))},${r2(Y(p.e + p.b))}`);
    const lower = run.map((p) => `${r2(X(p.t))},${r2(Y(p.e - p.b))}`).reverse();
    if (run.length > 1) band.appendChild(s('path', { d: `M${upper.join('L')}L${lower.join('L')}Z`, class: 'band', 'data-testid': 'stream-band' }));
    band.appendChild(s('polyline', { points: run.map((p) => `${r2(X(p.t))},${r2(Y(p.e))}`).join(' '), class: 'expected' }));
    drawn.band += run.length;
  }
  svg.appendChild(band);

  // the values
  const values = s('g', { class: 'values' });
  if (pts.length > 1) values.appendChild(s('polyline', { points: pts.map((p) => `${r2(X(p.t))},${r2(Y(p.v))}`).join(' '), class: 'value-line' }));
  if (pts.length <= DOTS_UP_TO) {
    for (const p of pts) values.appendChild(s('circle', { cx: r2(X(p.t)), cy: r2(Y(p.v)), r: 1.8, class: 'vpt', 'data-t': p.t }));
  }
  drawn.points = pts.length;
  svg.appendChild(values);

  // the score lane
  const scores = s('g', { class: 'score-lane' });
  const scored = pts.filter((p) => Number.isFinite(p.s));
  if (scored.length > 1) scores.appendChild(s('polyline', { points: scored.map((p) => `${r2(X(p.t))},${r2(S(p.s))}`).join(' '), class: 'score-line' }));
  if (Number.isFinite(thr)) {
    const y = r2(S(thr));
    scores.appendChild(s('line', { x1: left, x2: w - right, y1: y, y2: y, class: 'threshold', 'data-threshold': thr }));
    scores.appendChild(s('text', { x: w - right + 6, y: y + 4, class: 'threshold-label' }, fmtNum(thr)));
  }
  svg.appendChild(scores);

  // the anomalies, on the value and on the score; the live ones may not be among the
  // points yet: they sit at the value their event gave
  const reds = s('g', { class: 'anomalies' });
  for (const m of shown) {
    const p = byT.get(m.t);
    const v = p ? p.v : Number.isFinite(m.value) ? m.value : hi;
    const x = r2(X(m.t));
    const score = Number.isFinite(m.score) ? m.score : p ? p.s : null;
    reds.appendChild(s('circle', { cx: x, cy: r2(S(score)), r: 3, class: 'score-mark' }));
    const c = s('circle', {
      cx: x,
      cy: r2(Y(v)),
      r: 4.6,
      class: `pt anomaly${m.live && !p ? ' live' : ''}`,
      'data-t': m.t,
      'data-source': m.source || 'points',
      tabindex: '0',
      role: 'button',
      'aria-label': `anomaly at ${new Date(m.t * 1000).toLocaleString()}, score ${fmtNum(score)}`,
    });
    c.appendChild(s('title', null, `${new Date(m.t * 1000).toLocaleString()} · value ${fmtNum(v)} · score ${fmtNum(score)}`));
    reds.appendChild(c);
    drawn.anomalies += 1;
  }
  svg.appendChild(reds);

  // the selected anomaly
  const sel = s('g', { class: 'selection' });
  const picked = shown.find((m) => m.t === selected);
  if (picked) {
    const c = reds.querySelector(`circle.anomaly[data-t="${picked.t}"]`);
    if (c) {
      c.classList.add('selected');
      const cx = c.getAttribute('cx');
      sel.appendChild(s('line', { x1: cx, x2: cx, y1: top, y2: laneTop + lane, class: 'crosshair' }));
      sel.appendChild(s('circle', { cx, cy: c.getAttribute('cy'), r: 9, class: 'ring' }));
    }
  }
  svg.appendChild(sel);

  svg.dataset.points = String(drawn.points);
  svg.dataset.band = String(drawn.band);
  svg.dataset.anomalies = String(drawn.anomalies);
  svg.setAttribute('aria-label', `${label || 'values'}: ${drawn.points} recent points, ${drawn.anomalies} anomalies at or above the threshold ${fmtNum(thr)}`);
  return drawn;
}
