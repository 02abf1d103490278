// Small behaviours every page shares (no build step, no inline script: the CSP allows 'self' only).
//  - form[data-confirm]: a destructive form asks before it is sent.
//  - button[data-copy]: copies the text of the element whose id it names (the SSH command).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copy);
    var state = button.parentElement ? button.parentElement.querySelector(".copy-state") : null;
    if (!source) { return; }
    var text = source.textContent.trim();
    function said(message) { if (state) { state.textContent = message; } }
    function fallback() {
      // Without the clipboard API (plain http on another host): select the text for Ctrl+C.
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      said("Selected: press Ctrl+C to copy.");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { said("Copied."); }, fallback);
    } else {
      fallback();
    }
  });
})();
