// The live feed panel and the list of recent detections run from this page.

import { $, clear, h } from './dom.js';
import { clampPct, fmtInt, fmtNum, fmtTime, shortId, toMs } from './format.js';
import { state } from './state.js';
import { feedbackControls } from './feedback.js';

const MAX_FEED = 200;
const MAX_RECENT = 10;

function feedSummary(ev) {
  const p = ev.payload || {};
  switch (ev.type) {
    case 'anomaly.detected':
      if (p.stream_id) {
        return [
          `${fmtInt(p.anomalies)} / ${fmtInt(p.points_scored)} points anomalous`,
          `max ${fmtNum(p.max_score)} · threshold ${fmtNum(p.threshold)} · stream ${p.stream_name || shortId(p.stream_id)}${p.entity ? ` · ${p.entity}` : ''}`,
        ];
      }
      return [
        `${fmtInt(p.anomalies)} / ${fmtInt(p.rows_scored)} rows anomalous`,
        `max ${fmtNum(p.max_score)} · threshold ${fmtNum(p.threshold)} · ${p.algorithm || ''} ${shortId(p.model_id)}`,
      ];
    case 'task.progress':
      return [`${p.kind || 'task'} ${shortId(p.task_id)} · ${clampPct(p.progress)}%${p.attempt ? ` (try ${p.attempt})` : ''}`];
    case 'task.completed': {
      if (p.kind === 'train') return [`train ${shortId(p.task_id)} completed → ${p.algorithm || 'model'} ${shortId(p.model_id)}`];
      if (p.kind === 'detect') return [`detect ${shortId(p.task_id)} completed: ${fmtInt(p.anomalies)} anomalies in ${fmtInt(p.rows)} rows`];
      return [`${p.kind || 'task'} ${shortId(p.task_id)} completed`];
    }
    case 'task.failed':
      return [`${p.kind || 'task'} ${shortId(p.task_id)} failed: ${p.error || 'no reason given'}`];
    case 'task.cancelled':
      return [`${p.kind || 'task'} ${shortId(p.task_id)} cancelled`];
    case 'dataset.profiled':
      return p.status === 'rejected'
        ? [`dataset ${shortId(p.dataset_id)} rejected: ${p.error || ''}`]
        : [`dataset ${shortId(p.dataset_id)} profiled: ${fmtInt(p.rows)} rows × ${fmtInt(p.columns)} columns`];
    default:
      return [ev.type];
  }
}

/** The verdict buttons of a stream's anomaly.detected event: about its highest-scoring
 * point, named by the event and that point's `index`. */
function streamVerdict(ev) {
  const p = ev.payload || {};
  if (!p.stream_id || !ev.event_id || !Array.isArray(p.anomaly_points)) return null;
  let top = null;
  for (const a of p.anomaly_points) {
    if (!a || a.index === null || a.index === undefined || !Number.isInteger(Number(a.index))) continue;
    if (!top || Number(a.score) > Number(top.score)) top = a;
  }
  if (!top) return null;
  const index = Number(top.index);
  const box = feedbackControls({
    key: `event:${ev.event_id}:${index}`,
    body: { stream_id: p.stream_id, event_id: ev.event_id, index },
    testid: 'feed-feedback',
  });
  box.dataset.index = String(index);
  box.dataset.t = String(top.timestamp ?? '');
  box.title = `about its highest-scoring point${top.timestamp ? ` (${fmtTime(toMs(top.timestamp))})` : ''}, score ${fmtNum(top.score)}`;
  return box;
}

export function addFeed(ev) {
  const feed = $('feed');
  const p = ev.payload || {};
  const at = toMs(ev.at) || Date.now();
  // successive progress of one task share an entry
  const first = feed.firstElementChild;
  if (ev.type === 'task.progress' && first && first.dataset.type === 'task.progress' && first.dataset.taskId === String(p.task_id)) {
    first.querySelector('.feed-text').textContent = feedSummary(ev)[0];
    first.querySelector('.feed-time').textContent = fmtTime(at);
    first.dataset.eventId = ev.event_id;
    return;
  }
  const lines = feedSummary(ev);
  const prominent = ev.type === 'anomaly.detected';
  const kindClass = ev.type.replace(/[^a-z]/g, '-');
  const li = h(
    'li',
    { class: `feed-item ev-${kindClass}${prominent ? ' prominent' : ''}`, 'data-type': ev.type, 'data-event-id': ev.event_id, 'data-task-id': p.task_id || undefined, 'data-stream-id': p.stream_id || undefined, 'data-correlation': ev.correlation_id || undefined, 'data-testid': 'feed-item' },
    h('div', { class: 'feed-head' }, h('span', { class: 'feed-type', text: ev.type }), h('span', { class: 'feed-time', text: fmtTime(at) })),
    h('div', { class: 'feed-text', text: lines[0] }),
    lines[1] ? h('div', { class: 'feed-sub', text: lines[1] }) : null,
    ev.type === 'anomaly.detected' ? streamVerdict(ev) : null,
  );
  feed.insertBefore(li, feed.firstChild);
  while (feed.children.length > MAX_FEED) feed.removeChild(feed.lastChild);
  state.feedCount += 1;
  $('feed-empty').hidden = true;
  const count = $('feed-count');
  count.textContent = `${fmtInt(state.feedCount)} event${state.feedCount === 1 ? '' : 's'}`;
  count.dataset.count = String(state.feedCount);
}

export function addRecent(r, m, file, correlation) {
  state.recent.unshift({
    at: Date.now(),
    model: r.model_id,
    algorithm: r.algorithm || (m && m.algorithm) || '?',
    rows: r.rows ?? r.scores.length,
    anomalies: r.anomalies,
    ms: r.compute_ms,
    cached: !!r.cached,
    file: file.name,
    correlation,
    event: false,
  });
  state.recent = state.recent.slice(0, MAX_RECENT);
  // the event may have come before the answer
  for (const li of $('feed').querySelectorAll('li[data-type="anomaly.detected"]')) {
    if (correlation && li.dataset.correlation === correlation) state.recent[0].event = true;
  }
  renderRecent();
}

export function matchRecent(ev) {
  const hit = state.recent.find((x) => x.correlation && x.correlation === ev.correlation_id);
  if (hit) {
    hit.event = true;
    renderRecent();
  }
}

export function renderRecent() {
  const list = $('recent-detections');
  clear(list);
  for (const x of state.recent) {
    list.appendChild(
      h(
        'li',
        { 'data-testid': 'recent-detection', 'data-model-id': x.model },
        h('div', { class: 'recent-head' }, h('span', { class: 'recent-time', text: fmtTime(x.at) }), h('span', { class: 'algo', text: x.algorithm }), h('span', { class: 'id', text: shortId(x.model) })),
        h(
          'div',
          { class: 'recent-body' },
          h('span', { class: x.anomalies > 0 ? 'count hot' : 'count', text: `${fmtInt(x.anomalies)} anomalies` }),
          ` in ${fmtInt(x.rows)} rows · ${fmtNum(x.ms, 3)} ms${x.cached ? ' · cached' : ''}`,
          x.event ? h('span', { class: 'tick-ok', title: 'the anomaly.detected event arrived', text: ' · live ✓' }) : null,
        ),
        h('div', { class: 'recent-file', text: x.file }),
      ),
    );
  }
  $('recent-empty').hidden = state.recent.length > 0;
}
