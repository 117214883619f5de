// Streams: the tenant's streams; the one picked charted live (its recent points read
// every 2 s, its anomalies marked as their events come on the WebSocket); the entities of
// a stream split by entity, latest anomaly first; and an anomaly's explanation, with a
// person's verdict on it.

import { $, chip, clear, h } from './dom.js';
import { fmtInt, fmtNum, fmtTime, shortId, toMs } from './format.js';
import { messageOf, showError } from './errors.js';
import { state } from './state.js';
import { api, enc, listAll } from './api.js';
import { onLiveEvent, subscribeChannel, unsubscribeChannel } from './live.js';
import { drawStreamChart } from './streamchart.js';
import { feedbackControls, verdictGiven, verdictSending } from './feedback.js';

const POLL_MS = 2000; // the series charted
const ENTITIES_MS = 10000; // the entities of the stream picked
const STREAMS_MS = 15000; // the list of streams
const MAX_PAGES = 10; // of 100 streams or entities
const MAX_LISTED = 100; // anomalies listed under the chart
const MAX_REMEMBERED = 500; // anomalies kept from events, per series

const st = {
  shown: false,
  streams: [], // StreamView, by name
  streamsMore: false,
  id: null, // the stream picked
  entity: null, // and its entity, for a stream split by entity
  entities: [], // latest anomaly first
  entitiesMore: false,
  series: null, // the last answer for what is charted: a StreamView or an entity
  selectedT: null, // the anomaly explained (its time)
  selectedMark: null, // and as last drawn: kept while a verdict on it is on its way
  channel: null, // the WebSocket channel listened to for it
  channelLive: false,
  gen: 0, // bumped by each pick: answers about an earlier pick are dropped
  polling: null, // the pick whose series is being read
  polledAt: 0,
  failure: null, // the last poll's error, shown once
  gone: false, // the stream or entity no longer exists
  // anomalies as their events told them, per series (`stream id`, or `stream id:entity`),
  // whether or not that series was charted when they came: time -> detail
  heard: new Map(),
  timers: [],
};

const seriesKey = (id, entity) => (entity === null || entity === undefined ? id : `${id}:${entity}`);
// a point of a series, for the verdicts given on it
const verdictKey = (id, entity, t) => `stream:${seriesKey(id, entity)}@${t}`;
const pickedStream = () => st.streams.find((x) => x.stream_id === st.id) || null;
const isSplit = (x) => !!(x && x.entity && typeof x.entity === 'object');
const numOrNull = (v) => (v === null || v === undefined || v === '' || !Number.isFinite(Number(v)) ? null : Number(v));

/** Latest anomaly first, those without one last, then by name. */
export function byLatestAnomaly(a, b) {
  const la = toMs(a.last_anomaly) || null;
  const lb = toMs(b.last_anomaly) || null;
  if (la !== lb) {
    if (la === null) return 1;
    if (lb === null) return -1;
    return lb - la;
  }
  const na = String(a.name);
  const nb = String(b.name);
  return na < nb ? -1 : na > nb ? 1 : 0;
}

// ---- the list of streams ----------------------------------------------------------------

export async function refreshStreams() {
  if (!state.key) return;
  const { items, more } = await listAll('/v1/streams?limit=100', MAX_PAGES);
  st.streams = items.slice().sort((a, b) => String(a.name).localeCompare(String(b.name)) || String(a.stream_id).localeCompare(String(b.stream_id)));
  st.streamsMore = more;
  renderStreams();
  if (st.id && !pickedStream()) {
    // deleted meanwhile
    st.gone = true;
    renderSeries();
  }
}

