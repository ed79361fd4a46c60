/* global document, location, fetch, CSS, confirm, setTimeout, setInterval, clearInterval, zapwire */
// The manager: instances with live state, lifecycle actions, QR, pairing code, advanced settings.
'use strict';
(() => {
  const { api, live, el, badge, time } = zapwire;
  const $ = (id) => document.getElementById(id);
  const instances = new Map(); // id → view from GET /instance/all
  let selected; // instance id
  let qrTimer;

  function say(message, isError = false) {
    const status = $('status');
    status.textContent = message;
    status.classList.toggle('error', isError);
  }

  async function attempt(what, fn) {
    try {
      return await fn();
    } catch (error) {
      say(`${what}: ${error.message}`, true);
      return undefined;
    }
  }

  // ------------------------------------------------------------------ list

  // When the live feed last set each instance's state. The list comes from the read model, which follows
  // the machine by a moment: a list asked for before a live update, or up to LIVE_WINS_MS after it (the
  // refresh an `InstanceOpened` triggers), must not put the older state back. Past that window the list
  // wins, so an instance whose live feed went quiet (moved to another node) still shows its state.
  const liveAt = new Map();
  const LIVE_WINS_MS = 5000;

  // GET /instance/all comes a page at a time: the next page starts after the last instance of this one.
  async function listAll() {
    const all = [];
    for (let after = ''; ;) {
      const page = await api('GET', `/instance/all?limit=1000${after}`);
      all.push(...page);
      const last = page[page.length - 1];
      if (page.length < 1000 || !last) return all;
      after = `&after=${encodeURIComponent(`${last.createdAt},${last.id}`)}`;
    }
  }

  async function refresh() {
    const asked = Date.now();
    const list = await attempt('Could not list the instances', listAll);
    if (!list) return;
    const shown = new Map(instances);
    instances.clear();
    for (const view of list) {
      const current = shown.get(view.id);
      const newer = current && (liveAt.get(view.id) ?? 0) >= asked - LIVE_WINS_MS;
      instances.set(view.id, newer ? { ...view, state: current.state } : view);
    }
    render();
  }

  function render() {
    const body = $('instances').tBodies[0];
    body.replaceChildren();
    for (const view of instances.values()) {
      const manage = el('button', {
        type: 'button',
        text: 'Manage',
        'aria-label': `Manage ${view.name}`,
        onclick: () => select(view.id),
      });
      const row = el(
        'tr',
        {
          'data-instance': view.name,
          'data-id': view.id,
          class: view.id === selected ? 'selected' : undefined,
        },
        el('th', { scope: 'row', text: view.name }),
        el('td', { class: 'state' }, badge(view.state)),
        el('td', { class: 'health' }, ...healthCell(view)),
        el('td', {
          text: view.jid
            ? `${view.profileName ? view.profileName + ' · ' : ''}${view.jid.split('@')[0]}`
            : '—',
        }),
        el(
          'td',
          {},
          manage,
          ' ',
          el('a', { href: `/debug/instances/${encodeURIComponent(view.id)}`, text: 'Visualizer' }),
        ),
      );
      body.append(row);
    }
    $('empty').hidden = instances.size > 0;
    if (selected) renderDetail();
  }

  /**
   * An open instance's health beside its state: a badge (healthy, degraded, down; "needs attention" when
   * healing gave up) and, when it is not healthy, why (the same words as GET /instance/:id/health).
   */
  function healthBadge(health) {
    const text = health.needsAttention ? `${health.state} · needs attention` : health.state;
    return el('span', {
      class: `badge health-${health.state}`,
      'data-health': health.state,
      title: health.reason ?? 'every link works',
      text,
    });
  }

  function healthCell(view) {
    if (view.state !== 'open' || !view.health) return [];
    const parts = [healthBadge(view.health)];
    if (view.health.reason) parts.push(el('div', { class: 'muted health-reason', text: view.health.reason }));
    return parts;
  }

  function setState(id, state) {
    const view = instances.get(id);
    if (!view) return false;
    liveAt.set(id, Date.now());
    instances.set(id, { ...view, state });
    const cell = document.querySelector(`tr[data-id="${CSS.escape(id)}"] td.state`);
    if (cell) cell.replaceChildren(badge(state));
    const healthCellOf = document.querySelector(`tr[data-id="${CSS.escape(id)}"] td.health`);
    if (healthCellOf) healthCellOf.replaceChildren(...healthCell(instances.get(id)));
    if (id === selected) renderDetail();
    return true;
  }

  // ------------------------------------------------------------------ detail

  async function select(id) {
    selected = id;
    $('detail').hidden = false;
    render();
    $('detail-title').focus();
    $('pair-code').textContent = '';
    $('webhook-status').textContent = '';
    await Promise.all([loadSettings(), loadWebhook()]);
  }

  // ------------------------------------------------------------------ webhook

  function ago(iso) {
    if (!iso) return '';
    const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  /** Each queue's state (delivering, paused: receiver down, refusing), why, and how far behind. */
  async function loadWebhook() {
    const id = selected;
    if (!id) return;
    const status = await api('GET', `/instance/${encodeURIComponent(id)}/webhook`).catch(() => undefined);
    if (!status || id !== selected) return;
    const queues = status.queues.map((q) =>
      el(
        'div',
        { class: 'stack' },
        el(
          'p',
          {},
          el('span', { text: q.target === 'global' ? 'Global webhook ' : 'Webhook ' }),
          badge(q.state),
          el('span', { class: 'muted', text: q.url ? ` ${q.url}` : '' }),
        ),
        el('p', {
          text:
            `${q.behind}${q.behindExact ? '' : '+'} events waiting` +
            (q.oldestUndeliveredAt ? `, the oldest ${ago(q.oldestUndeliveredAt)} old` : '') +
            (q.lastDeliveredAt ? ` · last delivered ${time(q.lastDeliveredAt)}` : ''),
        }),
        q.reason ? el('p', { class: 'muted', text: q.reason }) : el('span', {}),
      ),
    );
    $('webhook-queues').replaceChildren(
      ...(queues.length ? queues : [el('p', { class: 'muted', text: 'No webhook.' })]),
    );
    $('webhook-dead').hidden = status.deadLetters === 0;
    $('webhook-dead-count').textContent = `(${status.deadLetters})`;
    if (status.deadLetters === 0) return;
    const dead = await api('GET', `/instance/${encodeURIComponent(id)}/webhook/dead-letters?limit=5`).catch(
      () => undefined,
    );
    if (!dead || id !== selected) return;
    $('webhook-dead-list').replaceChildren(
      ...dead.deadLetters.map((d) => {
        const again = el('button', { type: 'button', text: 'Send again' });
        again.disabled = d.target === 'global';
        again.addEventListener('click', async () => {
          const done = await attempt('Could not send it again', () =>
            api('POST', `/instance/${encodeURIComponent(id)}/webhook/dead-letters/${d.id}/redeliver`),
          );
          if (done) $('webhook-status').textContent = `Sending ${d.eventName ?? 'the event'} again.`;
          await loadWebhook();
        });
        return el(
          'li',
          {},
          el('span', {
            text: `${d.eventName ?? d.eventType} · ${d.reason ?? ''} · ${d.error} · ${time(d.failedAt)} `,
          }),
          again,
        );
      }),
    );
  }

  $('webhook-replay').addEventListener('submit', async (event) => {
    event.preventDefault();
    const id = selected;
    const started = await attempt('Replay failed', () =>
      api('POST', `/instance/${encodeURIComponent(id)}/webhook/replay`, {
        from: $('webhook-replay-from').value.trim(),
      }),
    );
    if (started) $('webhook-status').textContent = `Replay ${started.replay.id} started.`;
    await loadWebhook();
  });

  setInterval(() => {
    if (selected && !$('detail').hidden) loadWebhook();
  }, 5000);

  function renderDetail() {
    const view = instances.get(selected);
    if (!view) {
      $('detail').hidden = true;
      selected = undefined;
      return;
    }
    $('detail-title').textContent = `Instance ${view.name}`;
    $('detail-state').replaceChildren(badge(view.state));
    $('detail-health').replaceChildren(...healthCell(view));
    $('detail-jid').textContent = view.jid ? `as ${view.jid}` : '';
    $('link-visualizer').href = `/debug/instances/${encodeURIComponent(view.id)}`;
    $('link-history').href = `/debug/instances/${encodeURIComponent(view.id)}/history`;
    const live = ['connecting', 'qr', 'open'].includes(view.state);
    $('action-connect').disabled = live;
    $('action-disconnect').disabled = !live;
    $('action-reconnect').disabled = !view.paired && !view.loggedIn;
    if (view.state === 'qr') showQr();
    else hideQr();
  }

  function hideQr() {
    clearInterval(qrTimer);
    qrTimer = undefined;
    $('qr-box').hidden = true;
    $('qr-image').removeAttribute('src');
  }

  function showQr() {
    $('qr-box').hidden = false;
    if (!qrTimer) {
      loadQr();
      // The code rotates; the live socket says when, this is the fallback.
      qrTimer = setInterval(() => loadQr(), 3000);
    }
  }

  async function loadQr(retry = 0) {
    const id = selected;
    try {
      const qr = await api('GET', `/instance/qr?instanceName=${encodeURIComponent(id)}`);
      if (id !== selected) return;
      const [image] = qr.qrcode.split('|');
      if ($('qr-image').getAttribute('src') !== image) $('qr-image').src = image;
      $('qr-meta').textContent = `QR ${qr.count} · expires ${time(qr.expiresAt)}`;
    } catch (error) {
      if (error.status === 409) {
        hideQr(); // already open
      } else if (error.code === 'ZW_ERR_QR_NOT_READY' && retry < 5) {
        // The live socket reports the machine's step a moment before the read model shows the code.
        setTimeout(() => loadQr(retry + 1), 200);
      } else {
        $('qr-meta').textContent = error.message;
      }
    }
  }

  async function lifecycle(action, path, method = 'POST') {
    const view = instances.get(selected);
    if (!view) return;
    say(`${action}…`);
    const sent = Date.now();
    const result = await attempt(`${action} failed`, () =>
      api(method, path, method === 'POST' ? { instanceName: view.id } : undefined),
    );
    if (result) {
      say(`${action}: ${result.state}${result.message ? ` — ${result.message}` : ''}`);
      // The live feed may have moved the instance on while the answer travelled (connect → QR): the
      // answer's state is then older than the one shown and must not put it back.
      if ((liveAt.get(view.id) ?? 0) < sent) setState(view.id, result.state);
    }
    await refresh();
  }

  $('action-connect').addEventListener('click', () => lifecycle('Connect', '/instance/connect'));
  $('action-reconnect').addEventListener('click', () => lifecycle('Reconnect', '/instance/reconnect'));
  $('action-disconnect').addEventListener('click', () => lifecycle('Disconnect', '/instance/disconnect'));
  $('action-logout').addEventListener('click', () => lifecycle('Log out', '/instance/logout'));
  $('action-delete').addEventListener('click', async () => {
    const view = instances.get(selected);
    if (!view) return;
    if (!confirm(`Delete instance "${view.name}"? Its session, messages and settings are removed for good.`))
      return;
    const done = await attempt('Delete failed', () =>
      api('DELETE', `/instance/delete/${encodeURIComponent(view.id)}`),
    );
    if (done) {
      say(`Deleted ${view.name}.`);
      selected = undefined;
      $('detail').hidden = true;
      hideQr();
    }
    await refresh();
  });

  $('pair').addEventListener('submit', async (event) => {
    event.preventDefault();
    const view = instances.get(selected);
    if (!view) return;
    $('pair-code').textContent = 'Asking WhatsApp for a code…';
    const result = await attempt('Pairing code failed', () =>
      api('POST', '/instance/pair', { instanceName: view.id, phone: $('pair-phone').value }),
    );
    $('pair-code').textContent = result ? `Type this code on the phone: ${result.pairingCode}` : '';
  });

  // ------------------------------------------------------------------ settings

  const SETTINGS = [
    'alwaysOnline',
    'rejectCall',
    'msgRejectCall',
    'readMessages',
    'ignoreGroups',
    'ignoreStatus',
  ];

  async function loadSettings() {
    const id = selected;
    const settings = await attempt('Could not read the settings', () =>
      api('GET', `/instance/${encodeURIComponent(id)}/advanced-settings`),
    );
    if (!settings || id !== selected) return;
    const form = $('settings');
    for (const name of SETTINGS) {
      const input = form.elements.namedItem(name);
      if (input.type === 'checkbox') input.checked = Boolean(settings[name]);
      else input.value = settings[name] ?? '';
    }
  }

  $('settings').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = $('settings');
    const body = {};
    for (const name of SETTINGS) {
      const input = form.elements.namedItem(name);
      body[name] = input.type === 'checkbox' ? input.checked : input.value;
    }
    const saved = await attempt('Saving the settings failed', () =>
      api('PUT', `/instance/${encodeURIComponent(selected)}/advanced-settings`, body),
    );
    $('settings-status').textContent = saved ? 'Saved: applies at once, no reconnect needed.' : '';
  });

  // ------------------------------------------------------------------ create

  $('create').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = { name: $('create-name').value.trim() };
    if ($('create-token').value.trim()) body.token = $('create-token').value.trim();
    if ($('create-webhook').value.trim()) body.webhookUrl = $('create-webhook').value.trim();
    const created = await attempt('Create failed', () => api('POST', '/instance/create', body));
    if (!created) return;
    $('create').reset();
    $('create-result').replaceChildren(
      el('p', { text: `Created ${created.name}. Its token (shown once; keep it safe):` }),
      el('p', { class: 'token' }, el('code', { text: created.token })),
    );
    say(`Created ${created.name}.`);
    await refresh();
    await select(created.id);
  });

  $('sign-out').addEventListener('click', async () => {
    await fetch('/manager/session', { method: 'DELETE', credentials: 'same-origin' });
    location.reload();
  });

  // ------------------------------------------------------------------ live

  live(
    '/manager/live',
    (message) => {
      if (!setState(message.instanceId, message.state)) refresh();
      if (message.instanceId === selected && message.emitted.includes('QrCodeIssued')) loadQr();
      if (message.emitted.includes('InstanceOpened') || message.emitted.includes('SessionRemoved')) refresh();
    },
    (status) => {
      $('live-status').textContent = status === 'live' ? 'live updates on' : 'live updates reconnecting…';
    },
  );

  refresh();
  setInterval(refresh, 10000);
})();
