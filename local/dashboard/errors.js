// The error banner, and wrappers that send a handler's failures to it instead of letting
// them escape.

import { $ } from './dom.js';

export function showError(msg, level = 'error') {
  const banner = $('error');
  $('error-text').textContent = msg;
  banner.dataset.level = level;
  banner.hidden = false;
}

export function clearNotice() {
  const banner = $('error');
  if (banner.dataset.level === 'warn') banner.hidden = true;
}

export function hideError() {
  $('error').hidden = true;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => guard(fn)(...args), ms);
  };
}

/** Wraps an (async) handler so that no failure escapes: it goes to the banner. */
export function guard(fn) {
  return async (...args) => {
    try {
      return await fn(...args);
    } catch (e) {
      showError(messageOf(e));
      return undefined;
    }
  };
}

export function messageOf(e) {
  if (!e) return 'unknown error';
  if (typeof e === 'string') return e;
  return e.message || String(e);
}