function renderStreams() {
  const list = $('streams-list');
  clear(list);
  for (const x of st.streams) {
    const split = isSplit(x);
    const detector = (x.detector && x.detector.detector) || '?';
    const picked = x.stream_id === st.id;
    list.appendChild(
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: `pick-item${picked ? ' active' : ''}`, 'data-stream-id': x.stream_id, 'data-testid': 'stream-item', 'aria-pressed': picked ? 'true' : 'false' },
          h('span', { class: 'pick-name', text: x.name }),
          split && !Number(x.anomalies) ? h('span', { class: 'pick-count', text: '' }) : h('span', { class: Number(x.anomalies) > 0 ? 'pick-count hot' : 'pick-count', title: 'anomalies', text: fmtInt(x.anomalies) }),
          h(
            'span',
            { class: 'pick-sub' },
            // a stream split by entity counts its points per entity
            split && !Number(x.points) ? detector : `${detector} · ${fmtInt(x.points)} points`,
            x.last_timestamp ? ` · last ${fmtTime(toMs(x.last_timestamp))}` : '',
            split ? h('span', { class: 'tag split', text: `by ${x.entity.field}` }) : null,
            ' ',
            h('span', { class: 'id', title: x.stream_id, text: shortId(x.stream_id) }),
          ),
        ),
      ),
    );
  }
  if (st.streamsMore) list.appendChild(h('li', { class: 'muted small', text: `The first ${fmtInt(st.streams.length)} streams are listed.` }));
  $('streams-empty').hidden = st.streams.length > 0;
}

// ---- picking a stream and an entity ---------------------------------------------------------

export async function pickStream(id) {
  if (!id) return;
  const same = id === st.id;
  const before = same ? st.entity : null; // picking the stream again keeps its entity
  st.gen += 1;
  st.id = id;
  st.entity = null;
  st.series = null;
  st.selectedT = null;
  st.selectedMark = null;
  st.failure = null;
  st.gone = false;
  if (!same) {
    st.entities = [];
    st.entitiesMore = false;
  }
  renderStreams();
  let x = pickedStream();
  if (!x) {
    // not in the list (yet): ask for it
    const gen = st.gen;
    x = await api(`/v1/streams/${enc(id)}`);
    if (gen !== st.gen) return;
    st.streams.push(x);
    renderStreams();
  }
  if (isSplit(x)) {
    const gen = st.gen;
    listen(null);
    renderSeries();
    await refreshEntities();
    if (gen !== st.gen || st.entity !== null) return; // picked otherwise meanwhile
    // the entity picked before, or the one with the latest anomaly
    const next = st.entities.find((e) => e.name === before) || st.entities[0];
    if (next) await pickEntity(next.name);
  } else {
    $('entities-box').hidden = true;
    listen(x.channel || `stream:${x.stream_id}`);
    renderSeries();
    await poll();
  }
}

export async function pickEntity(name) {
  const x = pickedStream();
  if (!x || !isSplit(x) || name === null || name === undefined) return;
  st.gen += 1;
  st.entity = String(name);
  st.series = st.entities.find((e) => e.name === st.entity) || null;
  st.selectedT = null;
  st.selectedMark = null;
  st.failure = null;
  st.gone = false;
  listen((st.series && st.series.channel) || `stream:${x.stream_id}:${st.entity}`);
  renderEntities();
  renderSeries();
  await poll();
}

function listen(channel) {
  if (channel === st.channel) return;
  if (st.channel) unsubscribeChannel(st.channel);
  st.channel = channel;
  st.channelLive = false;
  if (channel) subscribeChannel(channel);
}

async function refreshEntities() {
  const x = pickedStream();
  if (!x || !isSplit(x)) return;
  const gen = st.gen;
  const id = x.stream_id;
  const { items, more } = await listAll(`/v1/streams/${enc(id)}/entities?limit=100`, MAX_PAGES);
  if (st.id !== id) return;
  st.entities = items.sort(byLatestAnomaly);
  st.entitiesMore = more;
  if (st.entity && gen === st.gen && st.polling !== gen) {
    const now = st.entities.find((e) => e.name === st.entity);
    if (now && (!st.series || Number(now.points) >= Number(st.series.points))) st.series = { ...st.series, ...now };
  }
  renderEntities();
}

