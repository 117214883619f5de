// How numbers, times, sizes and ids are written on the page, and the comma lists read
// from it.

/** Milliseconds since the epoch from an RFC 3339 string or a number (s or ms). */
export function toMs(v) {
  if (v === null || v === undefined || v === '') return 0;
  if (typeof v === 'number') return v < 1e11 ? v * 1000 : v;
  const n = Date.parse(v);
  return Number.isFinite(n) ? n : 0;
}

const pad = (n) => String(n).padStart(2, '0');

export function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const now = new Date();
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms.slice(0, 5)}`;
}

export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || x === '') return '—';
  const n = Number(x);
  if (!Number.isFinite(n)) return String(x);
  if (n === 0) return '0';
  const a = Math.abs(n);
  if (a >= 1e6 || a < 1e-3) return n.toExponential(2);
  if (Number.isInteger(n) && a < 1e6) return String(n);
  return String(Number(n.toPrecision(digits)));
}

export const fmtInt = (n) => (Number.isFinite(Number(n)) ? Number(n).toLocaleString('en-US') : '—');

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

export function shortId(id) {
  if (!id) return '—';
  const t = String(id);
  return t.length > 14 ? `${t.slice(0, 4)}…${t.slice(-6)}` : t;
}

export function parseList(text) {
  return String(text || '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
}

export function clampPct(v) {
  const n = Math.round(Number(v));
  if (!Number.isFinite(n)) return 0;
  return Math.min(100, Math.max(0, n));
}

// A value axis's range: [lo, hi] widened by `pad` of its span on each side; [0, 1] when
// nothing finite was seen, and one unit either side of a single value.
export function padRange(lo, hi, pad) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (!(hi > lo)) {
    hi = lo + 1;
    lo -= 1;
  }
  const padY = (hi - lo) * pad;
  return [lo - padY, hi + padY];
}
