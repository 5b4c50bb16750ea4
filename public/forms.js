// Pending state for Tokenless's forms, which are plain form posts (no wasm on pages without
// islands). On submit, a button with `data-pending` says what is happening and a second press
// sends nothing; a page brought back from the back/forward cache gets its button back.
// Without JavaScript the forms work the same, minus this.
'use strict';
document.addEventListener('submit', (event) => {
  const button = event.submitter || event.target.querySelector('button[type="submit"]');
  if (!button || !button.dataset.pending) return;
  if (button.dataset.sent) {
    event.preventDefault();
    return;
  }
  button.dataset.sent = button.textContent;
  button.textContent = button.dataset.pending;
  button.setAttribute('aria-disabled', 'true');
  button.closest('form').setAttribute('aria-busy', 'true');
});
window.addEventListener('pageshow', (event) => {
  if (!event.persisted) return;
  for (const button of document.querySelectorAll('button[data-sent]')) {
    button.textContent = button.dataset.sent;
    delete button.dataset.sent;
    button.removeAttribute('aria-disabled');
    button.closest('form').removeAttribute('aria-busy');
  }
});