function renderEntities() {
  const x = pickedStream();
  const box = $('entities-box');
  box.hidden = !isSplit(x);
  if (box.hidden) return;
  const list = $('entity-list');
  clear(list);
  for (const e of st.entities) {
    const picked = e.name === st.entity;
    const last = toMs(e.last_anomaly);
    list.appendChild(
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: `pick-item${picked ? ' active' : ''}`, 'data-entity': e.name, 'data-testid': 'entity-item', 'aria-pressed': picked ? 'true' : 'false' },
          h('span', { class: 'pick-name', text: e.name }),
          h('span', { class: Number(e.anomalies) > 0 ? 'pick-count hot' : 'pick-count', title: 'anomalies', text: fmtInt(e.anomalies) }),
          h('span', { class: 'pick-sub', text: `${fmtInt(e.points)} points · ${last ? `last anomaly ${fmtTime(last)}` : 'no anomaly'}` }),
        ),
      ),
    );
  }
  $('entities-empty').hidden = st.entities.length > 0;
  const count = $('entities-count');
  count.textContent = `${fmtInt(st.entities.length)}${st.entitiesMore ? '+' : ''} ${st.entities.length === 1 ? 'entity' : 'entities'}`;
  count.dataset.count = String(st.entities.length);
}

// ---- reading the series ------------------------------------------------------------------

async function poll() {
  if (st.polling === st.gen || !st.id || !state.key || st.gone) return;
  const x = pickedStream();
  if (x && isSplit(x) && !st.entity) return;
  const gen = st.gen;
  const path = st.entity === null ? `/v1/streams/${enc(st.id)}` : `/v1/streams/${enc(st.id)}/entities/${enc(st.entity)}`;
  st.polling = gen;
  try {
    const data = await api(path);
    if (gen !== st.gen) return;
    st.series = data;
    st.polledAt = Date.now();
    st.failure = null;
    if (st.entity === null) {
      const i = st.streams.findIndex((s) => s.stream_id === data.stream_id);
      if (i >= 0) st.streams[i] = data;
      renderStreams();
    } else {
      const i = st.entities.findIndex((e) => e.name === data.name);
      if (i >= 0) st.entities[i] = data;
      else st.entities.push(data);
      st.entities.sort(byLatestAnomaly);
      renderEntities();
    }
    renderSeries();
  } catch (e) {
    if (gen !== st.gen) return;
    if (e.status === 404) {
      st.gone = true;
      renderSeries();
      return;
    }
    const msg = `Stream ${st.entity === null ? '' : `entity ${st.entity} `}not read: ${messageOf(e)}`;
    if (msg !== st.failure) showError(msg); // once, not every 2 s
    st.failure = msg;
    renderStatus();
  } finally {
    if (st.polling === gen) st.polling = null;
  }
}

/** The threshold of what is charted: an entity's own (set by feedback on it), or the
 * stream's. */
function thresholdNow() {
  const x = pickedStream();
  const own = st.entity !== null && st.series ? numOrNull(st.series.threshold) : null;
  return own !== null ? own : Number(x && x.threshold);
}

/** The anomalies of what is charted: its points at or above the threshold, those its
 * events told of, and those given a verdict from this page, stored or on its way (a false
 * positive may now be under the threshold it raised); newest first. */
function anomaliesOf() {
  const thr = thresholdNow();
  const byT = new Map();
  const recent = (st.series && Array.isArray(st.series.recent) && st.series.recent) || [];
  for (const p of recent) {
    const t = Number(p.t);
    if (!Number.isFinite(t)) continue;
    if (!(Number(p.s) >= thr) && !verdictGiven(verdictKey(st.id, st.entity, t))) continue;
    byT.set(t, { t, score: Number(p.s), value: numOrNull(p.v), expectedFirst: numOrNull(p.e), band: numOrNull(p.b), source: 'points' });
  }
  const heard = st.id ? st.heard.get(seriesKey(st.id, st.entity)) : null;
  if (heard) {
    for (const a of heard.values()) {
      const had = byT.get(a.t);
      if (!had) {
        byT.set(a.t, { ...a, source: 'event', live: true });
        continue;
      }
      // what the event knew, over what the chart point says where the event knew it
      const both = { ...had };
      for (const [k, v] of Object.entries(a)) if (v !== null && v !== undefined) both[k] = v;
      byT.set(a.t, both);
    }
  }
  return Array.from(byT.values()).sort((a, b) => b.t - a.t);
}

