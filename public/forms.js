// Pending state for plain form posts (what it does and why: `shell` in src/app.rs). Comments
// here are few on purpose: this file is part of every first visit.
'use strict';
(() => {
  const RELEASE_AFTER_MS = 15000;

  function release(button) {
    if (!button.dataset.sent) return;
    button.textContent = button.dataset.sent;
    delete button.dataset.sent;
    button.removeAttribute('aria-disabled');
    if (button.form) button.form.removeAttribute('aria-busy');
  }

  document.addEventListener('submit', (event) => {
    if (event.defaultPrevented) return;
    const form = event.target;
    const button = event.submitter || form.querySelector('button[type="submit"]');
    if (!button || !button.dataset.pending) return;
    if (button.dataset.sent) {
      event.preventDefault();
      return;
    }
    button.dataset.sent = button.textContent;
    button.textContent = button.dataset.pending;
    button.setAttribute('aria-disabled', 'true');
    form.setAttribute('aria-busy', 'true');
    setTimeout(() => release(button), RELEASE_AFTER_MS);
  });

  window.addEventListener('pageshow', (event) => {
    if (event.persisted) document.querySelectorAll('button[data-sent]').forEach(release);
  });
})();
