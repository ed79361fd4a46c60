/* global document, location, fetch, WebSocket, setTimeout */
// Shared by the manager and the visualizer: calls through the session cookie, and small DOM helpers.
'use strict';
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- the pages' shared global
const zapwire = (() => {
  let csrf;
  async function token() {
    if (csrf) return csrf;
    const response = await fetch('/manager/session', { credentials: 'same-origin' });
    if (response.status === 401) {
      location.reload(); // the session expired: the server answers with the sign-in page
      throw new Error('signed out');
    }
    csrf = (await response.json()).csrf;
    return csrf;
  }
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.error && body.error.code;
    }
  }
  /** Calls a REST route (path as in the API docs) through /manager/api with the cookie and CSRF token. */
  async function api(method, path, body, retried = false) {
    const headers = { 'x-zapwire-csrf': await token() };
    const init = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(`/manager/api${path}`, init);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
    if (response.status === 401) location.reload();
    // Opening a page in another tab rotates the session, and with it the page token: fetch it again once.
    if (response.status === 403 && !retried) {
      csrf = undefined;
      return api(method, path, body, true);
    }
    if (!response.ok) throw new ApiError(response.status, parsed);
    return parsed;
  }
  /** A GET of the page's own JSON routes (/debug/...), cookie only. */
  async function getJson(path) {
    const response = await fetch(path, { credentials: 'same-origin' });
    const body = await response.json().catch(() => null);
    if (response.status === 401) location.reload();
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
  /** A WebSocket to this host that reconnects with backoff; onMessage gets parsed JSON. */
  function live(path, onMessage, onStatus) {
    let delay = 500;
    let closedByUs = false;
    let socket;
    const connect = () => {
      const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
      socket = new WebSocket(`${scheme}://${location.host}${path}`);
      socket.addEventListener('open', () => {
        delay = 500;
        if (onStatus) onStatus('live');
      });
      socket.addEventListener('message', (e) => {
        try {
          onMessage(JSON.parse(e.data));
        } catch (err) {
          console.error(err);
        }
      });
      socket.addEventListener('close', () => {
        if (onStatus) onStatus('reconnecting');
        if (!closedByUs) setTimeout(connect, delay);
        delay = Math.min(delay * 2, 10000);
      });
    };
    connect();
    return () => {
      closedByUs = true;
      socket.close();
    };
  }
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children) node.append(child);
    return node;
  }
  function badge(state) {
    return el('span', { class: `badge ${state}`, text: state });
  }
  function time(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }
  return { api, getJson, live, el, badge, time, ApiError };
})();