function recentPoints() {
  const recent = (st.series && Array.isArray(st.series.recent) && st.series.recent) || [];
  return recent
    .map((p) => ({ t: Number(p.t), v: Number(p.v), s: numOrNull(p.s), e: numOrNull(p.e), b: numOrNull(p.b) }))
    .filter((p) => Number.isFinite(p.t) && Number.isFinite(p.v))
    .sort((a, b) => a.t - b.t);
}

// ---- drawing ---------------------------------------------------------------------------------

function renderSeries() {
  const x = pickedStream();
  const svg = $('stream-chart');
  const head = $('stream-h');
  const summary = $('stream-summary');
  clear(summary);
  svg.dataset.streamId = st.id || '';
  svg.dataset.entity = st.entity ?? '';
  if (!x) {
    head.textContent = 'Pick a stream';
    drawStreamChart(svg, { points: [], marks: [] });
    $('stream-empty').hidden = false;
    renderAnomalyList([]);
    renderExplanation(null, []);
    renderStatus();
    return;
  }
  const split = isSplit(x);
  head.textContent = '';
  head.append(h('span', { text: x.name }), st.entity !== null ? h('span', { class: 'entity-name', text: ` · ${x.entity.field} ${st.entity}` }) : '');
  const cur = st.series || {};
  summary.append(
    chip('detector', (x.detector && x.detector.detector) || '?'),
    chip('points', fmtInt(st.entity !== null ? cur.points : x.points)),
    chip('anomalies', fmtInt(st.entity !== null ? cur.anomalies : x.anomalies)),
    chip(st.entity !== null && numOrNull(cur.threshold) !== null ? 'own threshold' : 'threshold', fmtNum(thresholdNow())),
    chip('last point', fmtTime(toMs(st.entity !== null ? cur.last_timestamp : x.last_timestamp))),
  );
  const points = recentPoints();
  const marks = anomaliesOf();
  if (st.selectedT !== null && !marks.some((m) => m.t === st.selectedT)) {
    // gone from the recent points; but a verdict on it still on its way keeps it, and
    // its buttons, until it is answered
    if (st.selectedMark && st.selectedMark.t === st.selectedT && verdictSending(verdictKey(st.id, st.entity, st.selectedT))) {
      marks.push(st.selectedMark);
      marks.sort((a, b) => b.t - a.t);
    } else st.selectedT = null;
  }
  st.selectedMark = st.selectedT === null ? null : marks.find((m) => m.t === st.selectedT) || null;
  // a mark with the keyboard's focus keeps it through the redraw
  const focused = svg.contains(document.activeElement) ? document.activeElement.getAttribute('data-t') : null;
  drawStreamChart(svg, { points, marks, threshold: thresholdNow(), selected: st.selectedT, label: (x.columns && x.columns[0]) || 'value' });
  if (focused !== null) {
    const again = svg.querySelector(`circle.anomaly[data-t="${focused}"]`);
    if (again) again.focus();
  }
  const empty = $('stream-empty');
  empty.hidden = points.length > 0 || marks.length > 0;
  if (!empty.hidden) {
    if (st.gone) empty.textContent = st.entity !== null ? `Entity ${st.entity} is gone (evicted or deleted).` : 'This stream is gone (deleted).';
    else if (split && st.entity === null) empty.textContent = st.entities.length ? 'Pick an entity to chart it.' : 'No entity has sent a point yet.';
    else if (st.series && !Array.isArray(st.series.recent)) empty.textContent = 'The API sent no recent points for this stream (an older server?).';
    else if (st.series) empty.textContent = 'No points yet: append some with POST /v1/streams/{id}/points.';
    else empty.textContent = 'Reading the stream…';
  }
  renderAnomalyList(marks);
  renderExplanation(st.selectedT, marks);
  renderStatus();
}

