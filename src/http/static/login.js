/* global document, location, fetch */
// Sign-in: POST the key once, get the session cookie, reload the page that asked for it.
'use strict';
document.getElementById('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const status = document.getElementById('login-status');
  const input = document.getElementById('apikey');
  status.textContent = 'Signing in…';
  try {
    const response = await fetch('/manager/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ apikey: input.value }),
      credentials: 'same-origin',
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      status.textContent = (body.error && body.error.message) || `sign-in failed (${response.status})`;
      input.select();
      return;
    }
    input.value = '';
    location.reload();
  } catch (error) {
    status.textContent = `sign-in failed: ${error.message}`;
  }
});
