// The API client: every HTTP call with the key, 429s retried, problems turned into
// ApiError; and a listing read page after page.

import { clearNotice, messageOf, showError } from './errors.js';
import { cfg } from './config.js';
import { state } from './state.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class ApiError extends Error {
  constructor(status, title, detail, type) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.type = type;
  }
}

function retryAfterMs(res) {
  const v = res.headers.get('Retry-After');
  let secs = 1;
  if (v) {
    const n = Number(v);
    if (Number.isFinite(n)) secs = n;
    else {
      const at = Date.parse(v);
      if (Number.isFinite(at)) secs = (at - Date.now()) / 1000;
    }
  }
  return Math.min(Math.max(secs, 1), 60) * 1000 + Math.random() * 250;
}

async function problemOf(res) {
  let text = '';
  try {
    text = await res.text();
  } catch (_) {
    /* no body */
  }
  let p = null;
  try {
    p = text ? JSON.parse(text) : null;
  } catch (_) {
    p = null;
  }
  if (p && typeof p === 'object') {
    return new ApiError(res.status, p.title, p.detail || p.message, p.type);
  }
  return new ApiError(res.status, res.statusText, `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/**
 * One API call with the key. JSON in (`json`) or a raw `body`; JSON out. 429s wait for
 * Retry-After and go again. Errors become ApiError with the problem's detail.
 */
export async function api(path, opts = {}) {
  if (!state.key) throw new ApiError(401, 'No key', 'paste an API key and connect first');
  const headers = new Headers(opts.headers || {});
  headers.set('Authorization', `Bearer ${state.key}`);
  let body = opts.body;
  if (opts.json !== undefined) {
    headers.set('Content-Type', 'application/json');
    body = JSON.stringify(opts.json);
  }
  for (let attempt = 0; ; attempt += 1) {
    let res;
    try {
      res = await fetch(cfg.apiBase + path, {
        method: opts.method || 'GET',
        headers,
        body,
        cache: 'no-store',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
    } catch (e) {
      throw new ApiError(0, 'Network error', `could not reach ${cfg.apiBase} (${messageOf(e)})`);
    }
    if (res.status === 429 && attempt < 5) {
      const wait = retryAfterMs(res);
      showError(`Rate limited by the API; retrying in ${Math.ceil(wait / 1000)} s…`, 'warn');
      await sleep(wait);
      continue;
    }
    if (attempt > 0) clearNotice();
    if (!res.ok) throw await problemOf(res);
    let data = null;
    if (res.status !== 204) {
      const text = await res.text();
      if (text) {
        try {
          data = JSON.parse(text);
        } catch (_) {
          throw new ApiError(res.status, 'Bad response', `the API answered ${path} with something that is not JSON`);
        }
      }
    }
    return opts.withResponse ? { data, res } : data;
  }
}

export const enc = encodeURIComponent;

/**
 * Every page of a listing (`path` has its query already, e.g. `?limit=100`), up to
 * `maxPages` pages: `{items, more}`, `more` true when the listing went on past them.
 */
export async function listAll(path, maxPages) {
  const items = [];
  let token = null;
  for (let page = 0; page < maxPages; page += 1) {
    const data = await api(token ? `${path}&next_token=${enc(token)}` : path);
    items.push(...((data && Array.isArray(data.items) && data.items) || []));
    token = data && data.next_token;
    if (!token) return { items, more: false };
  }
  return { items, more: true };
}