function renderStatus() {
  const line = $('stream-status');
  const parts = [];
  if (!st.id) {
    line.textContent = '';
    line.dataset.state = 'idle';
    return;
  }
  if (st.gone) parts.push('gone');
  else if (st.failure) parts.push('not read lately');
  else if (st.polledAt) parts.push(`read ${fmtTime(st.polledAt)}, every ${POLL_MS / 1000} s`);
  if (st.channel) parts.push(st.channelLive ? `live on ${st.channel}` : `subscribing to ${st.channel}…`);
  line.textContent = parts.join(' · ');
  line.dataset.state = st.gone ? 'failed' : st.failure ? 'stale' : 'live';
  line.dataset.channel = st.channel || '';
  line.dataset.channelLive = st.channelLive ? 'true' : 'false';
}

function renderAnomalyList(marks) {
  const list = $('stream-anomalies');
  clear(list);
  for (const m of marks.slice(0, MAX_LISTED)) {
    list.appendChild(
      h(
        'li',
        null,
        h(
          'button',
          { type: 'button', class: `anomaly-item${m.t === st.selectedT ? ' active' : ''}`, 'data-t': m.t, 'data-testid': 'stream-anomaly-item', 'aria-pressed': m.t === st.selectedT ? 'true' : 'false' },
          h('span', { class: 'row-no', text: fmtTime(m.t * 1000) }),
          h('span', { class: 'score', text: `score ${fmtNum(m.score)}` }),
          h('span', { class: 'top-feature', text: m.live ? 'live' : Number.isFinite(m.value) ? `value ${fmtNum(m.value)}` : '' }),
        ),
      ),
    );
  }
  if (marks.length === 0) list.appendChild(h('li', { class: 'muted', text: st.id ? 'No anomaly among the recent points.' : '' }));
}

/**
 * The explanation of the anomaly at `t`. Its text is drawn again at each poll; its verdict
 * buttons only when another point is explained, so that the keyboard's focus on them, or
 * a click that spans a poll, is not lost.
 */
