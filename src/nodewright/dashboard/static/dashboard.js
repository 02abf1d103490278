// Small behaviours every page shares (no build step, no inline script: the CSP allows 'self' only).
//  - form[data-confirm]: a destructive form asks before it is sent.
//  - input[data-pick-all]: ticks or clears every input[data-pick] (the list's bulk selection).
//  - button[data-copy]: copies the text of the element whose id it names (the SSH command).
//  - time[datetime]: "3 min ago" kept current while the page stays open (the server wrote it at render).
(function () {
  "use strict";
  function relative(then, now) {
    var seconds = (now - then) / 1000;
    var ahead = seconds < 0;
    seconds = Math.abs(seconds);
    var text;
    if (seconds < 5) { return "just now"; }
    if (seconds < 60) { text = Math.floor(seconds) + " s"; }
    else if (seconds < 3600) { text = Math.floor(seconds / 60) + " min"; }
    else if (seconds < 86400) { text = Math.floor(seconds / 3600) + " h"; }
    else if (seconds < 86400 * 60) {
      var days = Math.floor(seconds / 86400);
      text = days + (days === 1 ? " day" : " days");
    } else { return null; }
    return ahead ? "in " + text : text + " ago";
  }
  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time[datetime][title]").forEach(function (el) {
      var then = Date.parse(el.getAttribute("datetime"));
      var text = isNaN(then) ? null : relative(then, now);
      if (text !== null && el.textContent !== text) { el.textContent = text; }
    });
  }
  window.setInterval(refreshTimes, 30000);

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

  document.addEventListener("change", function (event) {
    var all = event.target;
    if (!(all instanceof HTMLInputElement) || !all.hasAttribute("data-pick-all")) { return; }
    document.querySelectorAll("input[data-pick]").forEach(function (box) { box.checked = all.checked; });
  });
})();
