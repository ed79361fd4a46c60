/* global document, location, fetch, setTimeout, clearTimeout, zapwire */
// The visualizer: the machine diagram with the live state highlighted, the live transition timeline,
// and a scrubber over the replayed history.
'use strict';
(() => {
  const { getJson, live, el, badge, time } = zapwire;
  const $ = (id) => document.getElementById(id);
  const instanceId = decodeURIComponent(location.pathname.split('/')[3] || '');
  const base = `/debug/instances/${encodeURIComponent(instanceId)}`;
  let history = [];
  let following = true;
  let reloadTimer;

  function say(message, isError = false) {
    $('status').textContent = message;
    $('status').classList.toggle('error', isError);
  }

  function mark(stateIds, className) {
    for (const node of document.querySelectorAll(`#diagram .${className}`)) node.classList.remove(className);
    for (const id of stateIds || []) {
      const node = document.getElementById(`state:${id}`);
      if (node) node.classList.add(className);
    }
  }

  function showCurrent(current) {
    $('current-state').replaceChildren(badge(current.state));
    $('current-machine-state').textContent = current.machineState;
    mark(current.stateIds, 'active');
  }

  // ------------------------------------------------------------------ live timeline

  function addTimeline(entry) {
    const row = el(
      'tr',
      { 'data-seq': entry.seq },
      el('td', { text: time(entry.at) }),
      el('td', {}, el('code', { text: entry.event })),
      el('td', { text: entry.from ?? '—' }),
      el('td', { text: entry.to }),
      el('td', { text: entry.emitted.join(', ') }),
    );
    const body = $('timeline').tBodies[0];
    body.prepend(row);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  }

  // ------------------------------------------------------------------ history and scrubber

  async function loadHistory() {
    try {
      const page = await getJson(`${base}/history?limit=1000`);
      history = page.entries;
      $('title').textContent = `Instance ${page.instance.name}`;
      document.title = `${page.instance.name} · visualizer · zapwire`;
      const body = $('history').tBodies[0];
      body.replaceChildren(
        ...history.map((entry, index) =>
          el(
            'tr',
            { 'data-version': entry.version },
            el(
              'td',
              {},
              el('button', {
                type: 'button',
                text: String(entry.version),
                'aria-label': `Show event ${entry.version}`,
                onclick: () => scrubTo(index),
              }),
            ),
            el('td', { text: time(entry.at) }),
            el('td', {}, el('code', { text: entry.type })),
            el('td', {}, badge(entry.state), ' ', el('code', { text: entry.machineState })),
          ),
        ),
      );
      const scrubber = $('scrubber');
      scrubber.disabled = history.length === 0;
      scrubber.max = String(Math.max(history.length, 1));
      if (following) scrubTo(history.length - 1, { keepFollowing: true });
      if (page.next !== null) say(`Showing the first ${history.length} of ${page.total} events.`);
    } catch (error) {
      say(`Could not load the history: ${error.message}`, true);
    }
  }

  function scrubTo(index, { keepFollowing = false } = {}) {
    if (history.length === 0) return;
    index = Math.max(0, Math.min(history.length - 1, index));
    following = keepFollowing;
    const entry = history[index];
    $('scrubber').value = String(index + 1);
    $('scrubber').setAttribute(
      'aria-valuetext',
      `event ${entry.version} of ${history.length}: ${entry.type}, state ${entry.state}`,
    );
    $('scrub-label').textContent =
      `Event ${entry.version} of ${history.length}: ${entry.type} → ${entry.machineState}${following ? ' (following live)' : ''}`;
    $('scrub-detail').textContent = JSON.stringify(
      { at: entry.at, recordedAt: entry.recordedAt, type: entry.type, data: entry.data },
      null,
      2,
    );
    mark(following ? [] : entry.stateIds, 'scrubbed');
    for (const row of $('history').tBodies[0].rows)
      row.classList.toggle('selected', row.dataset.version === String(entry.version));
  }

  $('scrubber').addEventListener('input', (e) => scrubTo(Number(e.target.value) - 1));
  $('step-back').addEventListener('click', () => scrubTo(Number($('scrubber').value) - 2));
  $('step-forward').addEventListener('click', () => scrubTo(Number($('scrubber').value)));
  $('follow-live').addEventListener('click', () => {
    following = true;
    scrubTo(history.length - 1, { keepFollowing: true });
  });

  // ------------------------------------------------------------------ start

  async function start() {
    try {
      const response = await fetch('/debug/machines/instance.svg', { credentials: 'same-origin' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      $('diagram').innerHTML = await response.text();
    } catch (error) {
      say(`Could not load the diagram: ${error.message}`, true);
    }
    try {
      const state = await getJson(`${base}/state`);
      $('capacity').textContent = String(state.capacity);
      showCurrent(state.current);
    } catch (error) {
      say(error.status === 404 ? 'No such instance.' : `Could not load the state: ${error.message}`, true);
      return;
    }
    await loadHistory();
    live(
      `${base}/live`,
      (message) => {
        if (message.type === 'hello') {
          showCurrent(message.current);
          $('timeline').tBodies[0].replaceChildren();
          for (const entry of message.timeline) addTimeline(entry);
        } else if (message.type === 'entry') {
          showCurrent({
            state: message.entry.state,
            machineState: message.entry.to,
            stateIds: message.entry.stateIds,
          });
          addTimeline(message.entry);
          // New events were recorded: reload the replay (debounced).
          if (message.entry.emitted.length > 0) {
            clearTimeout(reloadTimer);
            reloadTimer = setTimeout(loadHistory, 150);
          }
        }
      },
      (status) => {
        $('live-status').textContent = status === 'live' ? 'live' : 'reconnecting…';
      },
    );
  }
  start();
})();
