// Where the API and the WebSocket are: this origin, or what a config.json beside the page
// says.

/**
 * API base and WebSocket URL: this page's origin, unless the site serving the page has a
 * `config.json` beside it (`{"api": "https://...", "ws": "wss://.../live"}`), as a hosted
 * copy does. Never from the page's URL: a link must not be able to choose where the key
 * is sent.
 */
export async function loadConfig() {
  const own = {
    apiBase: location.origin,
    wsUrl: `${location.protocol === 'https:' ? 'wss://' : 'ws://'}${location.host}/ws`,
  };
  let file;
  try {
    const res = await fetch(new URL('config.json', document.baseURI), { cache: 'no-store', credentials: 'omit' });
    if (!res.ok) return own;
    file = await res.json();
  } catch (_) {
    return own;
  }
  const cfg = { ...own };
  try {
    if (file && typeof file.api === 'string' && file.api) {
      const u = new URL(file.api);
      if (u.protocol === 'https:' || u.protocol === 'http:') {
        cfg.apiBase = (u.origin + u.pathname).replace(/\/+$/, '');
        cfg.wsUrl = `${cfg.apiBase.replace(/^http/, 'ws')}/ws`;
      }
    }
    if (file && typeof file.ws === 'string' && file.ws) {
      const u = new URL(file.ws);
      if (u.protocol === 'wss:' || u.protocol === 'ws:') cfg.wsUrl = u.href;
    }
  } catch (_) {
    return own;
  }
  return cfg;
}

// Filled in by loadConfig() before the page is wired.
export const cfg = { apiBase: location.origin, wsUrl: '' };