function renderExplanation(t, marks) {
  const box = $('stream-explain');
  const m = t === null ? null : marks.find((a) => a.t === t);
  const key = m ? verdictKey(st.id, st.entity, m.t) : null;
  let main = box.firstElementChild;
  if (!main || !main.classList.contains('explain-main')) {
    clear(box);
    main = box.appendChild(h('div', { class: 'explain-main' }));
  }
  const kept = main.nextElementSibling;
  if (kept && kept.dataset.fbKey !== key) kept.remove();
  clear(main);
  if (!m) {
    box.removeAttribute('data-t');
    box.removeAttribute('data-score');
    main.appendChild(h('p', { class: 'muted', text: marks.length ? 'Select an anomaly on the chart or in the list.' : 'Anomalies of the stream charted are explained here.' }));
    return;
  }
  const x = pickedStream();
  const thr = thresholdNow();
  box.dataset.t = String(m.t);
  box.dataset.score = String(m.score);
  main.append(
    h('p', { class: 'explain-head' }, h('strong', { text: new Date(m.t * 1000).toLocaleString() }), st.entity !== null ? ` · ${x.entity.field} ${st.entity}` : ''),
    h(
      'p',
      { 'data-testid': 'stream-explain-score' },
      `score ${fmtNum(m.score)} vs threshold ${fmtNum(thr)} · `,
      h('span', { class: m.score >= thr ? 'tag anomaly' : 'tag normal', text: m.score >= thr ? 'anomaly' : 'below the threshold' }),
    ),
    h('p', { class: 'muted small', text: Number.isFinite(m.raw_score) ? `raw score ${fmtNum(m.raw_score)} (the detector's own, before the likelihood scale)` : 'raw score: not known (no anomaly.detected event for it reached this page; its score is the chart point\'s)' }),
  );
  const columns = (x && Array.isArray(x.columns) && x.columns.length ? x.columns : ['value']).map(String);
  const rows = [];
  columns.forEach((col, i) => {
    let value = Array.isArray(m.values) ? numOrNull(m.values[i]) : null;
    if (value === null && i === 0) value = m.value ?? null;
    let expected = m.expected && col in m.expected ? numOrNull(m.expected[col]) : null;
    if (expected === null && i === 0) expected = m.expectedFirst ?? null;
    let direction = m.direction && col in m.direction ? String(m.direction[col]) : null;
    if (direction === null && value !== null && expected !== null) direction = value > expected ? 'above' : value < expected ? 'below' : 'as_expected';
    const share = m.shares && col in m.shares ? numOrNull(m.shares[col]) : null;
    if (value === null && expected === null && direction === null && share === null) return;
    rows.push({ col, value, expected, direction, share, band: i === 0 ? m.band : null });
  });
  if (rows.length === 0) {
    main.appendChild(h('p', { class: 'muted', text: 'The detector gave no expected values for this point.' }));
  } else {
    const body = h('tbody');
    for (const r of rows) {
      const arrow = r.direction === 'above' ? '↑ above' : r.direction === 'below' ? '↓ below' : r.direction === 'as_expected' ? 'as expected' : r.direction || '—';
      body.appendChild(
        h(
          'tr',
          { 'data-testid': 'stream-explain-column', 'data-column': r.col, 'data-direction': r.direction || '' },
          h('td', { class: 'colname', text: r.col }),
          h('td', { class: 'num', text: fmtNum(r.value) }),
          h('td', { class: 'num', text: r.expected === null ? '—' : `${fmtNum(r.expected)}${Number.isFinite(r.band) ? ` ± ${fmtNum(r.band, 3)}` : ''}` }),
          h('td', { class: `dir ${r.direction || ''}`, text: arrow }),
          h('td', { class: 'num', text: r.share === null ? '—' : `${(r.share * 100).toFixed(0)}%` }),
        ),
      );
    }
    main.appendChild(h('table', { class: 'table explain-table' }, h('thead', null, h('tr', null, h('th', { text: 'Column' }), h('th', { class: 'num', text: 'Value' }), h('th', { class: 'num', text: 'Expected' }), h('th', { text: 'Direction' }), h('th', { class: 'num', text: 'Share' }))), body));
  }
  // the verdict: the point named by its time, a range of one point; the same point keeps
  // the buttons it has
  if (box.lastElementChild !== main) return;
  box.appendChild(
    feedbackControls({
      key,
      body: st.entity !== null ? { stream_id: st.id, entity: st.entity, from: String(m.t), to: String(m.t) } : { stream_id: st.id, from: String(m.t), to: String(m.t) },
      testid: 'stream-feedback',
      onDone: (answer) => {
        // the threshold it moved: read the stream again now rather than at the next poll
        if (answer && answer.changed) return poll();
        return undefined;
      },
    }),
  );
}

export function selectAnomaly(t) {
  const n = Number(t);
  if (!Number.isFinite(n)) return;
  st.selectedT = n;
  renderSeries();
}

// ---- events --------------------------------------------------------------------------------

function onEvent(ev) {
  if (ev.type === 'live.closed') {
    st.channelLive = false;
    if (st.shown) renderStatus();
    return;
  }
  if (ev.type === 'live.subscribed') {
    if (ev.channel === st.channel) {
      st.channelLive = true;
      renderStatus();
    }
    return;
  }
  if (ev.type !== 'anomaly.detected') return;
  const p = ev.payload || {};
  if (!p.stream_id || !Array.isArray(p.anomaly_points)) return;
  const entity = p.entity === null || p.entity === undefined ? null : String(p.entity);
  const key = seriesKey(p.stream_id, entity);
  let heard = st.heard.get(key);
  if (!heard) {
    heard = new Map();
    st.heard.set(key, heard);
  }
  let latest = null;
  for (const a of p.anomaly_points) {
    const t = Number(a.timestamp);
    if (!Number.isFinite(t)) continue;
    heard.set(t, {
      t,
      score: Number(a.score),
      raw_score: numOrNull(a.raw_score),
      values: Array.isArray(a.values) ? a.values : null,
      value: Array.isArray(a.values) ? numOrNull(a.values[0]) : null,
      expected: a.expected && typeof a.expected === 'object' ? a.expected : null,
      shares: a.shares && typeof a.shares === 'object' ? a.shares : null,
      direction: a.direction && typeof a.direction === 'object' ? a.direction : null,
      eventId: ev.event_id,
    });
    latest = latest === null ? t : Math.max(latest, t);
  }
  while (heard.size > MAX_REMEMBERED) heard.delete(Math.min(...heard.keys()));

  // the counts in the lists, until they are read again
  const x = st.streams.find((s) => s.stream_id === p.stream_id);
  if (x && Number(p.stream_version) > Number(x.version || 0)) {
    x.anomalies = Number(x.anomalies || 0) + Number(p.anomalies || 0);
    x.version = Number(p.stream_version);
    if (st.shown) renderStreams();
  }
  if (entity !== null && p.stream_id === st.id) {
    let e = st.entities.find((y) => y.name === entity);
    if (!e) {
      e = { name: entity, points: 0, anomalies: 0, last_anomaly: null, channel: `stream:${p.stream_id}:${entity}`, recent: [] };
      st.entities.push(e);
    }
    if (latest !== null && !(toMs(e.last_anomaly) >= latest * 1000)) {
      e.anomalies = Number(e.anomalies || 0) + Number(p.anomalies || 0);
      e.last_anomaly = latest;
    }
    st.entities.sort(byLatestAnomaly);
    if (st.shown) renderEntities();
  }
  if (p.stream_id === st.id && entity === st.entity && st.shown) renderSeries();
}

// ---- the view --------------------------------------------------------------------------------

function tick(fn) {
  return () => {
    if (!st.shown || !state.key || document.visibilityState === 'hidden') return;
    fn().catch((e) => {
      const msg = messageOf(e);
      if (msg !== st.failure) showError(msg);
      st.failure = msg;
    });
  };
}

/** The Streams view shown (true) or hidden: it reads only while it is shown. */
export async function showStreams(shown) {
  st.shown = shown;
  for (const t of st.timers) clearInterval(t);
  st.timers = [];
  if (!shown) return;
  st.timers.push(setInterval(tick(poll), POLL_MS));
  st.timers.push(setInterval(tick(refreshEntities), ENTITIES_MS));
  st.timers.push(setInterval(tick(refreshStreams), STREAMS_MS));
  if (!state.key) return;
  await refreshStreams();
  if (st.id) {
    renderEntities();
    renderSeries();
    if (isSplit(pickedStream())) await refreshEntities();
    await poll();
  }
}

/** After (re)connecting: what is shown is read again. */
export async function streamsConnected() {
  if (st.shown) await showStreams(true);
}

/** Forgets what was shown for the previous key. */
export function resetStreams() {
  listen(null);
  st.gen += 1;
  Object.assign(st, { streams: [], streamsMore: false, id: null, entity: null, entities: [], entitiesMore: false, series: null, selectedT: null, selectedMark: null, failure: null, gone: false, polledAt: 0 });
  st.heard.clear();
  renderStreams();
  renderEntities();
  renderSeries();
}

export function wireStreams() {
  onLiveEvent(onEvent);
  $('streams-refresh').addEventListener('click', () => {
    refreshStreams().catch((e) => showError(messageOf(e)));
  });
  $('streams-list').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-stream-id]');
    if (b) pickStream(b.dataset.streamId).catch((err) => showError(messageOf(err)));
  });
  $('entity-list').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-entity]');
    if (b) pickEntity(b.dataset.entity).catch((err) => showError(messageOf(err)));
  });
  const chart = $('stream-chart');
  chart.addEventListener('click', (e) => {
    const c = e.target.closest('circle.anomaly[data-t]');
    if (c) selectAnomaly(c.dataset.t);
  });
  chart.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' && e.key !== ' ') return;
    const c = e.target.closest('circle.anomaly[data-t]');
    if (c) {
      e.preventDefault();
      selectAnomaly(c.dataset.t);
    }
  });
  $('stream-anomalies').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-t]');
    if (b) selectAnomaly(b.dataset.t);
  });
  renderStreams();
  renderSeries();
}
